"""The trust chain, attacked through a real MLflow server and `gatekeeper serve`.

What the gates judge, what the signature covers, where the alias points and what `gatekeeper
verify` accepts must be one set of bytes. Each test is one attack from issue 20's list, made
as the attacker would make it: any MLflow user (register versions, set tags, move the alias,
write the artifact store), a man in the middle of plain HTTP. Each asserts the safe outcome
and the reason the run or the command gives.

This gatekeeper starts runs only through the API and guards only when it publishes (a
one-hour poll), so an alias moved by hand stays moved while a run reads it, as in a real
race. The attacks that need the poller are in test_trust_chain_guarded.py.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from demo.models import log_clean_model
from service.integrity.envelope import STATUS_TYPE, sign_envelope
from service.integrity.keys import generate_key_pair
from tests.e2e.trust_setup import (
    ALIAS,
    ALLOW_ALL,
    Setup,
    fake_secrets,
    holder,
    in_seconds,
    log_model_dir,
    start_gatekeeper,
    status_tag,
    tamper_events,
    waive,
)
from tests.helpers import (
    VENV_BIN,
    LoggedInput,
    MlflowServer,
    flip_one_byte,
    gate_result,
    log_sklearn_with_inputs,
    run_verify,
    stored_artifact,
    unique_name,
)
from tests.synthetic_credit import NUMERIC_FEATURES, TARGET, make_credit_data, train_model

PREFIX = unique_name("trust")


@pytest.fixture(scope="module")
def service(
    mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    setup = start_gatekeeper(mlflow_server, tmp_path_factory.mktemp("trust"), PREFIX, {})
    yield setup
    setup.gk.stop()


# -- 1. judged but not signed ----------------------------------------------------------------


def test_a_file_under_dot_git_is_signed_so_overwriting_it_later_fails_verify(
    service: Setup, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    """model-signing's default leaves `.git/` out of a signature; the gates judge it. The
    attacker ships a harmless `.git/` file, lets the version pass, then overwrites the file in
    the artifact store: verify must notice."""
    name = f"{PREFIX}-dotgit"

    def with_git_dir(model_dir: Path) -> None:
        (model_dir / ".git").mkdir()
        (model_dir / ".git" / "HEAD").write_text("ref: refs/heads/main\n")

    version = log_model_dir(mlflow_server, name, with_git_dir)
    run = service.gk.run_version(name, version)
    assert run["status"] == "passed", run["decision"]
    good = service.deployer.verify(mlflow_server, f"models:/{name}@{ALIAS}")
    assert good.returncode == 0, good.stderr

    stored_artifact(mlflow_server, name, version, ".git/HEAD").write_bytes(
        b"cos\nsystem\n(S'id'\ntR."
    )
    changed = service.deployer.verify(mlflow_server, f"models:/{name}/{version}")
    assert changed.returncode == 1, changed.stderr
    assert ".git/HEAD is not the file the gatekeeper signed" in changed.stderr


def test_an_mlmodel_that_loads_its_pickle_from_dot_git_is_blocked(
    service: Setup, mlflow_server: MlflowServer
) -> None:
    name = f"{PREFIX}-gitpickle"

    def pickle_in_git(model_dir: Path) -> None:
        (model_dir / ".git").mkdir()
        (model_dir / "model.pkl").rename(model_dir / ".git" / "model.pkl")
        mlmodel = (model_dir / "MLmodel").read_text()
        (model_dir / "MLmodel").write_text(
            mlmodel.replace("model_path: model.pkl", "model_path: .git/model.pkl").replace(
                "pickled_model: model.pkl", "pickled_model: .git/model.pkl"
            )
        )

    run = service.gk.run_version(name, log_model_dir(mlflow_server, name, pickle_in_git))
    assert run["status"] == "failed"
    findings = gate_result(run, "security")["findings"]
    dotted = [
        f for f in findings if f["rule_id"].startswith("SEC-MLFLOW") and ".git" in f["message"]
    ]
    assert dotted and all(f["severity"] in ("HIGH", "CRITICAL") for f in dotted), findings


# -- 2. and 3. chat templates and remote code found by content --------------------------------

SET_BLOCK_POPEN = (
    "{% set x %}__class__{% endset %}{% set y %}__subclasses__{% endset %}"
    "{{ ''[x].__mro__[1][y]()[300]('id', shell=True, stdout=-1).communicate() }}"
)


def test_a_chat_template_hiding_dunders_in_a_set_block_in_chat_template_json_is_blocked(
    service: Setup, mlflow_server: MlflowServer
) -> None:
    name = f"{PREFIX}-template"

    def processor_template(model_dir: Path) -> None:
        (model_dir / "chat_template.json").write_text(
            json.dumps({"chat_template": SET_BLOCK_POPEN})
        )

    run = service.gk.run_version(name, log_model_dir(mlflow_server, name, processor_template))
    assert run["status"] == "failed"
    findings = gate_result(run, "security")["findings"]
    assert any(
        f["rule_id"].startswith("SEC-TEMPLATE-") and f["file"] == "chat_template.json"
        for f in findings
    ), findings


def test_remote_code_named_in_processor_config_is_found(
    service: Setup, mlflow_server: MlflowServer
) -> None:
    name = f"{PREFIX}-automap"

    def processor_code(model_dir: Path) -> None:
        (model_dir / "processor_config.json").write_text(
            json.dumps({"auto_map": {"AutoProcessor": "evil--processing.EvilProcessor"}})
        )

    run = service.gk.run_version(name, log_model_dir(mlflow_server, name, processor_code))
    assert run["status"] == "failed"
    findings = gate_result(run, "security")["findings"]
    assert any(
        f["rule_id"] == "SEC-AUTOMAP-001" and f["file"] == "processor_config.json" for f in findings
    ), findings


# -- 5. baselines from the record -------------------------------------------------------------


def _log_with_training(
    server: MlflowServer, root: Path, name: str, train_rows: int, seed: int
) -> int:
    """A credit model trained on `train_rows` rows, its run logging the training file."""
    train = make_credit_data(n=train_rows, seed=seed)[[*NUMERIC_FEATURES, TARGET]]
    train_csv = root / "logged" / f"{name}-{train_rows}-{seed}.csv"
    train.to_csv(train_csv, index=False)
    model = train_model(pd.read_csv(train_csv), include_gender=False)
    training = LoggedInput(train, str(train_csv), "training", "credit-train")
    return log_sklearn_with_inputs(server.url, name, model, train[NUMERIC_FEATURES], [training])[0]


def test_moving_the_alias_by_hand_cannot_choose_the_candidates_baseline(
    service: Setup, mlflow_server: MlflowServer
) -> None:
    """A weak v1 passes, a strong v2 passes and holds the alias. Two weaker candidates follow
    (accuracy 0.044 below v2, limit 0.02); before each run the attacker points the alias at the
    weak old v1, then at the candidate itself. Both are compared with v2, the record's holder,
    and fail; drift compares with v2's training data, not `skipped`."""
    client = MlflowClient(mlflow_server.url)
    name = f"{PREFIX}-regress-credit"
    root = service.root
    weak_old = _log_with_training(mlflow_server, root, name, 30, 4)
    assert service.gk.run_version(name, weak_old)["status"] == "passed"
    strong = _log_with_training(mlflow_server, root, name, 3000, 1)
    assert service.gk.run_version(name, strong)["status"] == "passed"
    assert holder(mlflow_server, name) == str(strong)

    for attacker_alias in ("old", "candidate"):
        candidate = _log_with_training(mlflow_server, root, name, 30, 3)
        moved_to = weak_old if attacker_alias == "old" else candidate
        client.set_registered_model_alias(name, ALIAS, str(moved_to))
        run = service.gk.run_version(name, candidate)
        performance = gate_result(run, "performance")
        assert run["status"] == "failed", (attacker_alias, run["decision"])
        assert performance["evidence"]["champion_version"] == str(strong)
        assert f"regressed against version {strong}" in performance["message"], performance
        drift = gate_result(run, "drift")
        assert drift["status"] != "skipped", drift["message"]
        reference = drift["evidence"]["datasets"]["reference"]
        assert reference["source"].endswith(f"{name}-3000-1.csv")
        assert holder(mlflow_server, name) == str(strong)  # put back by the publisher
    kinds = [(kind, version) for kind, version, _ in tamper_events(service, name)]
    assert ("alias", weak_old) in kinds and ("alias", candidate) in kinds


