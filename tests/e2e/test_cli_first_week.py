"""The CLI in a new team's first week (issue 21, item 3): which database it talks to.

After `make demo` a user ran `gatekeeper token create` in the checkout: the CLI made a fresh
`.gatekeeper/gatekeeper.db`, printed a token and the running server refused it; `gatekeeper
policy test` printed a 497-line traceback and exited 1, the "not promotable" verdict a CI job
acts on. Here the CLI runs as the user runs it (a clean shell, another directory, `demo.env`
sourced as the README says) against a real `gatekeeper serve` on a demo-like data dir: it says
which database it used, never creates one where a database should already be, and exits 0,
1 (a verdict) or 2 (could not do it, in one paragraph, the traceback only with --debug).
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from demo.models import log_clean_model
from demo.run import write_demo_env
from tests.helpers import VENV_BIN, GatekeeperProcess, MlflowServer, unique_name

PREFIX = "first-week"
SECRET = "pw-Sup3rSecret"
GATEKEEPER = str(VENV_BIN / "gatekeeper")
FROZEN_RULES = 'package gatekeeper\n\nimport rego.v1\n\ndeny contains "release freeze" if true\n'


@dataclass
class Demo:
    gk: GatekeeperProcess
    data_dir: Path
    env_file: Path


@pytest.fixture(scope="module")
def demo(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`gatekeeper serve` on a data dir as `make demo` runs it (`.gatekeeper-demo/` in the
    checkout, the default SQLite database in it) and the `demo.env` the demo writes."""
    data_dir = tmp_path_factory.mktemp("checkout") / ".gatekeeper-demo"
    data_dir.mkdir()
    gk = GatekeeperProcess(
        data_dir=data_dir,
        database_url="unused",
        tracking_uri=mlflow_server.url,
        models=f"{PREFIX}-*",
    )
    del gk.env["GATEKEEPER_DATABASE_URL"]  # the demo leaves it to the data dir
    env_file = write_demo_env(data_dir, public_url=gk.url, mlflow_port=mlflow_server.embedded.port)
    gk.start()
    yield Demo(gk, data_dir, env_file)
    gk.stop()


