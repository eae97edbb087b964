"""Prometheus metrics at /metrics: turns by outcome, turn latency and memchat's own overhead
(the turn's time minus the provider's) as histograms, provider errors by kind. With several
workers, each writes its figures to PROMETHEUS_MULTIPROC_DIR (`memchat serve` sets one up) and
/metrics adds them up, whichever worker answers."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from memchat.config import metrics_directory

TURNS = Counter("memchat_turns", "Turns taken, by outcome (completed, partial, failed, busy, refused).", ["outcome"])
TURN_SECONDS = Histogram(
    "memchat_turn_seconds",
    "Wall time of a turn, the model call included.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
OVERHEAD_SECONDS = Histogram(
    "memchat_overhead_seconds",
    "memchat's own time in a turn: the turn's wall time minus the provider call's.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
PROVIDER_ERRORS = Counter("memchat_provider_errors", "Provider failures, by kind.", ["kind"])


def exposition() -> tuple[bytes, str]:
    """The metrics text and its content type."""
    if metrics_directory():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
