"""Logged datasets are the trainer's word: only operator-listed sources are read, and the
target is found from the model's own signature. Real files and real MLflow digests."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from service.errors import ConfigError
from service.mlflow.logged_data import LoggedDataset, mlflow_digest
from service.policy import parse_policy
from service.runs.datasets import (
    DatasetError,
    Origin,
    infer_target,
    load_logged_dataset,
    source_allowed,
)


@contextlib.contextmanager
def _loopback(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 for one test; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


INPUTS = [{"name": "age", "type": "double"}, {"name": "income", "type": "double"}]
SIGNATURE = {"signature": {"inputs": json.dumps(INPUTS)}}  # as MLflow writes it in MLmodel


@pytest.mark.parametrize(
    ("source", "allowed"),
    [
        ("/srv/data/train.csv", True),
        ("file:///srv/data/sub/train.parquet", True),
        ("/srv/data/../../etc/passwd", False),
        ("/srv/database.db", False),
        ("/srv/data-other/x.csv", False),
        ("relative/train.csv", False),
        ("https://data.example.com/ml/train.csv", True),
        ("https://data.example.com.evil.net/ml/train.csv", False),
        ("https://data.example.com/ml/../admin", False),
        ("https://data.example.com/ml/%2e%2e/admin", False),
        ("https://data.example.com@evil.example/ml/train.csv", False),
        ("https://data.example.com/ml/..;/admin", False),
        ("/srv/data/train\x00.csv", False),
        ("https://data.example.com/mlx/train.csv", False),
        ("http://data.example.com/ml/train.csv", False),
        ("http://169.254.169.254/latest/meta-data/", False),
        ("s3://ml-data/train.csv", True),
        ("s3://ml-data-private/train.csv", False),
        ("", False),
    ],
)
def test_only_sources_under_an_allowed_prefix_are_read(source: str, allowed: bool) -> None:
    prefixes = ("/srv/data/", "https://data.example.com/ml/", "s3://ml-data/")
    assert source_allowed(source, prefixes) is allowed


def test_a_fifo_under_an_allowed_root_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "train.csv"
    os.mkfifo(fifo)
    logged = LoggedDataset(
        name="train", digest="0" * 8, source_type="local", source=str(fifo),
        context="training", columns=(),
    )  # fmt: skip
    with pytest.raises(DatasetError, match="not a regular file"):
        load_logged_dataset(
            "training", logged, allowed_sources=(str(tmp_path),), origin=Origin.RUN_INPUT
        )


def test_a_symlink_out_of_an_allowed_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    secret = tmp_path / "gatekeeper.db"
    secret.write_text("a,b\n1,2\n")
    (root / "train.csv").symlink_to(secret)
    assert not source_allowed(str(root / "train.csv"), (str(root),))


def _logged(path: Path, frame: pd.DataFrame) -> LoggedDataset:
    return LoggedDataset(
        name="train", digest=mlflow_digest(frame), source_type="local", source=str(path),
        context="training", columns=tuple(frame.columns),
    )  # fmt: skip


def test_logged_data_is_loaded_when_its_digest_matches(tmp_path: Path) -> None:
    frame = pd.DataFrame({"age": [31.0, 45.0, 52.0], "income": [1.0, 2.0, 3.0], "y": [0, 1, 1]})
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    loaded = load_logged_dataset(
        "training", _logged(path, frame), allowed_sources=(str(tmp_path),),
        origin=Origin.RUN_INPUT,
    )  # fmt: skip
    assert loaded.frame.shape == (3, 3)
    assert loaded.record()["origin"] == "run-input" and loaded.trainer_supplied


def test_logged_data_changed_after_the_run_is_refused(tmp_path: Path) -> None:
    frame = pd.DataFrame({"age": [31.0, 45.0, 52.0], "income": [1.0, 2.0, 3.0], "y": [0, 1, 1]})
    path = tmp_path / "train.csv"
    logged = _logged(path, frame)
    frame.assign(y=[1, 1, 1]).to_csv(path, index=False)  # relabelled after the run
    with pytest.raises(DatasetError, match="changed after the run"):
        load_logged_dataset(
            "training", logged, allowed_sources=(str(tmp_path),), origin=Origin.RUN_INPUT
        )


def test_logged_data_outside_the_allowed_sources_is_never_read(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1]})
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DatasetError, match="not under an allowed source"):
        load_logged_dataset(
            "training", _logged(path, frame), allowed_sources=(), origin=Origin.RUN_INPUT
        )


def test_target_is_the_one_column_that_is_not_a_model_input() -> None:
    frame = pd.DataFrame({"age": [1.0], "income": [2.0], "approved": [1]})
    assert infer_target(frame, None, SIGNATURE) == "approved"
    assert infer_target(frame, "income", SIGNATURE) == "income"
    with pytest.raises(DatasetError, match="set `target`"):
        infer_target(frame.assign(extra=1), None, SIGNATURE)
    with pytest.raises(DatasetError, match="no input signature"):
        infer_target(frame, None, {})
    # the MLmodel is the model author's file: a signature of the wrong shape is no signature
    with pytest.raises(DatasetError, match="no input signature"):
        infer_target(frame, None, {"signature": "inputs: everything"})


def test_a_policy_enabling_a_gate_the_gatekeeper_does_not_have_is_refused() -> None:
    text = "models:\n  - match: '*'\n    gates:\n      explainability: {mode: enforce}\n"
    with pytest.raises(ConfigError) as refused:
        parse_policy(text, "policy.yaml")
    assert "policy.yaml:4: models[0].gates.explainability" in str(refused.value)


def test_a_logged_url_that_redirects_off_its_allowed_prefix_is_not_followed() -> None:
    """A real HTTP server on loopback: /ml/train.csv redirects to /private/secret.csv. The
    allow-list judged the first URL only, so the redirect is refused, never followed."""
    import http.server

    class Redirecting(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/ml/"):
                self.send_response(302)
                self.send_header("Location", "/private/secret.csv")
                self.end_headers()
            else:
                body = b"secret\n42\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    with _loopback(Redirecting) as base:
        logged = LoggedDataset(
            name="train", digest="0" * 8, source_type="http", source=f"{base}/ml/train.csv",
            context="training", columns=(),
        )  # fmt: skip
        with pytest.raises(DatasetError, match="cannot download"):
            load_logged_dataset(
                "training", logged, allowed_sources=(f"{base}/ml/",), origin=Origin.RUN_INPUT
            )


def test_a_source_swapped_for_a_symlink_after_the_check_is_refused_when_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Time of check, time of use: the file is regular when the allow-list looks and a
    symlink to a file outside it when read. What was opened is judged again, so it is not
    read. (The swap is done by wrapping the real check; the files and the read are real.)"""
    import service.runs.datasets as datasets

    root = tmp_path / "data"
    root.mkdir()
    secret = tmp_path / "gatekeeper.db"
    secret.write_text("a,b\n1,2\n")
    frame = pd.DataFrame({"a": [1], "b": [2]})
    path = root / "train.csv"
    frame.to_csv(path, index=False)
    checked = datasets.source_allowed

    def check_then_swap(source: str, allowed: tuple[str, ...]) -> bool:
        verdict = checked(source, allowed)
        path.unlink()
        path.symlink_to(secret)
        return verdict

    monkeypatch.setattr(datasets, "source_allowed", check_then_swap)
    with pytest.raises(DatasetError, match="outside the allowed sources"):
        load_logged_dataset(
            "training", _logged(path, frame), allowed_sources=(str(root),),
            origin=Origin.RUN_INPUT,
        )  # fmt: skip


def test_a_download_over_the_policy_byte_limit_is_refused_before_it_is_buffered() -> None:
    """A loopback server declares 50 MB; the policy allows 1 KB: refused on the header,
    nothing read. One that lies about its length is cut at the limit while streaming."""
    import http.server

    from service.runs.datasets import DatasetBounds

    class Big(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            if self.path.endswith("declared.csv"):
                self.send_header("Content-Length", str(50 * 1024**2))
            self.end_headers()
            for _ in range(64):  # 64 KB of rows, more than the limit
                self.wfile.write(b"a,b\n" + b"1,2\n" * 256)

        def log_message(self, *_args: object) -> None:
            pass

    with _loopback(Big) as root:
        base = f"{root}/ml"
        for name, words in (("declared.csv", "52428800 bytes"), ("chunked.csv", "over the")):
            logged = LoggedDataset(
                name="train", digest="0" * 8, source_type="http", source=f"{base}/{name}",
                context="training", columns=(),
            )  # fmt: skip
            with pytest.raises(DatasetError, match=words):
                load_logged_dataset(
                    "training", logged, allowed_sources=(f"{base}/",), origin=Origin.RUN_INPUT,
                    bounds=DatasetBounds(max_bytes=1024),
                )  # fmt: skip
