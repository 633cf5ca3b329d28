from yudai_solver.entry.cli import main

main()
