"""One root exception; the API maps these to HTTP responses in one place (service/app.py)."""

from __future__ import annotations


class GatekeeperError(Exception):
    """Root of every error the gatekeeper raises on purpose."""

    http_status = 500


class ConfigError(GatekeeperError):
    """Settings or policy that cannot work; raised at start-up, before serving, or later if
    the policy file is broken while running (503: the request was fine, we are not)."""

    http_status = 503


class NotFound(GatekeeperError):
    http_status = 404


class Unauthorized(GatekeeperError):
    http_status = 401


class Forbidden(GatekeeperError):
    http_status = 403


class BadRequest(GatekeeperError):
    http_status = 400


class PayloadTooLarge(GatekeeperError):
    http_status = 413


class RegistryUnavailable(GatekeeperError):
    """MLflow could not be reached or answered 5xx: transient, the run is retried."""

    http_status = 503


class RegistryNotFound(GatekeeperError):
    """MLflow says the model version does not exist: permanent, the run errors."""

    http_status = 404


class RegistryRejected(GatekeeperError):
    """MLflow answered 4xx (other than not-found): permanent, retrying will not help."""

    http_status = 502


class BoundExceeded(GatekeeperError):
    """Input over a bound of the policy (artifact size, dataset rows or bytes) or the run's
    deadline: permanent, the run is `error` with the bound named."""

    http_status = 422


class DatabaseUnavailable(GatekeeperError):
    """The gatekeeper's own database could not be reached: transient, answered 503."""

    http_status = 503


class LocalDiskError(GatekeeperError):
    """The worker's own disk failed (full, read-only): permanent for this run, and named for
    what it is, never retried as an MLflow outage."""

    http_status = 507


def disk_error_kind(exc: BaseException) -> str | None:
    """ "disk full" / "read-only" when `exc` (or what caused it) is that OSError, else None."""
    import errno

    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 10:
        if isinstance(current, OSError):
            if current.errno in (errno.ENOSPC, errno.EDQUOT):
                return "disk full"
            if current.errno == errno.EROFS:
                return "read-only"
        # MLflow's artifact download gathers the per-file errors into one message, unchained
        text = str(current)
        if "[Errno 28]" in text or "No space left on device" in text:
            return "disk full"
        if "[Errno 30]" in text or "Read-only file system" in text:
            return "read-only"
        current = current.__cause__ or current.__context__
        seen += 1
    return None


class LeaseLost(GatekeeperError):
    """Another worker owns the run now (our lease expired); stop without writing."""
