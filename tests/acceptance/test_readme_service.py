"""The README's service section, run as written on a local repository (only the port, for a free one, and the
token it printed are put in), with a scripted model registered under the README's name `gpt`."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.acceptance.test_cli import yudai
from tests.helpers import free_port, wait_for
from yudai_solver.entry.demo import SCRIPTS, create_repository
from yudai_solver.testing.scripted import ScriptedChatServer

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"


def service_blocks() -> tuple[str, str]:
    section = README.read_text().split("\n## The service\n", 1)[1].split("\n## ", 1)[0]
    serve, solve = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return serve, solve


def up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_the_readme_service_section_works_as_written_on_a_local_repository(tmp_path):
    serve_block, solve_block = service_blocks()
    home, port = tmp_path / "home", str(free_port())
    create_repository(home / "src" / "myproject")
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUDAI_")}
    env |= {"HOME": str(home), "YUDAI_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # `yudai` as installed next to this Python
    url = f"http://127.0.0.1:{port}"
    with ScriptedChatServer({"scripted-minimal-fix": SCRIPTS["scripted-minimal-fix"]}) as chat:
        added = yudai(
            "model", "add", "gpt", "--provider", "openai", "--model-id", "scripted-minimal-fix",
            "--api-base", chat.base_url, data_dir=tmp_path / "data",
        )  # fmt: skip
        assert added.returncode == 0, added.stdout + added.stderr
        out = (tmp_path / "serve.out").open("w")
        service = subprocess.Popen(
            ["bash", "-euc", serve_block.replace("8000", port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            wait_for(lambda: up(url) or service.poll() is not None, timeout=90)
            said = (tmp_path / "serve.out").read_text()
            assert service.poll() is None, said
            token = re.search(r"\byd_\S+", said).group(0)
            solve = solve_block.replace("8000", port).replace("TOKEN", token)
            done = subprocess.run(["bash", "-euc", solve], env=env, capture_output=True, text=True, timeout=240)
        finally:
            os.killpg(service.pid, signal.SIGINT)  # Ctrl-C, to the block's own process group
            service.wait(timeout=30)
            out.close()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "champion" in done.stdout and "+    return a + b" in done.stdout
