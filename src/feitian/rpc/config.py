"""Configuration of Kuafu clients and servers. Every bound is named here; docs/rpc.md describes each key."""

from __future__ import annotations

import msgspec

from feitian.errors import ConfigError
from feitian.rpc.core.frame import FrameLimits


class LaneConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A lane: its own handler concurrency and its own bounded queue (KUAFU-7).

    When ``max_queue`` requests are waiting, further requests for the lane are refused at once with
    OverloadedError (they are never executed), so a flood in one lane cannot grow memory or delay other lanes.
    """

    max_concurrency: int = 256
    max_queue: int = 10_000
    idle_workers: int = 8  # workers kept parked when the lane is idle

    def problems(self, name: str) -> list[str]:
        out = []
        if self.max_concurrency < 1:
            out.append(f"lanes.{name}.max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.max_queue < 0:
            out.append(f"lanes.{name}.max_queue must be >= 0, got {self.max_queue}")
        if self.idle_workers < 0:
            out.append(f"lanes.{name}.idle_workers must be >= 0, got {self.idle_workers}")
        return out


def _default_lanes() -> dict[str, LaneConfig]:
    return {"default": LaneConfig()}


class ServerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str = "server"
    role: str = "server"
    lanes: dict[str, LaneConfig] = msgspec.field(default_factory=_default_lanes)
    default_lane: str = "default"
    # Requests received on one connection but not yet answered; above it the server stops reading from that
    # connection (TCP back-pressure) until it drops below half.
    max_pending_bytes_per_connection: int = 64 << 20
    max_connections: int = 10_000  # further connections are closed at once, with a logged reason
    handshake_timeout_s: float = 10.0
    shutdown_grace_s: float = 5.0
    write_buffer_high_bytes: int = 4 << 20
    limits: FrameLimits = msgspec.field(default_factory=FrameLimits)

    def validate(self) -> None:
        problems: list[str] = []
        if not self.lanes:
            problems.append("lanes must name at least one lane")
        if self.default_lane not in self.lanes:
            problems.append(f"default_lane {self.default_lane!r} is not one of lanes {sorted(self.lanes)}")
        for name, lane in self.lanes.items():
            problems.extend(lane.problems(name))
        if self.max_pending_bytes_per_connection < 1:
            problems.append("max_pending_bytes_per_connection must be >= 1")
        if self.max_connections < 1:
            problems.append("max_connections must be >= 1")
        if self.handshake_timeout_s <= 0:
            problems.append("handshake_timeout_s must be > 0")
        if self.shutdown_grace_s < 0:
            problems.append("shutdown_grace_s must be >= 0")
        try:
            self.limits.validate()
        except ConfigError as exc:
            problems.extend(exc.fields.get("problems", []))
        if problems:
            raise ConfigError(f"invalid server config {self.name!r}", problems=problems)


class ClientConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str = "client"
    # How long a call waits for a connection (retrying with jittered back-off) before UnavailableError.
    # 0 means a single attempt.
    connect_timeout_s: float = 5.0
    # Deadline of calls that give none (None: no deadline; a deadline inherited from a server handler still
    # applies).
    default_timeout_s: float | None = None
    # Request bytes (body + payload) sent on one connection and not yet answered. A call that would exceed it
    # waits for replies first (a single call larger than the bound is sent alone).
    max_inflight_bytes: int = 64 << 20
    # How many times an idempotent call is sent again after its connection broke before the reply.
    idempotent_retries: int = 2
    keepalive_interval_s: float = 10.0  # ping an idle connection this often
    keepalive_timeout_s: float = 30.0  # close a connection silent for this long (the peer is gone)
    backoff_base_s: float = 0.05
    backoff_max_s: float = 2.0
    proxy_path: str | None = None  # Unix socket of the per-machine Kuafu proxy (KUAFU-4); None = direct
    write_buffer_high_bytes: int = 4 << 20
    limits: FrameLimits = msgspec.field(default_factory=FrameLimits)

    def validate(self) -> None:
        problems: list[str] = []
        if self.connect_timeout_s < 0:
            problems.append("connect_timeout_s must be >= 0")
        if self.default_timeout_s is not None and self.default_timeout_s <= 0:
            problems.append("default_timeout_s must be > 0 or None")
        if self.max_inflight_bytes < 1:
            problems.append("max_inflight_bytes must be >= 1")
        if self.idempotent_retries < 0:
            problems.append("idempotent_retries must be >= 0")
        if self.keepalive_interval_s <= 0 or self.keepalive_timeout_s <= self.keepalive_interval_s:
            problems.append("need 0 < keepalive_interval_s < keepalive_timeout_s")
        if self.backoff_base_s <= 0 or self.backoff_max_s < self.backoff_base_s:
            problems.append("need 0 < backoff_base_s <= backoff_max_s")
        try:
            self.limits.validate()
        except ConfigError as exc:
            problems.extend(exc.fields.get("problems", []))
        if problems:
            raise ConfigError(f"invalid client config {self.name!r}", problems=problems)
