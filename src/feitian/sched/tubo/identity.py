"""Applications' identities on a machine: fetched from FuxiMaster once per application, written into each of its
processes' working directories (ZK-3; docs/sched.md, "Security").

A process of an application submitted with credentials finds in ``$FEITIAN_WORK_DIR/identity/``::

    app.<id>.key    its application's private key (0600)
    app.<id>.crt    the certificate the authority issued for it
    app.<id>.caps   the capabilities its submitter delegated to it
    ca.pem          the cluster CA

and ``FEITIAN_IDENTITY`` / ``FEITIAN_CA`` naming them (:class:`feitian.sched.AppEnvironment` reads them).
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from pathlib import Path

from feitian.sched.messages import AppIdentity
from feitian.security import KeyPair, capabilities_text

__all__ = ["IDENTITY_DIR", "MAX_CACHED", "AppIdentities", "identity_env", "identity_files"]

IDENTITY_DIR = "identity"
MAX_CACHED = 1_000  # applications whose identity a Tubo keeps in memory (least recently used go first)


def identity_files(identity: AppIdentity) -> dict[str, bytes]:
    """The files (relative to a working directory) a process of the application gets."""
    key = KeyPair.from_seed(identity.seed, identity.principal)
    stem = f"{IDENTITY_DIR}/{identity.principal}"
    return {
        f"{stem}.key": key.private_pem(),
        f"{stem}.crt": identity.certificate_pem,
        f"{stem}.caps": capabilities_text(identity.chains),
        f"{IDENTITY_DIR}/ca.pem": identity.ca_pem,
    }


def identity_env(identity: AppIdentity, work_dir: Path) -> dict[str, str]:
    base = work_dir / IDENTITY_DIR
    return {"FEITIAN_IDENTITY": str(base / f"{identity.principal}.key"), "FEITIAN_CA": str(base / "ca.pem")}


class AppIdentities:
    """Identities by application, asked of FuxiMaster (``fetch``) the first time a process of it starts here."""

    def __init__(self, fetch: Callable[[str], Awaitable[AppIdentity | None]]) -> None:
        self._fetch = fetch
        self._known: collections.OrderedDict[str, AppIdentity | None] = collections.OrderedDict()

    async def get(self, app_id: str) -> AppIdentity | None:
        if app_id in self._known:
            self._known.move_to_end(app_id)
            return self._known[app_id]
        identity = await self._fetch(app_id)
        self._known[app_id] = identity
        while len(self._known) > MAX_CACHED:
            self._known.popitem(last=False)
        return identity
