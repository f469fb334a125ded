"""What the trust-chain tests share: a gatekeeper with a deploy job's pinned key and token,
and the registry user's and store writer's tools (tests/e2e/test_trust_chain*.py)."""

from __future__ import annotations

import datetime as dt
import json
import random
import sqlite3
import string
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient

from tests.helpers import (
    GatekeeperProcess,
    MlflowServer,
    create_api_token,
    pinned_public_key,
    run_verify,
)
from tests.synthetic_credit import NUMERIC_FEATURES, TARGET, make_credit_data

ALIAS = "production-ready"
ALLOW_ALL = "package gatekeeper\n\nimport rego.v1\n"


def _policy(root: Path, prefix: str) -> str:
    return f"""
models:
  - match: "{prefix}-regress-*"
    data:
      evaluation: {{uri: "file://{root / "eval.csv"}", target: {TARGET}}}
      training: {{from_run: true}}
    gates:
      performance: {{mode: enforce, min: {{accuracy: 0.6}}, max_regression: {{accuracy: 0.02}}}}
      drift: {{mode: warn}}
  - match: "{prefix}-*"
    rego: [rules.rego]
"""


@dataclass
class Deployer:
    """What a deploy job holds: the pinned key and a viewer token."""

    key: Path
    env: dict[str, str]

    def verify(
        self, server: MlflowServer, uri: str, *extra: str
    ) -> subprocess.CompletedProcess[str]:
        return run_verify(server, uri, "--public-key", str(self.key), *extra, env=self.env)


@dataclass
class Setup:
    gk: GatekeeperProcess
    db: Path
    root: Path
    deployer: Deployer


def start_gatekeeper(
    mlflow_server: MlflowServer, root: Path, prefix: str, env: dict[str, str]
) -> Setup:
    root.mkdir(parents=True, exist_ok=True)
    (root / "logged").mkdir(exist_ok=True)
    make_credit_data(n=2000, seed=11)[[*NUMERIC_FEATURES, TARGET]].to_csv(
        root / "eval.csv", index=False
    )
    (root / "rules.rego").write_text(ALLOW_ALL)
    (root / "policy.yaml").write_text(_policy(root, prefix))
    db = root / "gk.db"
    gk = GatekeeperProcess(
        data_dir=root / "gk",
        database_url=f"sqlite:///{db}",
        tracking_uri=mlflow_server.url,
        models="none",  # runs start through the API: their order is the test's
        env={
            "GATEKEEPER_POLICY_PATH": str(root / "policy.yaml"),
            "GATEKEEPER_LOGGED_DATA_SOURCES": str(root / "logged"),
            **env,
        },
    ).start()
    token = create_api_token(f"sqlite:///{db}")
    deployer = Deployer(
        pinned_public_key(gk, root / "pinned.pub"),
        {"GATEKEEPER_TOKEN": token, "GATEKEEPER_PUBLIC_URL": gk.url},
    )
    return Setup(gk, db, root, deployer)


def holder(server: MlflowServer, name: str) -> str | None:
    return MlflowClient(server.url).get_registered_model(name).aliases.get(ALIAS)


def status_tag(server: MlflowServer, name: str, version: int) -> str | None:
    return (
        MlflowClient(server.url).get_model_version(name, str(version)).tags.get("gatekeeper.status")
    )


def audit_rows(setup: Setup, action: str, target_prefix: str) -> list[dict[str, Any]]:
    with sqlite3.connect(setup.db) as db:
        rows = db.execute(
            "SELECT details FROM audit_events WHERE action = ? AND target LIKE ? ORDER BY id",
            (action, f"{target_prefix}%"),
        ).fetchall()
    return [json.loads(details) for (details,) in rows]


def tamper_events(setup: Setup, name: str) -> list[tuple[str, int | None, dict[str, Any]]]:
    with sqlite3.connect(setup.db) as db:
        rows = db.execute(
            "SELECT kind, version, found FROM tamper_events WHERE model_name = ? ORDER BY id",
            (name,),
        ).fetchall()
    return [(kind, version, json.loads(found)) for kind, version, found in rows]


def log_model_dir(server: MlflowServer, name: str, build: Any) -> int:
    """A clean sklearn model saved to a directory, changed by `build(dir)` as its author
    wants, logged as the run's artifacts and registered."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 3))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    mlflow.set_tracking_uri(server.url)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        mlflow.sklearn.save_model(model, str(model_dir), serialization_format="pickle")
        build(model_dir)
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(model_dir), "model")
            registered = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    return int(registered.version)


def fake_secrets(count: int, seed: int) -> str:
    """`count` AWS-style access keys: what a test fixture file of a careless team holds."""
    pick = random.Random(seed)
    keys = ("AKIA" + "".join(pick.choice(string.ascii_uppercase + "234567") for _ in range(16))
            for _ in range(count))  # fmt: skip
    return "\n".join(f'aws_access_key_id_{i} = "{key}"' for i, key in enumerate(keys)) + "\n"


def waive(setup: Setup, body: dict[str, Any]) -> dict[str, Any]:
    answer = setup.gk.api("POST", "/api/v1/waivers", json=body)
    assert answer.status_code == 201, answer.text
    result: dict[str, Any] = answer.json()
    return result


def in_seconds(seconds: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat()
