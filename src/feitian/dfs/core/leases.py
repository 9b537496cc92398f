"""Write leases: one writer per file, its expiry a value written by the leader, never read from a clock here.

A lease is *live* while ``now < expires_ns``. The holder may renew it while it is still the file's lease (even
after it expired, as long as nobody took the file over). Another holder may take the file over only once
``now >= expires_ns + takeover_grace_ns``. Every write-side command names its lease id; a command with a lease
id that is not the file's current one comes from a stale writer and is refused.
"""

from __future__ import annotations

import datetime

from feitian.base.units import SECOND_NS
from feitian.dfs.core.config import NamespaceConfig
from feitian.dfs.core.records import FileNode, Lease, LeaseMode
from feitian.errors import ConflictError, ConflictReason, InvalidArgumentError

__all__ = ["check_expiry", "check_lease", "describe_time", "lease_is_live", "takeover_blocked"]


def describe_time(at_ns: int, now_ns: int) -> str:
    """``2026-12-07 10:23:21 UTC (in 53 s)`` or ``(12 s ago)``: a leader time as people read it, with how far it
    is from ``now_ns`` (both wall-clock nanoseconds, passed in: this reads no clock)."""
    when = datetime.datetime.fromtimestamp(at_ns // SECOND_NS, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    delta_s = (at_ns - now_ns) / SECOND_NS
    if abs(delta_s) < 0.5:
        return f"{when} (now)"
    size = abs(delta_s)
    if size < 120:
        span = f"{size:.0f} s"
    elif size < 120 * 60:
        span = f"{size / 60:.0f} min"
    elif size < 48 * 3600:
        span = f"{size / 3600:.0f} h"
    else:
        span = f"{size / 86400:.0f} days"
    return f"{when} (in {span})" if delta_s > 0 else f"{when} ({span} ago)"


def lease_is_live(lease: Lease | None, now_ns: int) -> bool:
    return lease is not None and now_ns < lease.expires_ns


def takeover_blocked(lease: Lease | None, now_ns: int, config: NamespaceConfig) -> bool:
    """True while another holder may not take the file over (the lease is live or within its grace)."""
    return lease is not None and now_ns < lease.expires_ns + config.takeover_grace_ns


def random_lease_live(file: FileNode, now_ns: int) -> bool:
    return lease_is_live(file.lease, now_ns) and file.lease is not None and file.lease.mode is LeaseMode.RANDOM


def check_expiry(op: str, path: str, now_ns: int, expires_ns: int, config: NamespaceConfig) -> None:
    if expires_ns <= now_ns:
        raise InvalidArgumentError(
            f"{op} {path}: lease expiry {describe_time(expires_ns, now_ns)} is not in the future"
        )
    if expires_ns - now_ns > config.max_lease_ttl_ns:
        raise InvalidArgumentError(
            f"{op} {path}: lease of {(expires_ns - now_ns) // 1_000_000} ms exceeds max_lease_ttl_ns "
            f"{config.max_lease_ttl_ns // 1_000_000} ms",
            limit=config.max_lease_ttl_ns,
        )


def check_lease(
    op: str, path: str, file: FileNode, lease_id: int, now_ns: int, *, allow_expired: bool = False
) -> Lease:
    """The file's lease if ``lease_id`` is it (and it is live, unless ``allow_expired``); ConflictError if not."""
    lease = file.lease
    if lease is None:
        raise ConflictError(
            f"{op} {path}: file is not open for writing (lease {lease_id} was released or never granted)",
            path=path,
            lease_id=lease_id,
            reason=ConflictReason.NO_LEASE,
        )
    if lease.lease_id != lease_id:
        raise ConflictError(
            f"{op} {path}: lease {lease_id} is stale; the file is open for writing by {lease.holder!r} "
            f"(lease {lease.lease_id})",
            path=path,
            lease_id=lease_id,
            current_lease_id=lease.lease_id,
            holder=lease.holder,
            reason=ConflictReason.STALE_LEASE,
        )
    if not allow_expired and now_ns >= lease.expires_ns:
        raise ConflictError(
            f"{op} {path}: lease {lease_id} expired at {describe_time(lease.expires_ns, now_ns)}",
            hint="renew the lease before writing",
            path=path,
            lease_id=lease_id,
            reason=ConflictReason.LEASE_EXPIRED,
        )
    return lease
