"""Retries as data: (exception, history) -> retry after N seconds, or give up as `error`.

Only named transient errors are retried: MLflow unreachable and the database unreachable.
They spend no attempt (attempts count failures of the run itself) and are retried with capped
exponential backoff and jitter for a horizon (default 15 minutes) from the first of them; past
it the run is `error` with kind "transient", which the poller re-queues when MLflow answers
again. A gate that fails is a result, never an exception, so it never reaches this function.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError

from service.errors import DatabaseUnavailable, RegistryUnavailable

TRANSIENT = (
    RegistryUnavailable,
    DatabaseUnavailable,
    DBAPIError,
    ConnectionError,
    TimeoutError,
)
MAX_DELAY_S = 60.0


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    delay_s: float = 0.0
    transient: bool = False  # a dependency failed, not the run: spends no attempt


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT)


def retry_decision(
    exc: BaseException,
    *,
    transient_failures: int,
    transient_for_s: float,
    horizon_s: float,
    backoff_s: float,
    max_delay_s: float = MAX_DELAY_S,
    rng: random.Random | None = None,
) -> RetryDecision:
    """`transient_failures` before this one, `transient_for_s` since the first of them."""
    if not is_transient(exc):
        return RetryDecision(retry=False)
    if transient_for_s >= horizon_s:
        return RetryDecision(retry=False, transient=True)
    capped = min(max_delay_s, backoff_s * 2 ** min(transient_failures, 30))
    jitter = (rng or random).uniform(0.5, 1.0)  # spread the herd after an outage
    return RetryDecision(retry=True, delay_s=capped * jitter, transient=True)
