"""The authority's durable state: registered principals, the policy and the revocation list.

Three files in the authority's data directory, each replaced atomically (temp file, fsync, rename, fsync of
the directory: :func:`feitian.runtime.files.atomic_write`), so after a crash each holds either its old or its
new contents:

* ``principals.json`` — every registered principal: name, id, kind, public key;
* ``policy.bin`` — :meth:`feitian.security.Policy.to_bytes`;
* ``revocations.bin`` — :meth:`feitian.security.RevocationList.to_bytes`.

A change is written before it is acknowledged. ``feitian cluster up`` seeds these files before it starts the
authority; the running authority is their only writer.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import msgspec

from feitian.errors import AlreadyExistsError, DataCorruptionError, NotFoundError
from feitian.runtime.files import atomic_write, ensure_dir, read_bytes
from feitian.security import Policy, PrincipalKind, RevocationList, principal_id_for
from feitian.security.core.identity import validate_name

__all__ = ["AuthorityStore", "PrincipalRecord"]

PRINCIPALS_FILE = "principals.json"
POLICY_FILE = "policy.bin"
REVOCATIONS_FILE = "revocations.bin"


class PrincipalRecord(msgspec.Struct, frozen=True):
    name: str
    id: str
    kind: str
    public_key: bytes
    added_at: float = 0.0


class _PrincipalsFile(msgspec.Struct):
    principals: list[PrincipalRecord] = []


class AuthorityStore:
    """Load, change and persist the authority's state (one writer: the authority process)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = ensure_dir(directory)
        self.principals: dict[str, PrincipalRecord] = {}  # by name
        self.policy = Policy()
        self.revocations = RevocationList()
        self._load()

    def _path(self, name: str) -> Path:
        return self.dir / name

    def _load(self) -> None:
        path = self._path(PRINCIPALS_FILE)
        if path.exists():
            try:
                wire = msgspec.json.decode(read_bytes(path), type=_PrincipalsFile)
            except msgspec.MsgspecError as exc:
                raise DataCorruptionError(f"authority principals {path}: cannot decode ({exc})") from None
            self.principals = {p.name: p for p in wire.principals}
        if self._path(POLICY_FILE).exists():
            self.policy = Policy.from_bytes(read_bytes(self._path(POLICY_FILE)))
        if self._path(REVOCATIONS_FILE).exists():
            self.revocations = RevocationList.from_bytes(read_bytes(self._path(REVOCATIONS_FILE)))

    # -- principals --------------------------------------------------------------------------------------------

    def add_principal(self, name: str, public_key: bytes, kind: PrincipalKind) -> PrincipalRecord:
        """Register ``name``; the same name and key again is a no-op, another key under the name a conflict."""
        validate_name(name)
        pid = principal_id_for(public_key)
        old = self.principals.get(name)
        if old is not None:
            if old.public_key != public_key or old.kind != kind.value:
                raise AlreadyExistsError(
                    f"add principal {name}: already registered with another key or kind ({old.kind} {old.id})",
                    hint="pick another name",
                )
            return old
        for other in self.principals.values():
            if other.id == pid:
                raise AlreadyExistsError(f"add principal {name}: that key is already registered as {other.name}")
        record = PrincipalRecord(name, pid, kind.value, public_key, round(time.time(), 3))
        self.principals[name] = record
        self.save_principals()
        return record

    def replace_principal(self, name: str, public_key: bytes, kind: PrincipalKind) -> PrincipalRecord:
        """Register ``name`` with this key, replacing an earlier registration of the name (an application's
        principal whose retirement was lost: the name is reused with a fresh key)."""
        old = self.principals.pop(name, None)
        try:
            return self.add_principal(name, public_key, kind)
        except Exception:
            if old is not None:
                self.principals[name] = old
            raise

    def remove_principal(self, name: str) -> PrincipalRecord | None:
        record = self.principals.pop(name, None)
        if record is not None:
            self.save_principals()
        return record

    def principal(self, name_or_id: str) -> PrincipalRecord:
        record = self.principals.get(name_or_id)
        if record is not None:
            return record
        for candidate in self.principals.values():
            if candidate.id == name_or_id:
                return candidate
        raise NotFoundError(
            f"no principal {name_or_id!r} is registered with the authority",
            hint="register it with `feitian user add NAME --pubkey FILE`",
        )

    def name_of(self, principal_id: str) -> str:
        for record in self.principals.values():
            if record.id == principal_id:
                return record.name
        return principal_id

    # -- persistence -------------------------------------------------------------------------------------------

    def save_principals(self) -> None:
        wire = _PrincipalsFile(sorted(self.principals.values(), key=lambda p: p.name))
        atomic_write(self._path(PRINCIPALS_FILE), msgspec.json.format(msgspec.json.encode(wire)))

    def save_policy(self) -> None:
        atomic_write(self._path(POLICY_FILE), self.policy.to_bytes())

    def set_revocations(self, revocations: RevocationList) -> None:
        atomic_write(self._path(REVOCATIONS_FILE), revocations.to_bytes())
        self.revocations = revocations