def _cli(
    *args: str, cwd: Path, env_file: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """`gatekeeper ARGS` typed in a fresh shell in `cwd`, after `source ENV_FILE` if given."""
    script = '[ -z "$SOURCE_FIRST" ] || . "$SOURCE_FIRST"; exec "$@"'
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "SOURCE_FIRST": str(env_file or "")}
    return subprocess.run(
        ["bash", "-c", script, "bash", GATEKEEPER, *args],
        cwd=cwd, env={**clean, **env}, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def _one_paragraph(result: subprocess.CompletedProcess[str]) -> str:
    """The whole of stderr: one `gatekeeper:` paragraph, no traceback."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gatekeeper: "), result.stderr[-3000:]
    return lines[0]


def _accepted(gk: GatekeeperProcess, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{gk.url}/api/v1/waivers", headers=headers, timeout=30).status_code


def test_token_create_in_another_directory_with_demo_env_makes_a_token_the_server_takes(
    demo: Demo, tmp_path: Path
) -> None:
    made = _cli(
        "token", "create", "--name", "you", "--role", "viewer",
        cwd=tmp_path, env_file=demo.env_file,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert len(token.splitlines()) == 1, made.stdout  # stdout is the token alone
    assert _accepted(demo.gk, token) == 200
    assert not (tmp_path / ".gatekeeper").exists()
    assert f"database sqlite:///{demo.data_dir / 'gatekeeper.db'}" in made.stderr


NEEDS_A_DATABASE = {
    "token create": (("token", "create", "--name", "you"), {}),
    "policy test": (("policy", "test", "--run", "0f7c2a"), {}),
    "worker": (("worker",), {"GATEKEEPER_MLFLOW_TRACKING_URI": "http://127.0.0.1:1"}),
}


@pytest.mark.parametrize("command", sorted(NEEDS_A_DATABASE))
def test_with_no_database_here_it_exits_2_naming_where_it_looked_and_creates_nothing(
    tmp_path: Path, command: str
) -> None:
    args, env = NEEDS_A_DATABASE[command]
    result = _cli(*args, cwd=tmp_path, **env)
    assert result.returncode == 2, result.stderr[-3000:]
    paragraph = _one_paragraph(result)
    assert str(tmp_path / ".gatekeeper" / "gatekeeper.db") in paragraph
    for hint in ("GATEKEEPER_DATA_DIR", "GATEKEEPER_DATABASE_URL", "source .gatekeeper-demo/"):
        assert hint in paragraph
    assert result.stdout == ""
    assert not (tmp_path / ".gatekeeper").exists()


def test_a_file_that_is_not_a_gatekeeper_database_is_left_alone(tmp_path: Path) -> None:
    empty = tmp_path / "other.db"
    empty.touch()
    for args in (("token", "create", "--name", "you"), ("policy", "test", "--run", "0f7c2a")):
        result = _cli(*args, cwd=tmp_path, GATEKEEPER_DATABASE_URL=f"sqlite:///{empty}")
        assert result.returncode == 2, result.stderr[-3000:]
        paragraph = _one_paragraph(result)
        assert str(empty) in paragraph and "gatekeeper db upgrade" in paragraph
        assert empty.stat().st_size == 0


@pytest.mark.parametrize(
    "args",
    [("token", "create", "--name", "you"), ("policy", "test", "--run", "0f7c2a"),
     ("db", "upgrade")],
    ids=" ".join,
)  # fmt: skip
def test_an_unreachable_database_is_one_paragraph_that_keeps_the_password(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    url = f"postgresql+psycopg://gk:{SECRET}@127.0.0.1:1/gk"
    result = _cli(*args, cwd=tmp_path, GATEKEEPER_DATABASE_URL=url)
    assert result.returncode == 2, result.stderr[-3000:]
    paragraph = _one_paragraph(result)
    assert "cannot reach the database named by GATEKEEPER_DATABASE_URL" in paragraph
    assert "127.0.0.1:1/gk" in paragraph
    assert SECRET not in result.stderr + result.stdout


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = _cli("--debug", "policy", "test", "--run", "0f7c2a", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" in result.stderr


def test_policy_test_of_an_unknown_run_exits_2_naming_the_database(
    demo: Demo, tmp_path: Path
) -> None:
    result = _cli("policy", "test", "--run", "no-such-run", cwd=tmp_path, env_file=demo.env_file)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("gatekeeper: ")]
    assert len(errors) == 1 and "no run no-such-run" in errors[0]
    assert str(demo.data_dir / "gatekeeper.db") in errors[0]


def test_policy_test_exits_1_for_a_verdict_that_would_block_and_0_for_one_that_passes(
    demo: Demo, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    name = unique_name(PREFIX)
    run = demo.gk.run_version(name, log_clean_model(mlflow_server.url, name))
    assert run["status"] == "passed", run
    (tmp_path / "freeze.rego").write_text(FROZEN_RULES)
    frozen = tmp_path / "freeze.yaml"
    frozen.write_text(f'models:\n  - match: "{PREFIX}-*"\n    rego: [freeze.rego]\n')
    blocked = _cli(
        "policy", "test", "--run", run["id"], "--policy", str(frozen),
        cwd=tmp_path, env_file=demo.env_file,
    )  # fmt: skip
    assert blocked.returncode == 1, blocked.stderr[-3000:]
    assert "freeze.yaml: failed" in blocked.stdout and "+ deny: release freeze" in blocked.stdout
    assert "Traceback" not in blocked.stderr
    same = _cli("policy", "test", "--run", run["id"], cwd=tmp_path, env_file=demo.env_file)
    assert same.returncode == 0, same.stderr[-3000:]
    assert f"database sqlite:///{demo.data_dir / 'gatekeeper.db'}" in same.stderr


def test_db_upgrade_creates_the_database_and_says_where(tmp_path: Path) -> None:
    """`db upgrade` is the command that makes a database: it does, and says so."""
    where = tmp_path / "team-data"
    first = _cli("db", "upgrade", cwd=tmp_path, GATEKEEPER_DATA_DIR=str(where))
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"created sqlite:///{where / 'gatekeeper.db'}" in first.stderr + first.stdout
    again = _cli("db", "upgrade", cwd=tmp_path, GATEKEEPER_DATA_DIR=str(where))
    assert again.returncode == 0 and "already at head" in again.stdout, again.stderr[-3000:]
    made = _cli("token", "create", "--name", "ci", cwd=tmp_path, GATEKEEPER_DATA_DIR=str(where))
    assert made.returncode == 0, made.stderr[-3000:]


def test_keys_generate_where_it_cannot_write_exits_2_saying_why(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "key.pem"
    result = _cli("keys", "generate", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    paragraph = _one_paragraph(result)
    assert str(out) in paragraph and "not a directory" in paragraph, paragraph


def test_serve_on_a_port_in_use_exits_2_in_one_paragraph(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        result = _cli(
            "serve", "--port", port, "--no-worker", "--no-poller", cwd=tmp_path,
            GATEKEEPER_MLFLOW_TRACKING_URI="http://127.0.0.1:1",
        )  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("gatekeeper: ")]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0] and "--port" in errors[0]
