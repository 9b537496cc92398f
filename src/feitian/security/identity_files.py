"""An identity on disk: private key, certificate, cluster CA, and the capabilities its holder keeps.

Files of an identity ``NAME`` (next to each other)::

    NAME.key    private key, mode 0600 (feitian key create)        refused when group/other can read it
    NAME.pub    public key (give it to the cluster admin: feitian user add NAME --pubkey NAME.pub)
    NAME.crt    TLS certificate issued by the cluster authority (written by feitian user add / cluster up)
    NAME.caps   capability chains held by NAME, one base64 chain per line (feitian cap request), mode 0600

The cluster CA certificate (``ca.pem``) comes from the cluster directory's ``security/``.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path

from feitian.errors import ConfigError, NotFoundError
from feitian.runtime.files import atomic_write
from feitian.security.keys import load_private_key
from feitian.security.tls import TlsIdentity

__all__ = ["IdentityFiles", "capabilities_text", "read_capabilities", "write_capabilities"]


@dataclass(frozen=True, slots=True)
class IdentityFiles:
    key: Path
    cert: Path
    ca: Path
    capabilities: Path

    @classmethod
    def beside(cls, key: str | os.PathLike[str], ca: str | os.PathLike[str]) -> IdentityFiles:
        """The identity whose private key is ``key`` (``X.key``: ``X.crt`` and ``X.caps`` next to it)."""
        path = Path(key)
        stem = path.with_suffix("") if path.suffix == ".key" else path
        return cls(
            key=stem.with_name(stem.name + ".key"),
            cert=stem.with_name(stem.name + ".crt"),
            ca=Path(ca),
            capabilities=stem.with_name(stem.name + ".caps"),
        )

    @property
    def name(self) -> str:
        return self.key.stem

    def load_tls(self) -> TlsIdentity:
        """Key (checked first: a key others can read is refused), certificate and CA; NotFoundError naming the
        missing file."""
        hints = {
            "private key": "create one with `feitian key create NAME`",
            "certificate": "the cluster admin issues it: `feitian user add NAME --pubkey NAME.pub`",
            "cluster CA certificate": "it is in the cluster directory: security/ca.pem",
        }
        for path, what in ((self.key, "private key"), (self.cert, "certificate"), (self.ca, "cluster CA certificate")):
            if what == "certificate":
                load_private_key(self.key)  # refuses loose permissions before anything else is said
            if not path.exists():
                raise NotFoundError(f"identity {self.name}: no {what} at {path}", hint=hints[what])
        return TlsIdentity.load(self.key, self.cert, self.ca)

    def read_capabilities(self) -> list[bytes]:
        return read_capabilities(self.capabilities)

    def write_capabilities(self, chains: list[bytes]) -> None:
        write_capabilities(self.capabilities, chains)


def read_capabilities(path: str | os.PathLike[str]) -> list[bytes]:
    """The encoded chains in a capabilities file (none if it does not exist)."""
    source = Path(path)
    try:
        text = source.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return []
    chains = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            chains.append(base64.b64decode(line, validate=True))
        except (binascii.Error, ValueError):
            raise ConfigError(f"capabilities file {source}", problems=[f"line {number} is not base64"]) from None
    return chains


def capabilities_text(chains: list[bytes]) -> bytes:
    """The content of a capabilities file holding ``chains``."""
    lines = ["# feitian capabilities: one base64 CapabilityChain per line (`feitian cap show` decodes them)"]
    lines += [base64.b64encode(chain).decode("ascii") for chain in chains]
    return ("\n".join(lines) + "\n").encode("ascii")


def write_capabilities(path: str | os.PathLike[str], chains: list[bytes]) -> None:
    """Replace a capabilities file atomically (mode 0600)."""
    atomic_write(path, capabilities_text(chains))
