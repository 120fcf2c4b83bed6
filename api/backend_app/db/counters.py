"""What the router decided since start, per kind of decision."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RoutingCounters:
    """Routing decisions since start; read by /health/database, ready for a metrics exporter."""

    replica: int = 0  # reads placed on a replica
    primary_because_lag: int = 0  # the client's last write had not reached a replica yet
    primary_because_down: int = 0  # no replica in rotation
    primary_no_replica: int = 0  # no replica configured
    failovers: int = 0  # a statement moved to another node after its connection failed
    replica_connect_failures: int = 0  # a request found a replica unreachable (it was banned)
    primary_reads_rejected: int = 0  # 503: replicas out and the primary at its fallback limit
    stale_because_primary_down: int = 0  # read-your-writes could not be kept: primary unreachable
    positions_ignored: int = 0  # a client's position far past anything the primary wrote (forged)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)
