"""Containment, tried as an attacker would, through the real worker of `gatekeeper serve`.

Each hostile case is its own model, registered on the session's MLflow server and run under
`allow_code: true` (so the security gate lets the code through and only the sandbox stands in
the way). Each asserts that the attempt failed, from the model's own report (the run's
admin-only diagnostics) and from the host (files, sockets, processes, the database), and that
the run is `error` or finished without effect, with the service healthy throughout.
Also: without bubblewrap the model is not loaded; `GATEKEEPER_SANDBOX=unconfined` is recorded;
a champion tagged `passed` by hand is never loaded; what a model prints is never published.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import httpx
import mlflow
import pytest
from mlflow import MlflowClient

from demo.models import log_malicious_model
from service.store.db import transaction
from tests.e2e import hostile_models
from tests.helpers import (
    ROOT,
    WEBHOOK_SECRET,
    GatekeeperProcess,
    Listener,
    MlflowServer,
    gate_result,
    unique_name,
)
from tests.synthetic_credit import TARGET, make_credit_data, train_model

PREFIX = unique_name("contain")
SANDBOX = "sandbox: {wall_seconds: 30, memory_gb: 2, cpu_seconds: 60}"


def _policy(eval_csv: Path) -> str:
    evaluation = f'{{uri: "file://{eval_csv}", target: {TARGET}}}'
    return f"""
models:
  - match: "{PREFIX}-hostile-*"
    data:
      evaluation: {evaluation}
    gates:
      security: {{allow_code: true}}
      performance: {{mode: enforce}}
    {SANDBOX}
  - match: "{PREFIX}-*"
    data:
      evaluation: {evaluation}
    gates:
      performance: {{mode: enforce, min: {{accuracy: 0.6}}, max_regression: {{accuracy: 0.05}}}}
    {SANDBOX}
