"""Fuzz the capability and token decoders: random bytes and mutated valid encodings.

Whatever arrives, decoding and verifying raise only UnauthenticatedError, PermissionDeniedError or
InvalidArgumentError: never another exception type, never a crash. (A mutation that leaves the credential
valid, for example in ignored padding, may also verify.)
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zk_fixtures import ALICE, AUTHORITY, BOB, NO_REVOCATIONS, NOW_NS, SERVICE, root

from feitian.errors import InvalidArgumentError, PermissionDeniedError, UnauthenticatedError
from feitian.security import (
    CapabilityChain,
    ReplayCache,
    Token,
    delegate,
    mint_token,
    verify_chain,
    verify_token,
)

ALLOWED = (UnauthenticatedError, PermissionDeniedError, InvalidArgumentError)
CHAIN = delegate(root(), ALICE, holder_key=BOB.public_key, holder_name="bob", now_ns=NOW_NS)
VALID_CHAIN = CHAIN.to_bytes()
VALID_TOKEN = mint_token(
    BOB,
    CHAIN,
    audience=SERVICE.principal_id,
    resources=["coord:/apps/web/a"],
    rights=["read"],
    now_ns=NOW_NS,
    nonce=b"\x42" * 16,
).to_bytes()


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "splice"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0xC0, 0xC1, 0xDC, 0xDD, 0xDE, 0xDF, 0x90, 0x9F]))
        elif op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 16))]
        else:
            j = draw(st.integers(0, len(data) - 1))
            data[i:i] = data[j : j + draw(st.integers(1, 64))]
    return bytes(data)


def check_chain(data: bytes) -> None:
    try:
        chain = CapabilityChain.from_bytes(data)
        verify_chain(chain, authority_key=AUTHORITY.public_key, now_ns=NOW_NS, revocations=NO_REVOCATIONS)
        for link in chain.links:
            link.open()
    except ALLOWED:
        pass


def check_token(data: bytes) -> None:
    try:
        verify_token(
            data,
            audiences={SERVICE.principal_id},
            presenter_key=BOB.public_key,
            authority_key=AUTHORITY.public_key,
            now_ns=NOW_NS,
            revocations=NO_REVOCATIONS,
            replay_cache=ReplayCache(started_at_ns=0),
        )
        Token.from_bytes(data).open()
    except ALLOWED:
        pass


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_as_chain(data: bytes) -> None:
    check_chain(data)


@FUZZ
@given(mutated(VALID_CHAIN))
def test_mutated_chain(data: bytes) -> None:
    check_chain(data)


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_as_token(data: bytes) -> None:
    check_token(data)


@FUZZ
@given(mutated(VALID_TOKEN))
def test_mutated_token(data: bytes) -> None:
    check_token(data)


def test_the_seeds_are_valid() -> None:
    check_chain(VALID_CHAIN)
    CapabilityChain.from_bytes(VALID_CHAIN)
    check_token(VALID_TOKEN)


def test_deep_nesting_and_huge_lengths() -> None:
    for data in (
        b"\x91" * 100_000,
        b"\xdd\xff\xff\xff\xff",
        b"\xdb\xff\xff\xff\xff",
        b"\x92\xa5chain" + b"\x91" * 5000,
    ):
        check_chain(data)
        check_token(data)