# -- 6. verify answers the deploy job's real question ------------------------------------------


class _Interceptor(http.server.ThreadingHTTPServer):
    """A man in the middle of plain HTTP: forwards to the gatekeeper, but answers the key
    request with its own key and the status request with "promotable", signed by that key."""

    def __init__(self, upstream: str, evil_key: Path) -> None:
        self.upstream, self.evil_key = upstream, evil_key
        super().__init__(("127.0.0.1", 0), _InterceptHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _InterceptHandler(http.server.BaseHTTPRequestHandler):
    server: _Interceptor

    def do_GET(self) -> None:
        path = urlsplit(self.path)
        if path.path == "/api/v1/keys/public":
            body = self.server.evil_key.with_suffix(".pub").read_bytes()
        elif path.path.endswith("/status"):
            parts = path.path.split("/")
            nonce = dict(q.split("=", 1) for q in path.query.split("&"))["nonce"]
            forged = {
                "model": parts[4], "version": int(parts[6]), "promotable": True,
                "alias_holder": True, "alias": ALIAS, "nonce": nonce, "reasons": [],
            }  # fmt: skip
            body = json.dumps(sign_envelope(self.server.evil_key, STATUS_TYPE, forged)).encode()
        else:
            answer = httpx.get(f"{self.server.upstream}{self.path}", headers=dict(self.headers))
            body = answer.content
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_verify_pins_the_key_and_asks_whether_the_version_is_promotable_now(
    service: Setup, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    client = MlflowClient(mlflow_server.url)
    name, other = f"{PREFIX}-verify", f"{PREFIX}-verify-other"
    first = log_clean_model(mlflow_server.url, name)
    source = client.get_model_version(name, str(first)).source
    same_files = int(mlflow.register_model(source, name, await_registration_for=0).version)
    foreign = int(mlflow.register_model(source, other, await_registration_for=0).version)
    for model, version in ((name, first), (name, same_files), (other, foreign)):
        assert service.gk.run_version(model, version)["status"] == "passed"
    deployer = service.deployer
    own_bundle = client.get_model_version(name, str(same_files)).tags["gatekeeper.signature_uri"]

    ok = deployer.verify(mlflow_server, f"models:/{name}@{ALIAS}")
    assert ok.returncode == 0, ok.stderr
    assert "promotable now (gatekeeper)" in ok.stdout

    # a bundle of another version (same files) and of another model, pointed at by the tag
    tags = client.get_model_version(name, str(first)).tags
    client.set_model_version_tag(name, str(same_files), "gatekeeper.signature_uri",
                                 tags["gatekeeper.signature_uri"])  # fmt: skip
    replayed = deployer.verify(mlflow_server, f"models:/{name}/{same_files}")
    assert replayed.returncode == 1
    assert f"the signature is for {name} v{first}, not {name} v{same_files}" in replayed.stderr
    client.set_model_version_tag(other, str(foreign), "gatekeeper.signature_uri",
                                 tags["gatekeeper.signature_uri"])  # fmt: skip
    wrong_model = deployer.verify(mlflow_server, f"models:/{other}/{foreign}")
    assert wrong_model.returncode == 1 and f"not {other} v{foreign}" in wrong_model.stderr

    # another key: the deploy job pinned the real one
    evil = tmp_path / "evil.pem"
    generate_key_pair(evil)
    mitm = _Interceptor(service.gk.url, evil)
    try:
        unpinned = run_verify(mlflow_server, f"models:/{name}/{first}",
                              env={**deployer.env, "GATEKEEPER_PUBLIC_URL": mitm.url})  # fmt: skip
        assert unpinned.returncode == 2
        assert "pin the gatekeeper's key" in unpinned.stderr
        plain_http = run_verify(
            mlflow_server, f"models:/{name}/{first}", "--key-fingerprint", "ab" * 32,
            env={**deployer.env, "GATEKEEPER_PUBLIC_URL": mitm.url},
        )  # fmt: skip
        assert plain_http.returncode == 2 and "plain HTTP" in plain_http.stderr
        with_evil_key = run_verify(
            mlflow_server, f"models:/{name}/{first}", "--public-key", str(evil.with_suffix(".pub")),
            env=deployer.env,
        )  # fmt: skip
        assert with_evil_key.returncode == 1  # the bundle is not that key's

        # quarantined: the gatekeeper says so; a forged "promotable" through the interceptor
        # is refused because the pinned key did not sign it
        incident = service.gk.api(
            "POST", "/api/v1/incidents",
            json={"model": name, "version": first, "reason": "leaked credentials in training"},
        )  # fmt: skip
        assert incident.status_code == 201, incident.text
        scratch = tmp_path / "deploy-tmp"
        scratch.mkdir()
        quarantined = run_verify(
            mlflow_server, f"models:/{name}/{first}", "--public-key", str(deployer.key),
            env={**deployer.env, "TMPDIR": str(scratch)},
        )  # fmt: skip
        assert quarantined.returncode == 1
        assert "quarantined by an open incident" in quarantined.stderr
        assert not list(scratch.glob("verified-*"))  # refused files are not left behind
        forged = deployer.verify(
            mlflow_server, f"models:/{name}/{first}",
            "--gatekeeper", mitm.url,
        )  # fmt: skip
        assert forged.returncode == 1
        assert "not signed by the pinned gatekeeper key" in forged.stderr

        # offline: the signed revocation list says the same
        listed = service.gk.api(
            "GET", "/api/v1/revocations",
            headers={"Authorization": f"Bearer {deployer.env['GATEKEEPER_TOKEN']}"},
        )  # fmt: skip
        revocations = tmp_path / "revocations.json"
        revocations.write_text(listed.text)
        offline_env = {}  # no token, no gatekeeper: the file is the only source
        offline_bad = run_verify(
            mlflow_server, f"models:/{name}/{first}", "--public-key", str(deployer.key),
            "--revocations", str(revocations), env=offline_env,
        )  # fmt: skip
        assert offline_bad.returncode == 1 and "is revoked" in offline_bad.stderr
        assert "quarantined" in offline_bad.stderr
        offline_other = run_verify(
            mlflow_server, f"models:/{other}@{ALIAS}", "--public-key", str(deployer.key),
            "--revocations", str(revocations), env=offline_env,
        )  # fmt: skip
        # the tag on `other` still points at the bundle of `name`: refused for that reason
        assert offline_other.returncode == 1 and f"not {other} v{foreign}" in offline_other.stderr
        offline_ok = run_verify(
            mlflow_server, f"models:/{name}/{same_files}", "--public-key", str(deployer.key),
            "--revocations", str(revocations), env=offline_env,
        )  # fmt: skip
        assert offline_ok.returncode == 1  # the tag still points at v{first}'s bundle
        client.set_model_version_tag(name, str(same_files), "gatekeeper.signature_uri", own_bundle)
        offline_ok = run_verify(
            mlflow_server, f"models:/{name}@{ALIAS}", "--public-key", str(deployer.key),
            "--revocations", str(revocations), env=offline_env,
        )  # fmt: skip
        assert offline_ok.returncode == 0, offline_ok.stderr
        assert "revocation list issued at" in offline_ok.stdout
        closed = service.gk.api("POST", f"/api/v1/incidents/{incident.json()['id']}/close")
        assert closed.status_code == 200
    finally:
        mitm.shutdown()

    # superseded by a failing re-run (the policy changed: the version is withdrawn)
    (service.root / "rules.rego").write_text(
        ALLOW_ALL + f'\ndeny contains "withdrawn" if input.model.name == "{name}"\n'
    )
    try:
        assert service.gk.run_version(name, same_files)["status"] == "failed"
    finally:
        (service.root / "rules.rego").write_text(ALLOW_ALL)
    superseded = deployer.verify(mlflow_server, f"models:/{name}/{same_files}")
    assert superseded.returncode == 1 and "is failed" in superseded.stderr, superseded.stderr


def test_the_plain_model_signing_cli_still_verifies_a_gatekeeper_signature(
    service: Setup, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    name = f"{PREFIX}-plain"
    version = log_clean_model(mlflow_server.url, name)
    assert service.gk.run_version(name, version)["status"] == "passed"
    bundle = service.gk.api("GET", f"/api/v1/models/{name}/versions/{version}/signature")
    signature = tmp_path / "model.sig"
    signature.write_text(bundle.text)
    statement = json.loads(base64.b64decode(json.loads(bundle.text)["dsseEnvelope"]["payload"]))
    claims = statement["predicate"]["gatekeeper"]
    assert (claims["model"], claims["version"]) == (name, str(version))
    assert "ignore_paths" not in statement["predicate"]["serialization"]
    # the README's recipe, nothing of ours: `mlflow artifacts download` writes MLflow's own
    # `registered_model_meta` beside the files, which the recipe tells model_signing to skip
    target = tmp_path / "files"
    subprocess.run(
        [str(VENV_BIN / "mlflow"), "artifacts", "download", "-u", f"models:/{name}/{version}",
         "-d", str(target)],
        check=True, capture_output=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_server.url},
    )  # fmt: skip
    plain = subprocess.run(
        [str(VENV_BIN / "model_signing"), "verify", "key", str(target), "--public_key",
         str(service.deployer.key), "--signature", str(signature), "--no-ignore-git-paths",
         "--ignore-paths", str(target / "registered_model_meta")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert plain.returncode == 0, plain.stdout + plain.stderr


# -- 7. Rego sees every finding ----------------------------------------------------------------


def test_padding_findings_of_a_waived_rule_cannot_hide_a_high_pickle_finding(
    service: Setup, mlflow_server: MlflowServer
) -> None:
    name = f"{PREFIX}-padding"

    def padded(model_dir: Path) -> None:
        (model_dir / "fixtures").mkdir()
        (model_dir / "fixtures" / "keys.txt").write_text(fake_secrets(250, seed=7))
        (model_dir / "zz").mkdir()
        (model_dir / "zz" / "helper.pkl").write_bytes(b"cmymodule\nThing\n(tR.")

    version = log_model_dir(mlflow_server, name, padded)
    first = service.gk.run_version(name, version)
    assert first["status"] == "failed"
    waive(service, {
        "model": name, "version": version, "rule_id": "SEC-SECRET-001",
        "reason": "fixture keys, revoked upstream", "expires_at": in_seconds(3600),
    })  # fmt: skip
    again = service.gk.run_version(name, version)
    assert again["status"] == "failed", again["decision"]
    assert again["decision"]["waived"] == []
    seen = again["decision"]["input"]["gates"][0]["findings"]
    assert len(seen) > 250
    assert any(f["rule_id"] == "SEC-PICKLE-002" for f in seen)


# -- 8. quarantine by content and canonical source ---------------------------------------------


def _log_trained_on(server: MlflowServer, name: str, source: str, frame: pd.DataFrame) -> int:
    from sklearn.linear_model import LogisticRegression

    features = frame.drop(columns=["label"])
    model = LogisticRegression().fit(features, frame["label"])
    training = LoggedInput(frame, source, "training", f"train-{name[-6:]}")
    return log_sklearn_with_inputs(server.url, name, model, features, [training])[0]


def test_the_same_poisoned_bytes_under_any_spelling_are_quarantined(
    service: Setup, mlflow_server: MlflowServer
) -> None:
    import numpy as np

    data = service.root / "logged"
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 3))
    frame = pd.DataFrame(x, columns=["a", "b", "c"]).assign(label=(x[:, 0] > 0).astype(int))
    poisoned = data / "poisoned.csv"
    frame.to_csv(poisoned, index=False)
    frame = pd.read_csv(poisoned)  # what MLflow's digest is recomputed on
    (data / "alias-link.csv").symlink_to(poisoned)
    (data / "copy.csv").write_bytes(poisoned.read_bytes())
    spellings = {
        "uri": f"file://{poisoned}",
        "link": str(data / ".." / "logged" / "alias-link.csv"),  # a symlink, spelled with ..
        "copy": str(data / "copy.csv"),  # the same bytes under another name
    }
    trained = {}
    for label, source in spellings.items():
        name = f"{PREFIX}-lineage-{label}"
        version = _log_trained_on(mlflow_server, name, source, frame)
        run = service.gk.run_version(name, version)
        assert run["status"] == "passed"
        assert [d["name"] for d in run["datasets"] if "sha256" in d] == ["training"], run[
            "datasets"
        ]
        trained[name] = version
    opened = service.gk.api(
        "POST", "/api/v1/incidents", json={"dataset": str(poisoned), "reason": "labels flipped"}
    )
    assert opened.status_code == 201, opened.text
    affected = {(a["model"], a["version"]) for a in opened.json()["affected"]}
    assert affected == set(trained.items())
    for name, version in trained.items():
        assert holder(mlflow_server, name) is None, name
        assert status_tag(mlflow_server, name, version) == "quarantined", name

    # a version trained afterwards on the same bytes, under yet another name, is held too
    late = f"{PREFIX}-lineage-late"
    renamed = data / "fresh-name.csv"
    renamed.write_bytes(poisoned.read_bytes())
    late_version = _log_trained_on(mlflow_server, late, str(renamed), frame)
    run = service.gk.run_version(late, late_version)
    assert run["status"] == "passed"  # the gates pass; the incident holds it back
    assert holder(mlflow_server, late) is None
    assert status_tag(mlflow_server, late, late_version) == "quarantined"
    service.gk.api("POST", f"/api/v1/incidents/{opened.json()['id']}/close")


# -- 9. waivers bound to content ---------------------------------------------------------------


def test_a_waiver_does_not_follow_a_version_whose_files_were_replaced(
    service: Setup, mlflow_server: MlflowServer
) -> None:
    name = f"{PREFIX}-waiver-files"

    def with_fixture_key(model_dir: Path) -> None:
        (model_dir / "fixtures.txt").write_text(fake_secrets(1, seed=2))

    version = log_model_dir(mlflow_server, name, with_fixture_key)
    seen = service.gk.run_version(name, version)
    assert seen["status"] == "failed"
    waiver = waive(service, {
        "model": name, "version": version, "rule_id": "SEC-SECRET-001",
        "reason": "one known fixture key", "expires_at": in_seconds(3600),
    })  # fmt: skip
    assert waiver["artifact_digest"] == seen["artifact_digest"]  # what the approver saw
    # someone with store access swaps in other files under the same version number
    stored_artifact(mlflow_server, name, version, "fixtures.txt").write_text(
        fake_secrets(40, seed=9)
    )
    swapped = service.gk.run_version(name, version)
    assert swapped["artifact_digest"] != seen["artifact_digest"]
    assert swapped["status"] == "failed" and swapped["decision"]["waived"] == []

    revoked = service.gk.api("DELETE", f"/api/v1/waivers/{waiver['id']}")
    assert revoked.status_code == 200


# -- 10. re-hash before moving; re-verification covers every promotable version ----------------


def test_the_alias_never_falls_back_onto_a_version_whose_files_changed(
    service: Setup, mlflow_server: MlflowServer
) -> None:
    """No scheduled re-verification here: only the re-hash in the move itself can notice."""
    name = f"{PREFIX}-fallback"
    older = log_clean_model(mlflow_server.url, name)
    newer = log_clean_model(mlflow_server.url, name, extra_bytes=16)
    assert service.gk.run_version(name, older)["status"] == "passed"
    assert service.gk.run_version(name, newer)["status"] == "passed"
    flip_one_byte(stored_artifact(mlflow_server, name, older, "model.pkl"))

    incident = service.gk.api(
        "POST", "/api/v1/incidents", json={"model": name, "version": newer, "reason": "bad data"}
    )
    assert incident.status_code == 201, incident.text
    assert holder(mlflow_server, name) is None  # not v1: its files changed
    assert status_tag(mlflow_server, name, older) == "tampered"
    [event] = [e for e in tamper_events(service, name) if e[0] == "artifact"]
    assert event[1] == older and event[2]["how"] == "re-hash before an alias move"
    service.gk.api("POST", f"/api/v1/incidents/{incident.json()['id']}/close")
    assert holder(mlflow_server, name) == str(newer)
