"""Reading a /metrics answer the way Prometheus does (prometheus-client's own parser)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from redis import Redis

from backend_app.metrics.shared import read_families


def samples(exposition: str) -> list[Sample]:
    return [sample for family in text_string_to_metric_families(exposition) for sample in family.samples]


def values(exposition: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples called `name`, by their labels (sorted (name, value) pairs)."""
    return {tuple(sorted(s.labels.items())): s.value for s in samples(exposition) if s.name == name}


def value(exposition: str, name: str, **labels: str) -> float:
    """The one sample called `name` with exactly these labels; 0 when there is none yet."""
    return values(exposition, name).get(tuple(sorted(labels.items())), 0.0)


def shared_exposition(redis: Redis) -> str:
    """The figures workers and the relay keep in Redis, as a scrape shows them."""

    class Shared:
        def collect(self) -> list[Metric]:
            return read_families(redis)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Shared())
    return generate_latest(registry).decode()
