"""What a process started by a Tubo knows of its place in the cluster, from its environment.

Tubo sets, for every process it starts (docs/sched.md, "What a process gets")::

    FEITIAN_APP_ID, FEITIAN_PROC_ID, FEITIAN_WORK_DIR, FEITIAN_MACHINE, FEITIAN_TUBO_SOCKET, ...
    FEITIAN_COORD=tcp://...,tcp://...     Nuwa's replicas (when the Tubo knows them)
    FEITIAN_DFS=tcp://...,tcp://...       Pangu's masters (when the Tubo knows them)
    FEITIAN_IDENTITY=.../identity/app.<id>.key   the application's identity (secured clusters, with --grant)
    FEITIAN_CA=.../identity/ca.pem

:class:`AppEnvironment` turns that into clients: ``env = AppEnvironment.from_env(); rpc = env.rpc_client();
dfs = env.dfs(rpc)`` — in a secured cluster the calls go out under the application's own principal with the
capabilities its submitter delegated to it (:mod:`feitian.sched.credentials`), in an insecure one in plain.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from feitian.coord import CoordClient
from feitian.dfs import DfsClient, DfsClientConfig
from feitian.errors import InvalidArgumentError
from feitian.rpc import Client, ClientConfig
from feitian.security import CapabilitySet, ClientIdentity, IdentityFiles, TlsIdentity

__all__ = ["AppEnvironment"]


def _addresses(value: str) -> tuple[str, ...]:
    return tuple(a for a in (part.strip() for part in value.split(",")) if a)


@dataclass(frozen=True, slots=True)
class AppEnvironment:
    app_id: str
    proc_id: str
    work_dir: str
    machine: str
    coord: tuple[str, ...] = ()
    dfs_masters: tuple[str, ...] = ()
    identity: str = ""  # the application's key file ("" without an identity)
    ca: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AppEnvironment:
        env = os.environ if environ is None else environ
        if not env.get("FEITIAN_APP_ID"):
            raise InvalidArgumentError(
                "FEITIAN_APP_ID is not set: this process was not started by a Tubo",
                hint="run it with `feitian sched submit` (or as a worker of an application)",
            )
        return cls(
            app_id=env["FEITIAN_APP_ID"],
            proc_id=env.get("FEITIAN_PROC_ID", ""),
            work_dir=env.get("FEITIAN_WORK_DIR", ""),
            machine=env.get("FEITIAN_MACHINE", ""),
            coord=_addresses(env.get("FEITIAN_COORD", "")),
            dfs_masters=_addresses(env.get("FEITIAN_DFS", "")),
            identity=env.get("FEITIAN_IDENTITY", ""),
            ca=env.get("FEITIAN_CA", ""),
        )

    @property
    def secured(self) -> bool:
        return bool(self.identity)

    def _files(self) -> IdentityFiles:
        return IdentityFiles.beside(self.identity, self.ca)

    def tls(self) -> TlsIdentity | None:
        """The application's TLS identity (None without one: an insecure cluster, or no --grant)."""
        return self._files().load_tls() if self.identity else None

    def rpc_client(self, name: str = "feitian-app", *, connect_timeout_s: float = 2.0) -> Client:
        """A Kuafu client calling as the application (its identity and capabilities when it has them)."""
        config = ClientConfig(name=name, connect_timeout_s=connect_timeout_s)
        tls = self.tls()
        if tls is None:
            return Client(config)
        return Client(config, tls=ClientIdentity(tls), credentials=CapabilitySet(self._files().read_capabilities()))

    def dfs(self, rpc: Client, config: DfsClientConfig | None = None) -> DfsClient:
        if not self.dfs_masters:
            raise InvalidArgumentError(
                "FEITIAN_DFS is not set: the Tubo that started this process knows no Pangu masters",
                hint="give the tubo role's `dfs` key (docs/config.md)",
            )
        return DfsClient(rpc, list(self.dfs_masters), config)

    def coord_client(self, rpc: Client, *, timeout_s: float = 30.0) -> CoordClient:
        if not self.coord:
            raise InvalidArgumentError(
                "FEITIAN_COORD is not set: the Tubo that started this process knows no Nuwa replicas",
                hint="give the tubo role's `coord` key (docs/config.md)",
            )
        return CoordClient(rpc, list(self.coord), timeout_s=timeout_s)
