"""The cluster authority service of Zhongkui (钟馗): issues capabilities by a durable policy, registers principals,
and publishes the revocation list (docs/security.md, "The authority service").

* :mod:`~feitian.authority.messages` — the ``authority.*`` wire messages and their rules
* :mod:`~feitian.authority.store` — the durable state (principals, policy, revocations)
* :mod:`~feitian.authority.service` — the handlers (run by the ``authority`` node role)
* :mod:`~feitian.authority.agent` — a node's revocation long poll and capability renewal
"""

from feitian.authority.agent import SecurityAgent
from feitian.authority.service import AuthorityService
from feitian.authority.store import AuthorityStore, PrincipalRecord

__all__ = ["AuthorityService", "AuthorityStore", "PrincipalRecord", "SecurityAgent"]