"""


@dataclass
class Setup:
    gk: GatekeeperProcess
    root: Path
    eval_csv: Path
    policy: Path
    db_path: Path
    listener: Listener
    mlflow_url: str

    def params(self, survivor_tag: str) -> dict[str, Any]:
        assert self.gk.process is not None
        return {
            "worker_pid": self.gk.process.pid,
            "secret": WEBHOOK_SECRET,
            "db_path": str(self.db_path),
            "policy_path": str(self.policy),
            "data_dir": str(self.gk.data_dir),
            "source_root": str(ROOT),
            "eval_path": str(self.eval_csv),
            "listener_port": self.listener.port,
            "mlflow_port": int(self.mlflow_url.rsplit(":", 1)[1]),
            "gatekeeper_port": self.gk.port,
            "survivor_tag": survivor_tag,
        }


@pytest.fixture(scope="module")
def setup(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("containment")
    eval_csv = root / "labels-eval.csv"
    make_credit_data(n=400, seed=21, biased=False).to_csv(eval_csv, index=False)
    policy = root / "policy.yaml"
    policy.write_text(_policy(eval_csv))
    db_path = root / "gk.db"
    gk = GatekeeperProcess(
        data_dir=root / "gk",
        database_url=f"sqlite:///{db_path}",
        tracking_uri=mlflow_server.url,
        models="none",  # only the manual API starts runs here
        env={"GATEKEEPER_POLICY_PATH": str(policy)},
    ).start()
    listener = Listener()
    yield Setup(gk, root, eval_csv, policy, db_path, listener, mlflow_server.url)
    listener.close()
    gk.stop()


def _log_pyfunc(tracking_uri: str, name: str, model: Any) -> int:
    mlflow.set_tracking_uri(tracking_uri)
    cloudpickle.register_pickle_by_value(hostile_models)
    try:
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="model", python_model=model, registered_model_name=name,
                pip_requirements=["mlflow"],
            )  # fmt: skip
    finally:
        cloudpickle.unregister_pickle_by_value(hostile_models)
    return int(info.registered_model_version)


def _cmdline(pid: str) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None


def _parent(pid: str) -> str | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next((line.split()[1] for line in status.splitlines() if line.startswith("PPid:")), None)


def _host_processes_with(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and text in (_cmdline(pid) or ""):
            found.append(f"{pid}: {_cmdline(pid)}")
    return found


def _our_sandbox_processes(data_dir: Path) -> list[str]:
    """Sandbox processes of this test's gatekeeper. Other tests may run sandboxes at the same
    time (pytest-xdist): a bwrap counts when its command line binds our data dir, a sandboxed
    child when its parent is such a bwrap, or when it has no bwrap parent left at all (an
    orphan is what this check is for, whoever started it)."""
    ours = str(data_dir)
    found = []
    for line in _host_processes_with("/sandbox/child.py"):
        pid, cmdline = line.split(": ", 1)
        if "bwrap" in cmdline.split(" ", 1)[0]:
            if ours in cmdline:
                found.append(line)
            continue
        parent = _parent(pid)
        parent_cmdline = _cmdline(parent) if parent else None
        if parent_cmdline is None or "bwrap" not in parent_cmdline or ours in parent_cmdline:
            found.append(line)
    return found


def _assert_service_healthy(setup: Setup) -> None:
    assert setup.gk.process is not None and setup.gk.process.poll() is None, "serve died"
    assert httpx.get(f"{setup.gk.url}/healthz", timeout=5).status_code == 200
    assert setup.gk.api("GET", "/api/v1/runs/none").status_code == 404  # the API answers
    with sqlite3.connect(setup.db_path) as db:  # the database is intact and ours
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        tokens = "SELECT count(*) FROM api_tokens WHERE name != 'viewer-in-test'"
        assert db.execute(tokens).fetchone() == (0,)


CASES = sorted(hostile_models.ATTACKS)


@pytest.mark.parametrize("case", CASES)
def test_hostile_model_is_contained(setup: Setup, case: str) -> None:
    survivor_tag = f"7{uuid.uuid4().int % 10**6}.25"
    name = f"{PREFIX}-hostile-{case.replace('_', '-')}"
    model = hostile_models.Attacker(case, setup.params(survivor_tag))
    run = setup.gk.run_version(name, _log_pyfunc(setup.mlflow_url, name, model))

    performance = gate_result(run, "performance")
    report = (performance.get("diagnostics") or {}).get("stderr_tail", "")
    assert "SUCCEEDED" not in report, report
    evidence = performance["evidence"].get("sandbox", {})
    assert evidence.get("sandbox") == "bwrap", evidence
    assert set(evidence["namespaces"].values()) == {"own"}, evidence
    if case == "forge_evidence":
        # the forged answer may be read as predictions (a model chooses its predictions
        # anyway); nothing else of it is believed: the evidence is the parent's own
        assert "FORGED" not in json.dumps(performance["evidence"])
        assert run["sandbox"] == "bwrap"
    else:
        assert run["status"] == "error", run["decision"]
        assert performance["status"] == "error"
        if case not in ("double_fork_and_survive", "allocate_20_gib"):
            assert f"ATTACK {case}: blocked" in report, report
    assert setup.listener.accepted == 0, "a sandboxed model reached a socket on the host"
    assert not (setup.gk.data_dir / "owned-by-model.txt").exists()
    assert not (setup.gk.data_dir / "fill").exists()
    assert not (ROOT / "service" / "owned_by_model.py").exists()
    assert not _host_processes_with(survivor_tag), "a process of the model survived the run"
    assert not _our_sandbox_processes(setup.gk.data_dir), "a sandbox process survived the run"
    # this gatekeeper's cgroups only: other tests' sandboxes may run beside it (pytest-xdist)
    assert setup.gk.process is not None
    mine = f"gatekeeper-sandbox-{setup.gk.process.pid}-*"
    assert not list(Path("/sys/fs/cgroup/pids").glob(mine))
    _assert_service_healthy(setup)


def test_model_that_prints_its_rows_publishes_none_of_them(
    setup: Setup, mlflow_server: MlflowServer
) -> None:
    name = f"{PREFIX}-hostile-print-rows"
    model = hostile_models.Attacker("print_rows", setup.params("0"))
    version = _log_pyfunc(setup.mlflow_url, name, model)
    run = setup.gk.run_version(name, version)

    assert run["status"] == "error"
    # the admin sees the tail of what the model printed, truncated: rows of evaluation data
    tail = gate_result(run, "performance")["diagnostics"]["stderr_tail"]
    assert 1000 < len(tail) <= 4000
    rows = [line for line in tail.splitlines()[1:-1] if line.count(",") >= 4]
    assert len(rows) > 20, tail
    tags = json.dumps(MlflowClient(mlflow_server.url).get_model_version(name, version).tags)
    page = setup.gk.api("GET", f"/runs/{run['id']}").text
    viewer = _viewer_token(setup)
    as_viewer = setup.gk.api(
        "GET", f"/api/v1/runs/{run['id']}", headers={"Authorization": f"Bearer {viewer}"}
    ).text
    published = {
        "tags": tags,
        "page": page,
        "decision": json.dumps(run["decision"]),
        "run JSON for a viewer": as_viewer,
    }
    for where, text in published.items():
        assert "ROWDUMP" not in text, where
        leaked = [row for row in rows if row in text]
        assert not leaked, (where, leaked[:3])


def _viewer_token(setup: Setup) -> str:
    from service.store.auth import create_token

    with transaction(f"sqlite:///{setup.db_path}") as session:
        token = create_token(session, name="viewer-in-test", role="viewer")
    return token


def test_champion_tagged_passed_by_hand_is_never_loaded(
    setup: Setup, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    """Any registry user can set a tag and move the alias; neither makes a champion: the
    champion is the version the gatekeeper's record puts the alias on (none here)."""
    client = MlflowClient(mlflow_server.url)
    name = f"{PREFIX}-forged-champion"
    marker = tmp_path / "PAYLOAD-RAN"
    evil = log_malicious_model(mlflow_server.url, name, marker)
    client.set_model_version_tag(name, str(evil), "gatekeeper.status", "passed")
    client.set_registered_model_alias(name, "production-ready", str(evil))

    clean = train_model(make_credit_data(n=2000, seed=22), include_gender=False)
    mlflow.set_tracking_uri(mlflow_server.url)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            clean, name="model", registered_model_name=name, serialization_format="pickle"
        )
    run = setup.gk.run_version(name, int(info.registered_model_version))

    assert not marker.exists(), "the forged champion's pickle was loaded"
    performance = gate_result(run, "performance")
    assert performance["evidence"]["champion"] == "none"
    assert performance["evidence"]["champion_version"] is None
    assert "gatekeeper's record" in performance["evidence"]["comparison"]
    assert run["status"] == "passed", run["decision"]
    _assert_service_healthy(setup)


