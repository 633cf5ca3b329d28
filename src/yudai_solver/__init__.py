"""yudai-solver: many coding-agent attempts per issue, validated by the repository's tests; the best one wins.

Importing the package has no side effects: settings, engines and servers are built at the edge (cli, tests).
"""

__version__ = "0.1.0"
