"""The newcomer's first solve: a tiny repository with a failing test, and three SCRIPTED models (no API key).

The scripted models answer from `scripted.ScriptedChatServer` through the real litellm client, so everything
else — workspace, sandbox, agent loop, tests, ranking — is the real pipeline.
"""

import shlex
import subprocess
import tempfile
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from yudai_solver.base.errors import NotFound
from yudai_solver.base.models import User
from yudai_solver.base.schemas import ModelCreate, ModelUpdate
from yudai_solver.base.settings import Settings
from yudai_solver.solving.ai_models import add_model, find_model, update_model
from yudai_solver.solving.users import create_user, hash_token, new_token
from yudai_solver.testing.scripted import Step

TEST_COMMAND = "python3 -m unittest discover -q"
ISSUE_TITLE = "add() subtracts instead of adding"
ISSUE_BODY = "calc.add(2, 3) returns -1; it should return 5. The test in test_calc.py shows it."

CALC = """def add(a, b):
    return a - b


def mul(a, b):
    return a * b
"""

TESTS = """import unittest

from calc import add, mul


class CalcTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(add(2, 3), 5)

    def test_mul(self):
        self.assertEqual(mul(2, 3), 6)


if __name__ == "__main__":
    unittest.main()
"""

REWRITE = '''cat > calc.py <<'EOF'
"""Arithmetic helpers."""


def add(a, b):
    """Return the sum of a and b."""
    return a + b


def mul(a, b):
    """Return the product of a and b."""
    return a * b
EOF
printf 'add() fixed: it adds now.\\n' > CHANGES.md'''

SCRIPTS: dict[str, list[Step]] = {
    # Fixes the bug in one line: 1 insertion + 1 deletion in 1 file.
    "scripted-minimal-fix": [
        Step("cat calc.py", "Let me read the code."),
        Step("sed -i 's/return a - b/return a + b/' calc.py", "add() subtracts; fix the operator."),
        Step(TEST_COMMAND, "Run the tests."),
    ],
    # Fixes it too, with a bigger diff: rewrites calc.py and adds CHANGES.md.
    "scripted-rewrite": [
        Step("ls", "Look around."),
        Step(REWRITE, "Rewrite the module with docstrings and note the change."),
    ],
    # Looks, changes nothing: its tests still fail.
    "scripted-noop": [
        Step("cat test_calc.py", "Read the test."),
        Step("python3 -m unittest discover -q 2>&1 | tail -3", "Run the tests."),
    ],
}


def new_repository_path(root: Path) -> Path:
    """A fresh, empty directory under `root` for one demo's repository: unique even for demos started in the same
    second (a time-stamped name alone made the second one fail)."""
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"calc-{time.strftime('%Y%m%d-%H%M%S')}-", dir=root))


def create_repository(path: Path) -> Path:
    """A git repository at `path` on branch main whose test fails until add() is fixed."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "calc.py").write_text(CALC)
    (path / "test_calc.py").write_text(TESTS)
    git = ["git", "-C", str(path)]
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    identity = ["-c", "user.name=yudai demo", "-c", "user.email=demo@yudai.invalid"]
    subprocess.run([*git, *identity, "commit", "-qm", "calc with a bug"], check=True)
    return path


SERVICE_USER = "demo"


def service_settings(settings: Settings) -> Settings:
    """The settings of `yudai demo --serve`: a data directory of its own (`demo-service` under YUDAI_DATA_DIR, with
    its own SQLite database, whatever YUDAI_DATABASE_URL says), so the demo service never shares a database with a
    real one, and its demo repositories allowed."""
    data_dir = settings.data_dir / "demo-service"
    roots = ":".join(filter(None, [settings.local_repo_roots, str(data_dir / "repos")]))
    return settings.model_copy(update={"data_dir": data_dir, "database_url": "", "local_repo_roots": roots})


def prepare_service(session: Session, api_base: str) -> str:
    """The scripted models registered at `api_base` (active), and a fresh token of the demo user (the database's
    only user, so an admin); returns the token. The caller commits."""
    for name in SCRIPTS:
        config = {"api_base": api_base}
        try:
            row = find_model(session, name)
        except NotFound:
            add_model(session, ModelCreate(name=name, provider="openai", model_id=name, config=config))
        else:
            update_model(session, row.id, ModelUpdate.model_validate({"config": config, "is_active": True}))
    user = session.scalar(select(User).where(User.name == SERVICE_USER))
    if user is None:
        return create_user(session, name=SERVICE_USER, admin=True)[1]
    token = new_token()  # shown once, like every token: a restart gives a new one (the old one stops working)
    user.token_hash = hash_token(token)
    return token


def solve_line(repo: Path, server: str, token: str) -> str:
    """The `yudai solve` command that solves the demo repository through the server at `server`, ready to paste."""
    args = ["yudai", "solve", str(repo), "--server", server, "--token", token]
    for name in SCRIPTS:
        args += ["--model", name]
    args += ["--issue-title", ISSUE_TITLE, "--issue-body", ISSUE_BODY, "--test-command", TEST_COMMAND, "--wait"]
    return shlex.join(args)
