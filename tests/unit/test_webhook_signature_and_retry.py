"""MLflow's HMAC scheme, checked against MLflow's own signer; retry policy as data."""

from __future__ import annotations

import random

from mlflow.webhooks.delivery import _generate_hmac_signature
from sqlalchemy.exc import OperationalError

from service.api.webhook_signature import sign, signature_matches
from service.errors import RegistryNotFound, RegistryUnavailable
from service.runs.retry import retry_decision

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


def _decide(exc: BaseException, failures: int = 0, for_s: float = 0.0):  # type: ignore[no-untyped-def]
    return retry_decision(
        exc,
        transient_failures=failures,
        transient_for_s=for_s,
        horizon_s=900,
        backoff_s=10,
        rng=random.Random(0),
    )


def test_transient_errors_retry_with_capped_jittered_backoff_for_the_horizon() -> None:
    first, second, late = (
        _decide(RegistryUnavailable("down")),
        _decide(RegistryUnavailable("down"), failures=1),
        _decide(RegistryUnavailable("down"), failures=12),
    )
    assert first.retry and first.transient and 5 <= first.delay_s <= 10
    assert second.retry and 10 <= second.delay_s <= 20
    assert late.retry and late.delay_s <= 60  # capped
    db_lost = OperationalError("SELECT 1", {}, Exception("connection lost"))
    assert _decide(db_lost).retry
    gave_up = _decide(RegistryUnavailable("down"), failures=30, for_s=901)
    assert not gave_up.retry and gave_up.transient  # the poller re-queues it later


def test_permanent_and_unknown_errors_do_not_retry() -> None:
    assert not _decide(RegistryNotFound("gone")).retry
    assert not _decide(ValueError("bug")).retry
    assert not _decide(ValueError("bug")).transient
