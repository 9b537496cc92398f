"""Real replica processes of the replicated key-value store, for tests and benchmarks.

``KvReplicas(directory, n)`` is a local cluster (``feitian.deploy.cluster``) of n ``kv`` replicas on fixed
127.0.0.1 ports, without security, so tests and benchmarks measure consensus alone. Replicas can be killed,
frozen, resumed and restarted on the same address and data; :meth:`stop` stops every process it started, by pid.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence

import msgspec

from feitian.deploy import LocalCluster, NodeSpec, replica_specs
from feitian.runtime.procs import ProcessRef, signal_process, stop_processes


class ReplicaProcesses:
    """N real replica processes of one replicated role in a local cluster, on fixed 127.0.0.1 ports: kill,
    freeze, resume, restart on the same address and data, and stop everything ever started, by pid."""

    role = ""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        specs: list[NodeSpec],
        *,
        secure: bool = False,
        extra: Sequence[NodeSpec] = (),
    ) -> None:
        self.cluster = LocalCluster(str(directory))
        self.secure = secure
        self.specs = specs
        self.extra = list(extra)
        self.ids = list(range(1, len(specs) + 1))
        self.addresses = {i: spec.listen[0] for i, spec in zip(self.ids, self.specs, strict=True)}
        self._refs: list[ProcessRef] = []

    @property
    def address_list(self) -> list[str]:
        return list(self.addresses.values())

    def name(self, i: int) -> str:
        return f"{self.role}-{i}"

    def route_peers(self, routes: dict[int, dict[int, str]]) -> None:
        """Before :meth:`start_all`: replica ``i`` sends consensus traffic for peer ``j`` to ``routes[i][j]``
        (a fault-injecting proxy, ``feitian.testing.faultproxy``) instead of to ``j`` itself."""
        self.specs = [
            msgspec.structs.replace(
                spec,
                role_options={**spec.role_options, "peer_addresses": {str(j): a for j, a in routes.get(i, {}).items()}},
            )
            for i, spec in zip(self.ids, self.specs, strict=True)
        ]

    def start_all(self) -> None:
        state = self.cluster.up([*self.specs, *self.extra], secure=self.secure)
        self._refs.extend(p.ref for p in state.processes)

    def data_dir(self, i: int) -> str:
        return os.path.join(self.cluster.dir, "data", self.name(i))

    def ref(self, i: int) -> ProcessRef:
        return self.cluster.load().find(self.name(i)).ref

    def log_path(self, i: int) -> str:
        return self.cluster.load().find(self.name(i)).log

    def start(self, i: int) -> ProcessRef:
        """Start replica ``i`` again (after :meth:`kill`), on the same address and data."""
        ref = self.cluster.restart(self.name(i)).ref
        self._refs.append(ref)
        return ref

    def kill(self, i: int) -> None:
        ref = self.ref(i)
        signal_process(ref, signal.SIGKILL)
        stop_processes([ref], grace_s=5)

    def freeze(self, i: int) -> None:
        signal_process(self.ref(i), signal.SIGSTOP)

    def resume(self, i: int) -> None:
        signal_process(self.ref(i), signal.SIGCONT)

    def track(self, ref: ProcessRef) -> None:
        """Stop this process too in :meth:`stop` (e.g. a client process a test started)."""
        self._refs.append(ref)

    def stop(self) -> list[ProcessRef]:
        """Stop every process ever started here; returns any that would not stop."""
        for ref in self._refs:
            signal_process(ref, signal.SIGCONT)
        return stop_processes(self._refs, grace_s=10)


class KvReplicas(ReplicaProcesses):
    role = "kv"

    def __init__(
        self,
        directory: str | os.PathLike[str],
        n: int = 3,
        *,
        tick_ms: int = 50,
        election_ticks: int = 20,
        snapshot_every_entries: int = 20_000,
        keep_entries_after_snapshot: int = 5_000,
        segment_size_bytes: int = 64 << 20,
        sync_inline: bool = True,
    ) -> None:
        options = {
            "leader_sync_inline": sync_inline,
            "follower_sync_inline": sync_inline,
            "tick_ms": tick_ms,
            "election_ticks": election_ticks,
            "snapshot_every_entries": snapshot_every_entries,
            "keep_entries_after_snapshot": keep_entries_after_snapshot,
            "segment_size_bytes": segment_size_bytes,
        }
        super().__init__(directory, replica_specs("kv", n, options))
