"""Retries as data: (exception, attempt) -> retry after N seconds, or give up as `error`.

Only named transient errors are retried: MLflow unreachable and the database connection lost.
A gate that fails is a result, never an exception, so it never reaches this function.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import OperationalError

from service.errors import RegistryUnavailable

TRANSIENT = (RegistryUnavailable, OperationalError, ConnectionError, TimeoutError)


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    delay_s: float = 0.0


def retry_decision(
    exc: BaseException, attempt: int, max_attempts: int, backoff_s: float
) -> RetryDecision:
    if isinstance(exc, TRANSIENT) and attempt < max_attempts:
        return RetryDecision(retry=True, delay_s=backoff_s * 2 ** (attempt - 1))
    return RetryDecision(retry=False)
