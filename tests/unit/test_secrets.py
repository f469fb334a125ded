"""Secrets in text files, binary strings and dataset columns: found, located, never repeated."""

from __future__ import annotations

import hashlib
import json
import pickle
import socket
from pathlib import Path

import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from gates.base import Finding, Severity
from gates.security.common import Location
from gates.security.secrets import extract_strings, scan_dataframe, scan_strings, scan_text_file

# Fake credentials in the documented shapes of each provider (none is live).
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
SLACK_TOKEN = "xoxb-" + "1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
PRIVATE_KEY_BODY = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun"
PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n" + PRIVATE_KEY_BODY + "\n-----END RSA PRIVATE KEY-----\n"
)
SECRETS = (AWS_KEY_ID, AWS_SECRET, GITHUB_TOKEN, SLACK_TOKEN, PRIVATE_KEY_BODY)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """detect-secrets can verify keys against AWS, Slack, ...; we must never let it."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _assert_no_secret_text(findings: list[Finding]) -> None:
    dumped = json.dumps([f.to_dict() for f in findings])
    for secret in SECRETS:
        windows = {secret[i : i + 8] for i in range(len(secret) - 7)}
        leaked = [w for w in windows if w in dumped]
        assert not leaked, f"part of a secret is in a finding: {leaked}"


def _short_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


def test_text_file_secrets_are_found_by_line(tmp_path: Path) -> None:
    path = tmp_path / "settings.py"
    path.write_text(
        f'AWS_ACCESS_KEY_ID = "{AWS_KEY_ID}"\n'
        f'aws_secret_access_key = "{AWS_SECRET}"\n'
        f'GITHUB = "{GITHUB_TOKEN}"\n'
        f'SLACK = "{SLACK_TOKEN}"\n' + PRIVATE_KEY
    )
    findings = scan_text_file(path, Location("config/settings.py"))

    by_type = {f.evidence["secret_type"]: f for f in findings}
    assert set(by_type) == {"AWS Access Key", "GitHub Token", "Slack Token", "Private Key"}
    aws = sorted(
        (f.evidence["line"], f.evidence["sha256_12"])
        for f in findings
        if f.evidence["secret_type"] == "AWS Access Key"
    )
    assert aws == [(1, _short_hash(AWS_KEY_ID)), (2, _short_hash(AWS_SECRET))]
    assert by_type["GitHub Token"].evidence["line"] == 3
    assert by_type["Slack Token"].evidence["line"] == 4
    assert by_type["Private Key"].evidence["line"] == 5
    assert all(
        f.rule_id == "SEC-SECRET-001"
        and f.severity == Severity.HIGH
        and f.file == "config/settings.py"
        for f in findings
    )
    _assert_no_secret_text(findings)


def test_allowlist_pragma_does_not_hide_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "conf.py"
    path.write_text(f'token = "{GITHUB_TOKEN}"  # pragma: allowlist secret\n')
    [finding] = scan_text_file(path, Location("conf.py"))
    assert finding.evidence["secret_type"] == "GitHub Token"


def test_non_utf8_file_is_scanned_as_strings(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"\xff\xfe garbage \x00\x01" + AWS_KEY_ID.encode() + b"\x00\xff")
    [finding] = scan_text_file(path, Location("notes.txt"))
    assert finding.evidence["secret_type"] == "AWS Access Key"
    assert "string_index" in finding.evidence


def test_strings_of_a_binary_file(tmp_path: Path) -> None:
    blob = pickle.dumps({"weights": list(range(50)), "cfg": {"gh": GITHUB_TOKEN}})
    strings = extract_strings(blob)
    findings = scan_strings(strings, Location("model.pkl", "archive/data.pkl"))
    [finding] = findings
    assert finding.evidence["secret_type"] == "GitHub Token"
    assert finding.evidence["sha256_12"] == _short_hash(GITHUB_TOKEN)
    assert GITHUB_TOKEN in strings[finding.evidence["string_index"]]
    assert (finding.file, finding.member) == ("model.pkl", "archive/data.pkl")
    _assert_no_secret_text(findings)


def test_extract_strings_bounds() -> None:
    data = b"\x00short\x00" + b"A" * 100 + b"\x01" + b"B" * 100
    assert extract_strings(data) == ["A" * 100, "B" * 100]
    assert extract_strings(data, min_len=3) == ["short", "A" * 100, "B" * 100]
    assert extract_strings(data, max_total=150) == ["A" * 100, "B" * 50]


def test_dataframe_secret_names_column_and_rows() -> None:
    frame = pd.DataFrame(
        {
            "note": ["hello", f"my token is {GITHUB_TOKEN}", None, "fine", f"again {GITHUB_TOKEN}"],
            "amount": [1.0, 2.0, 3.0, 4.0, 5.0],
            "key_line": ["a", "b", f"-----BEGIN RSA PRIVATE KEY-----\n{PRIVATE_KEY_BODY}", "", ""],
        },
        index=[10, 11, 12, 13, 14],
    )
    findings = scan_dataframe(frame, Location("dataset:train"))
    by_column = {f.evidence["column"]: f for f in findings}
    assert set(by_column) == {"note", "key_line"}
    note = by_column["note"]
    assert (note.evidence["row"], note.evidence["rows"]) == (11, [11, 14])
    assert note.evidence["occurrences"] == 2
    assert "column 'note'" in note.message and "row 11" in note.message
    assert by_column["key_line"].evidence["secret_type"] == "Private Key"
    assert by_column["key_line"].evidence["row"] == 12
    assert all(f.file == "dataset:train" for f in findings)
    _assert_no_secret_text(findings)


def test_clean_dataframe_has_no_finding() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "city": rng.choice(["Paris", "Lyon", "Berlin"], 500),
            "comment": [f"order {i} delivered on time" for i in range(500)],
            "run_id": [f"{i:032x}" for i in range(500)],
            "score": rng.random(500),
        }
    )
    assert scan_dataframe(frame, Location("dataset:clean")) == []


@pytest.mark.slow
def test_files_of_a_normal_mlflow_model_have_no_secret(tmp_path: Path) -> None:
    features = pd.DataFrame(np.random.default_rng(0).random((30, 3)), columns=["a", "b", "c"])
    model = RandomForestClassifier(n_estimators=3).fit(features, features["a"] > 0.5)
    root = tmp_path / "m"
    mlflow.sklearn.save_model(
        model, root, serialization_format="pickle", input_example=features.head(2)
    )
    files = sorted(p for p in root.rglob("*") if p.is_file())
    assert {"MLmodel", "conda.yaml", "requirements.txt", "python_env.yaml", "model.pkl"} <= {
        p.name for p in files
    }
    for path in files:
        assert scan_text_file(path, Location(path.name)) == [], path.name


def test_short_hash_tells_tokens_and_keys_apart(tmp_path: Path) -> None:
    """detect-secrets reports `ghp` for every GitHub token and only the header of a private key;
    the short hash must still differ between two different secrets of the same kind."""
    other_token = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"
    other_key = PRIVATE_KEY.replace(PRIVATE_KEY_BODY, PRIVATE_KEY_BODY[::-1])
    path = tmp_path / "two.txt"
    path.write_text(f"a = '{GITHUB_TOKEN}'\nb = '{other_token}'\n" + PRIVATE_KEY + other_key)
    hashes = {}
    for f in scan_text_file(path, Location("two.txt")):
        hashes.setdefault(f.evidence["secret_type"], set()).add(f.evidence["sha256_12"])
    assert hashes["GitHub Token"] == {_short_hash(GITHUB_TOKEN), _short_hash(other_token)}
    assert len(hashes["Private Key"]) == 2
