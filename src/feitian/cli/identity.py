"""Options every client command shares: which cluster, which identity, which credentials."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any, TypeVar

import click

from feitian.deploy import ClusterResolver, LocalCluster
from feitian.errors import InvalidArgumentError, NotFoundError
from feitian.rpc import Client, ClientConfig

F = TypeVar("F", bound=Callable[..., Any])

identity_option = click.option(
    "--identity",
    metavar="NAME|PATH",
    default=None,
    help="Act as this identity: a name in the cluster's security/identities, or a NAME.key file with NAME.crt "
    "beside it (default: $FEITIAN_IDENTITY, else admin).",
)


def credential_options(fn: F) -> F:
    """--capability FILE (repeatable) and --token FILE, after --identity."""
    fn = click.option(
        "--token",
        "token_file",
        metavar="FILE",
        default=None,
        help="Present this token (feitian token mint) to the server before the call.",
    )(fn)
    fn = click.option(
        "--capability",
        "capability_files",
        metavar="FILE",
        multiple=True,
        help="Present exactly these capability files (default: the identity's NAME.caps, renewed when needed).",
    )(fn)
    return identity_option(fn)


async def cluster_client(
    lc: LocalCluster,
    name: str,
    *,
    identity: str | None = None,
    capability_files: tuple[str, ...] = (),
    proxy: bool = False,
    connect_timeout_s: float = 1.0,
) -> Client:
    """A client of the cluster at ``lc`` acting as ``identity`` (a plain one for an insecure cluster, or when
    there is no cluster there and no identity was asked for: a bare ``tcp://`` target)."""
    try:
        state = lc.load()
    except NotFoundError:
        if identity is None and not lc.security.exists():
            return Client(ClientConfig(name=name, connect_timeout_s=connect_timeout_s))
        raise
    proxy_path = None
    if proxy:
        sockets = [p.extra["socket"] for p in state.processes if p.role == "rpc-proxy" and "socket" in p.extra]
        if not sockets:
            raise InvalidArgumentError("--proxy: the cluster runs no rpc-proxy")
        proxy_path = sockets[0]
    if proxy_path is not None and state.secure:
        # Let the proxy itself refuse, so the user sees its reason (a TLS client cannot use a proxy).
        return Client(ClientConfig(name=name, proxy_path=proxy_path, connect_timeout_s=connect_timeout_s))
    config = ClientConfig(name=name, proxy_path=proxy_path, connect_timeout_s=connect_timeout_s)
    return await lc.client(
        config, state=state, identity=identity, capability_files=capability_files, resolver=ClusterResolver(lc)
    )


def read_token(path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:  # as every file named on the command line: not found, exit 4
        raise NotFoundError(f"--token {path}: no such file") from None
    except OSError as exc:
        raise InvalidArgumentError(f"--token {path}: {exc.strerror}") from None
    try:
        return base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgumentError(f"--token {path}: not a token file (base64)") from None
