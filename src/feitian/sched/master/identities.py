"""Applications' identities (ZK-3): what FuxiMaster does with the credentials a submitter gives its application.

A submitter that wants its application's processes to reach Pangu or Nuwa in a secured cluster makes a key for
the application and delegates to it some of its own capabilities (:func:`feitian.sched.credentials.
app_credentials`). FuxiMaster

1. checks them (:func:`check_credentials`): every chain verifies against the cluster authority's key, is held
   by the application's key, and is still valid — so a mistake is refused at submit time, not when a process
   first calls a service;
2. registers the key with the authority as the principal ``app.<random>`` (``authority.EnrolApp``; FuxiMaster
   may register principals under ``authority:/principals/apps/`` and nowhere else), which issues its TLS
   certificate;
3. stores the identity with the application's hard state in Nuwa (readable only by FuxiMaster), hands it to
   each Tubo that starts one of the application's processes (``fuxi.AppIdentity``), and
4. retires the principal when the application ends (``authority.RetireApp``): its key is revoked as a holder
   until its capabilities expire anyway.

The application can never do more than its submitter: the capabilities are the submitter's, narrowed.
"""

from __future__ import annotations

import secrets

from feitian.errors import FeitianError, InvalidArgumentError
from feitian.rpc import Client
from feitian.sched.messages import AppCredentials, AppIdentity
from feitian.security import CapabilityChain, KeyPair, RevocationList, authority_key_of, verify_chain
from feitian.security.authority import APP_NAME_PREFIX, EnrolApp, RetireApp

__all__ = ["AUTHORITY_TIMEOUT_S", "check_credentials", "enrol", "retire"]

AUTHORITY_TIMEOUT_S = 10.0


def check_credentials(creds: AppCredentials, ca_pem: bytes, now_ns: int) -> tuple[KeyPair, int]:
    """The application's key and when its last capability expires; InvalidArgumentError listing every problem."""
    key = KeyPair.from_seed(creds.seed, "app")
    authority_key = authority_key_of(ca_pem)
    problems: list[str] = []
    expires_ns = 0
    for index, data in enumerate(creds.chains):
        try:
            chain = CapabilityChain.from_bytes(data)
            grant = verify_chain(chain, authority_key=authority_key, now_ns=now_ns, revocations=RevocationList())
        except FeitianError as exc:
            problems.append(f"capability {index}: {exc.message}")
            continue
        if grant.holder_key != key.public_key:
            problems.append(f"capability {index}: held by {chain.leaf.holder_name}, not by the application's key")
            continue
        expires_ns = max(expires_ns, grant.expires_ns)
    if problems:
        raise InvalidArgumentError(
            "submit: the application's credentials are not usable: " + "; ".join(problems),
            hint="credentials are made by the client from your own capabilities (docs/sched.md, Security)",
        )
    return key, expires_ns


async def enrol(rpc: Client, authority: str, key: KeyPair, creds: AppCredentials, expires_ns: int) -> AppIdentity:
    """Register the application's key with the authority under a fresh ``app.`` name."""
    name = APP_NAME_PREFIX + secrets.token_hex(8)
    reply = await rpc.call(authority, EnrolApp(name=name, public_key=key.public_key), timeout=AUTHORITY_TIMEOUT_S)
    return AppIdentity(
        principal=name,
        seed=creds.seed,
        certificate_pem=reply.certificate_pem,
        ca_pem=reply.ca_pem,
        chains=list(creds.chains),
        expires_ns=expires_ns,
    )


async def retire(rpc: Client, authority: str, identity: AppIdentity) -> None:
    """Revoke the application's principal (until its capabilities expire) and forget its registration."""
    # The authority revokes nothing once the capabilities expired (there is nothing left to revoke).
    request = RetireApp(name=identity.principal, until_ns=identity.expires_ns)
    await rpc.call(authority, request, timeout=AUTHORITY_TIMEOUT_S)
