"""Micro-benchmarks of Zhongkui: ``python -m feitian.security.bench [--seconds S]`` prints one JSON object.

Figures: capability chain verifications per second (chains of 1 and 3 links), token mint+verify per second,
cached authorization checks per second, and full mutual TLS 1.3 handshakes per second over 127.0.0.1 (one
client, sequential connections). Single-threaded; numbers are for comparison across changes, not promises.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import platform
import ssl
import time
from collections.abc import Callable

from feitian.security.ca import ClusterAuthority
from feitian.security.core.authorize import Authorizer
from feitian.security.core.capability import CapabilityChain, delegate, issue_capability, verify_chain
from feitian.security.core.identity import Principal, PrincipalKind
from feitian.security.core.revocation import RevocationList
from feitian.security.core.rights import Right
from feitian.security.core.token import ReplayCache, mint_token, verify_token
from feitian.security.keys import KeyPair, new_nonce
from feitian.security.tls import TlsIdentity, client_context, server_context


def _rate(seconds: float, action: Callable[[], object]) -> float:
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(20):
            action()
        count += 20
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def _chains(authority: KeyPair, keys: list[KeyPair], now_ns: int) -> tuple[CapabilityChain, CapabilityChain]:
    one = issue_capability(
        authority,
        holder_key=keys[0].public_key,
        holder_name=keys[0].name,
        resources=["coord:/apps/web", "dfs:/data"],
        rights=["read", "write"],
        now_ns=now_ns,
    )
    three = one
    for signer, holder in itertools.pairwise(keys):
        three = delegate(three, signer, holder_key=holder.public_key, holder_name=holder.name, now_ns=now_ns)
    return one, three


async def _tls_rate(seconds: float, server: ssl.SSLContext, client: ssl.SSLContext) -> float:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server)
    port = srv.sockets[0].getsockname()[1]
    count, start = 0, time.perf_counter()
    try:
        while time.perf_counter() - start < seconds:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client, server_hostname="127.0.0.1")
            await reader.read()
            writer.close()
            count += 1
    finally:
        srv.close()
        await srv.wait_closed()
    return count / (time.perf_counter() - start)


def run(seconds: float) -> dict[str, object]:
    now_ns = time.time_ns()
    authority = KeyPair.generate("authority")
    keys = [KeyPair.generate(n) for n in ("alice", "bob", "carol")]
    one, three = _chains(authority, keys, now_ns)
    revocations = RevocationList()

    def verify(chain: CapabilityChain) -> Callable[[], object]:
        return lambda: verify_chain(chain, authority_key=authority.public_key, now_ns=now_ns, revocations=revocations)

    cache = ReplayCache(started_at_ns=now_ns - 1, max_entries=10_000_000)

    def token_round_trip() -> object:
        token = mint_token(
            keys[0], one, audience="svc", resources=["dfs:/data/x"], rights=["read"], now_ns=now_ns, nonce=new_nonce()
        )
        return verify_token(
            token.to_bytes(),
            audiences={"svc"},
            presenter_key=keys[1].public_key,
            authority_key=authority.public_key,
            now_ns=now_ns,
            revocations=revocations,
            replay_cache=cache,
        )

    principal = Principal.from_public_key(keys[0].public_key, "alice", PrincipalKind.USER)
    authorizer = Authorizer(principal)
    authorizer.add_grant(
        verify_chain(one, authority_key=authority.public_key, now_ns=now_ns, revocations=revocations), now_ns=now_ns
    )

    def cached_check() -> None:
        authorizer.check(Right.READ, "coord:/apps/web/x", now_ns=now_ns, revocations=revocations)

    now_s = time.time()
    ca = ClusterAuthority.create(authority, cluster_name="bench", now_s=now_s)
    service = KeyPair.generate("svc")
    server = server_context(TlsIdentity.issue(ca, service, PrincipalKind.SERVICE, now_s=now_s))
    client = client_context(TlsIdentity.issue(ca, keys[0], PrincipalKind.USER, now_s=now_s))
    return {
        "chain_verify_per_s_len1": round(_rate(seconds, verify(one))),
        "chain_verify_per_s_len3": round(_rate(seconds, verify(three))),
        "token_mint_verify_per_s": round(_rate(seconds, token_round_trip)),
        "authorize_cached_check_per_s": round(_rate(seconds, cached_check)),
        "tls13_mutual_handshakes_per_s": round(asyncio.run(_tls_rate(seconds, server, client))),
        "chain_bytes_len1": len(one.to_bytes()),
        "chain_bytes_len3": len(three.to_bytes()),
        "openssl": ssl.OPENSSL_VERSION,
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m feitian.security.bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="time spent on each figure")
    args = parser.parse_args()
    print(json.dumps(run(args.seconds), indent=2))


if __name__ == "__main__":
    main()
