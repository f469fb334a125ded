"""Prometheus metrics (process-wide, as prometheus-client intends)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# outcome: what became of an accepted delivery (queued, already_queued, duplicate, recorded,
# ignored, not_watched; reason "") or "rejected", with the reason it was refused
# (service/api/webhooks.py: RejectReason): bad_signature is the one to alert on.
WEBHOOK_DELIVERIES = Counter(
    "gatekeeper_webhook_deliveries_total",
    "Webhook deliveries by outcome; refused ones by reason",
    ["outcome", "reason"],
)
RUNS_ENQUEUED = Counter("gatekeeper_runs_enqueued_total", "Runs created, by trigger", ["trigger"])
RUNS_FINISHED = Counter("gatekeeper_runs_finished_total", "Runs finished, by status", ["status"])
RUN_DURATION = Histogram(
    "gatekeeper_run_duration_seconds",
    "Claim to recorded decision",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
)
# An operator alerts on this not moving: intake then rests on webhooks alone.
POLL_CYCLES = Counter(
    "gatekeeper_poll_cycles_total", "Reconciliation poller cycles, by outcome", ["outcome"]
)
ALIAS_MOVES = Counter("gatekeeper_alias_moves_total", "Times the gatekeeper moved the alias")
TAMPERING = Counter(
    "gatekeeper_tampering_total",
    "Registry changes that did not match the record and were put back, by kind",
    ["kind"],
)
PUBLISH_STUCK = Gauge(
    "gatekeeper_publish_stuck_runs",
    "Runs recorded longer than GATEKEEPER_PUBLISH_STUCK_AFTER_S ago and not yet in MLflow",
)
