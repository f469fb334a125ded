"""Registration to alias: how long a clean version waits before deploy jobs can load it.

Starts a real `mlflow server` and `gatekeeper serve` (SQLite, webhook delivery), registers N
clean scikit-learn versions one after another and measures, for each, MLflow's creation
timestamp of the version to the moment `production-ready` points at it (polled every 20 ms).

    .venv/bin/python -m bench.registration_to_alias [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from mlflow import MlflowClient

from demo.models import log_clean_model
from tests.helpers import WEBHOOK_SECRET, GatekeeperProcess, MlflowServer, unique_name, wait_for


def main(samples: int = 5) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-r2a-"))
    server = MlflowServer(root)
    server.start()
    name = unique_name("bench")
    gk = GatekeeperProcess(
        data_dir=root / "gk",
        database_url=f"sqlite:///{root / 'gk.db'}",
        tracking_uri=server.url,
        models=name,
    )
    try:
        gk.start()
        client = MlflowClient(server.url)
        client.create_webhook(
            name="bench",
            url=f"{gk.url}/webhooks/mlflow",
            events=["model_version.created"],
            secret=WEBHOOK_SECRET,
        )
        time.sleep(2)
        log_clean_model(server.url, name)  # warm-up: first imports on both sides
        wait_for(lambda: client.get_registered_model(name).aliases, 60, "warm-up alias")
        seconds: list[float] = []
        for _ in range(samples):
            version = log_clean_model(server.url, name)
            created_ms = client.get_model_version(name, str(version)).creation_timestamp
            wait_for(
                lambda v=version: (
                    client.get_registered_model(name).aliases.get("production-ready") == str(v)
                ),
                120,
                f"alias on v{version}",
                interval=0.02,
            )
            seconds.append(time.time() - created_ms / 1000)
        print("| sample | registration -> alias (s) |")
        print("|---|---|")
        for i, value in enumerate(seconds, 1):
            print(f"| {i} | {value:.2f} |")
        print(f"| median of {samples} | {statistics.median(seconds):.2f} |")
    finally:
        gk.stop()
        server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
