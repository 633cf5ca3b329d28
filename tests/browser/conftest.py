"""The browser tests' shared pieces: Debian's chromium (never a downloaded one) and a real server on 127.0.0.1."""

import shutil
import threading
import time

import pytest

from tests.helpers import free_port
from yudai_solver.base.settings import Settings
from yudai_solver.entry.api import create_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(autouse=True)
def chromium_installed() -> None:
    # A missing browser fails loudly: a silent skip reads as a green page test that never ran.
    if not shutil.which("chromium"):
        pytest.fail("Debian's chromium is not installed: `apt-get install chromium` (as .ci/run does)")


@pytest.fixture
def server(session_factory, tmp_path):
    import uvicorn

    settings = Settings(data_dir=tmp_path, local_repo_roots="")
    app = create_app(settings, session_factory=session_factory)
    port = free_port()
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    while not instance.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", settings
    instance.should_exit = True
    thread.join(timeout=10)
