"""A node's security: its identity, the guard on its server, its client credentials, its agent (ZK-1..4).

Built from the ``[security]`` section of a node config (docs/config.md)::

    [security]
    key = "/c/security/identities/echo-1.key"      # mode 0600, refused otherwise
    cert = "/c/security/identities/echo-1.crt"     # issued by the cluster authority
    ca = "/c/security/ca.pem"                       # the cluster CA (its key is the authority key)
    capabilities = "/c/security/identities/echo-1.caps"
    authority = "tcp://127.0.0.1:40001"             # "" on the authority node itself
    revocation_refresh_s = 10.0
    revocation_max_staleness_s = 30.0

A node without ``[security]`` serves plain, unauthenticated Kuafu (and says so in its log).
"""

from __future__ import annotations

import logging
import time

import msgspec

from feitian.base.clock import MonotonicClock
from feitian.errors import ConfigError
from feitian.rpc import Client, ClientConfig
from feitian.security import Guard, ReplayCache, RevocationView, TlsIdentity
from feitian.security.authority.agent import SecurityAgent
from feitian.security.ca import authority_key_of
from feitian.security.identity_files import read_capabilities
from feitian.security.kuafu import CapabilitySet, ClientIdentity, ServerGuard

__all__ = ["NodeSecurity", "SecuritySection"]


class SecuritySection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    key: str
    cert: str
    ca: str
    capabilities: str = ""
    authority: str = ""
    audiences: list[str] = []
    revocation_refresh_s: float = 10.0
    revocation_max_staleness_s: float = 30.0

    def validate(self) -> None:
        problems = []
        if self.revocation_refresh_s <= 0:
            problems.append("revocation_refresh_s must be > 0")
        if self.revocation_max_staleness_s <= self.revocation_refresh_s:
            problems.append("revocation_max_staleness_s must be larger than revocation_refresh_s")
        if problems:
            raise ConfigError("invalid [security] section", problems=problems)


class SystemClock(MonotonicClock):
    """The real clock, read by builtins directly (the guard reads it on every call)."""

    wall_ns = staticmethod(time.time_ns)
    monotonic_ns = staticmethod(time.monotonic_ns)


class NodeSecurity:
    """Everything a guarded node holds. ``agent`` is attached once the node's client exists."""

    def __init__(self, section: SecuritySection, node_name: str) -> None:
        section.validate()
        self.section = section
        self.identity = TlsIdentity.load(section.key, section.cert, section.ca)
        self.principal = self.identity.principal
        self.clock = SystemClock()
        self.view = RevocationView(max_staleness_ns=int(section.revocation_max_staleness_s * 1e9))
        self.guard = Guard(
            authority_key=authority_key_of(self.identity.ca_pem),
            audiences={self.principal.id, node_name, *section.audiences},
            revocations=self.view,
            replay_cache=ReplayCache(started_at_ns=self.clock.wall_ns()),
            clock=self.clock,
            logger=logging.getLogger("feitian.security.guard"),
        )
        self.server_guard = ServerGuard(self.guard, self.identity)
        chains = read_capabilities(section.capabilities) if section.capabilities else []
        self.credentials = CapabilitySet(chains, clock=self.clock)
        self.client_tls = ClientIdentity(self.identity)
        self.agent: SecurityAgent | None = None

    def client(self, name: str) -> Client:
        """A client that calls other services as this node (mutual TLS, this node's capabilities)."""
        return Client(ClientConfig(name=name), tls=self.client_tls, credentials=self.credentials)

    def make_agent(self, client: Client) -> SecurityAgent:
        self.agent = SecurityAgent(
            client=client,
            credentials=self.credentials,
            view=self.view,
            authority=self.section.authority,
            clock=self.clock,
            refresh_s=self.section.revocation_refresh_s,
            capabilities_path=self.section.capabilities or None,
        )
        return self.agent