@pytest.mark.parametrize("mode", ["no-bubblewrap", "unconfined"])
def test_sandbox_setting_without_bubblewrap(
    mlflow_server: MlflowServer, setup: Setup, tmp_path: Path, mode: str
) -> None:
    # every PATH entry that holds a bwrap goes (/usr/bin and /bin alike)
    path = ":".join(
        d for d in os.environ["PATH"].split(":") if d and not (Path(d) / "bwrap").exists()
    )
    env = {
        "GATEKEEPER_POLICY_PATH": str(setup.policy),
        "GATEKEEPER_SANDBOX_BWRAP": "bwrap",  # looked up on PATH, where it is not
        "PATH": path,
    }
    if mode == "unconfined":
        env["GATEKEEPER_SANDBOX"] = "unconfined"
    gk = GatekeeperProcess(
        data_dir=tmp_path / "gk",
        database_url=f"sqlite:///{tmp_path / 'gk.db'}",
        tracking_uri=mlflow_server.url,
        models="none",
        env=env,
    ).start()
    try:
        name = f"{PREFIX}-{mode}"
        marker = tmp_path / "loaded"
        model = train_model(make_credit_data(n=2000, seed=23), include_gender=False)
        mlflow.set_tracking_uri(mlflow_server.url)
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                model, name="model", registered_model_name=name, serialization_format="pickle"
            )
        run = gk.run_version(name, int(info.registered_model_version))
        page = gk.api("GET", f"/runs/{run['id']}").text
    finally:
        gk.stop()
    performance = gate_result(run, "performance")
    if mode == "no-bubblewrap":
        assert run["status"] == "error"
        assert performance["status"] == "error"
        assert "sandbox isolation error" in performance["message"]
        assert "bubblewrap not found" in performance["message"]
        assert not marker.exists()
    else:
        assert run["sandbox"] == "unconfined"
        assert performance["evidence"]["sandbox"]["sandbox"] == "unconfined"
        assert "sandbox: unconfined" in page
        assert run["status"] == "passed", run["decision"]
