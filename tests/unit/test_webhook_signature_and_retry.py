"""MLflow's HMAC scheme, checked against MLflow's own signer; retry policy as data."""

from __future__ import annotations

from mlflow.webhooks.delivery import _generate_hmac_signature
from sqlalchemy.exc import OperationalError

from service.errors import RegistryNotFound, RegistryUnavailable
from service.retry import retry_decision
from service.webhook_signature import sign, signature_matches

BODY = b'{"entity": "model_version", "action": "created", "data": {}}'


def test_our_signature_equals_mlflows() -> None:
    expected = _generate_hmac_signature("s3cret-value-long", "d-1", "1700000000", BODY.decode())
    assert sign("s3cret-value-long", "d-1", "1700000000", BODY) == expected


def test_signature_rejects_other_secret_body_or_id() -> None:
    header = sign("right-secret-123456", "d-1", "1700000000", BODY)
    assert signature_matches("right-secret-123456", "d-1", "1700000000", BODY, header)
    assert not signature_matches("wrong-secret-123456", "d-1", "1700000000", BODY, header)
    assert not signature_matches("right-secret-123456", "d-1", "1700000000", BODY + b" ", header)
    assert not signature_matches("right-secret-123456", "d-2", "1700000000", BODY, header)
    assert not signature_matches("right-secret-123456", "d-1", "1700000001", BODY, header)


def test_transient_errors_retry_with_backoff_until_cap() -> None:
    first = retry_decision(RegistryUnavailable("down"), attempt=1, max_attempts=3, backoff_s=10)
    second = retry_decision(RegistryUnavailable("down"), attempt=2, max_attempts=3, backoff_s=10)
    assert first.retry and first.delay_s == 10
    assert second.retry and second.delay_s == 20
    assert not retry_decision(RegistryUnavailable("down"), 3, 3, 10).retry
    db_lost = OperationalError("SELECT 1", {}, Exception("connection lost"))
    assert retry_decision(db_lost, 1, 3, 1).retry


def test_permanent_and_unknown_errors_do_not_retry() -> None:
    assert not retry_decision(RegistryNotFound("gone"), 1, 3, 10).retry
    assert not retry_decision(ValueError("bug"), 1, 3, 10).retry
