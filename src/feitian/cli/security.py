"""Zhongkui commands: ``feitian key|user|policy|cap|token ...`` (docs/security.md, docs/cli.md)."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path
from typing import Any, TypeVar

import click

from feitian.cli.cluster import cluster_option
from feitian.cli.identity import cluster_client, identity_option
from feitian.cli.output import emit_json, note, table
from feitian.deploy import LocalCluster, resolve_cluster_dir
from feitian.errors import InvalidArgumentError, NotFoundError
from feitian.rpc import Request
from feitian.runtime.eventloop import run
from feitian.security import (
    DEFAULT_TOKEN_TTL_NS,
    CapabilityChain,
    Right,
    chain_expiry,
    create_identity_files,
    delegate,
    load_private_key,
    load_public_key,
    mint_token,
    new_nonce,
    parse_resource,
    parse_rights,
    read_capabilities,
    write_capabilities,
)
from feitian.security.authority import (
    AddPrincipal,
    Issue,
    ListPrincipals,
    PolicyGrant,
    PolicyList,
    PolicyReply,
    PolicyRevoke,
    Revoke,
    resolve_identity,
)
from feitian.security.core import MAX_DELEGATION_DEPTH

R = TypeVar("R")

rights_option = click.option(
    "--rights", default="", metavar="R1,R2", help="Comma-separated rights: " + ", ".join(Right)
)
resource_option = click.option(
    "--resource", "resources", multiple=True, metavar="RESOURCE", help="component:path (repeatable), e.g. echo:/text"
)


def _rights(text: str) -> list[str]:
    return [str(r) for r in sorted(parse_rights(r.strip() for r in text.split(",") if r.strip()))]


def _lc(cluster_dir: str | None) -> LocalCluster:
    return LocalCluster(resolve_cluster_dir(cluster_dir))


def _call_authority(cluster_dir: str | None, identity: str | None, request: Request[R], name: str) -> R:
    """Call the cluster's authority as ``identity``."""
    lc = _lc(cluster_dir)
    state = lc.load()
    if not state.secure or not state.authority:
        raise InvalidArgumentError(f"the cluster at {lc.dir} runs without security: it has no authority")

    async def go() -> R:
        async with await cluster_client(lc, name, identity=identity) as client:
            return await client.call(state.authority, request, timeout=10.0)

    return run(go())


def _when(ns: int) -> str:
    left = ns / 1e9 - time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))
    return f"{stamp} ({'expired' if left <= 0 else f'in {left / 60:.0f} min'})"


def describe_chain(chain: bytes) -> dict[str, Any]:
    """A decoded (not verified) capability chain, for display."""
    links = [link.open() for link in CapabilityChain.from_bytes(chain).links]
    leaf = links[-1]
    return {
        "id": leaf.id.hex(),
        "holder": leaf.holder_name,
        "holder_id": leaf.holder_id,
        "rights": list(leaf.rights),
        "resources": list(leaf.resources),
        "expires_ns": min(link.expires_ns for link in links),
        "max_depth": leaf.max_depth,
        "links": [f"{link.holder_name} ({link.id.hex()[:12]})" for link in links],
    }


# -- key -------------------------------------------------------------------------------------------------------


@click.group()
def key() -> None:
    """Identity key pairs (ZK-1)."""


def _default_key_dir() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "feitian", "keys")


@key.command("create")
@click.argument("name")
@click.option("--dir", "directory", metavar="DIR", default=None, help="Where to write NAME.key and NAME.pub.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def key_create(name: str, directory: str | None, as_json: bool) -> None:
    """Create NAME.key (mode 0600) and NAME.pub; print the public key.

    Give NAME.pub to the cluster admin (`feitian user add NAME --pubkey NAME.pub`).
    """
    folder = Path(directory or _default_key_dir())
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    pair, private_path, public_path = create_identity_files(folder, name)
    if as_json:
        emit_json({"name": name, "principal_id": pair.principal_id, "key": str(private_path), "pub": str(public_path)})
        return
    click.echo(pair.public().to_text(), nl=False)
    note(f"wrote {private_path} (mode 0600) and {public_path}; principal id {pair.principal_id}")


@key.command("show")
@click.argument("path", metavar="FILE")
def key_show(path: str) -> None:
    """Print the public key of a key file (NAME.key, checked for safe permissions, or NAME.pub)."""
    if path.endswith(".pub"):
        click.echo(load_public_key(path).to_text(), nl=False)
        return
    click.echo(load_private_key(path).public().to_text(), nl=False)


# -- user ------------------------------------------------------------------------------------------------------


@click.group()
def user() -> None:
    """Principals registered with the cluster's authority (admin)."""


@user.command("add")
@click.argument("name")
@click.option("--pubkey", "pubkey", required=True, metavar="FILE", help="The principal's NAME.pub.")
@click.option("--service", is_flag=True, help="Register a service (it may serve) rather than a user.")
@click.option("--host", "hosts", multiple=True, metavar="HOST", help="Service host names/addresses (repeatable).")
@click.option("--cert-out", metavar="FILE", default=None, help="Where to write the certificate (default: beside FILE).")
@cluster_option
@identity_option
def user_add(
    name: str,
    pubkey: str,
    service: bool,
    hosts: tuple[str, ...],
    cert_out: str | None,
    cluster_dir: str | None,
    identity: str | None,
) -> None:
    """Register NAME with the public key in FILE and write its certificate (NAME.crt)."""
    public = load_public_key(pubkey)
    kind = "service" if service else "user"
    reply = _call_authority(cluster_dir, identity, AddPrincipal(name, public.key, kind, tuple(hosts)), "feitian-user")
    target = Path(cert_out) if cert_out else Path(pubkey).with_name(f"{name}.crt")
    target.write_bytes(reply.certificate_pem)
    click.echo(f"{reply.principal.kind} {reply.principal.name} {reply.principal.id}")
    note(
        f"certificate written to {target}; grant rights with `feitian policy grant {name} --resource ... --rights ...`"
    )


@user.command("ls")
@cluster_option
@identity_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def user_ls(cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """List registered principals."""
    principals = _call_authority(cluster_dir, identity, ListPrincipals(), "feitian-user")
    if as_json:
        emit_json([{"name": p.name, "id": p.id, "kind": p.kind} for p in principals])
        return
    table(["NAME", "KIND", "ID"], [[p.name, p.kind, p.id] for p in principals])


# -- policy ----------------------------------------------------------------------------------------------------


@click.group()
def policy() -> None:
    """The authority's durable policy: who may hold which rights on which resources (admin)."""


def _print_policy(reply: PolicyReply, as_json: bool) -> None:
    if as_json:
        emit_json(reply)
        return
    table(
        ["PRINCIPAL", "RESOURCE", "RIGHTS", "MAX_DEPTH"],
        [[e.principal, e.resource, ",".join(e.rights), e.max_depth] for e in reply.entries],
    )
    note(f"policy version {reply.version}")


@policy.command("grant")
@click.argument("principal")
@resource_option
@rights_option
@click.option(
    "--max-depth",
    type=click.IntRange(0, MAX_DELEGATION_DEPTH),
    default=2,
    show_default=True,
    help="How far it may delegate further.",
)
@cluster_option
@identity_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def policy_grant(
    principal: str,
    resources: tuple[str, ...],
    rights: str,
    max_depth: int,
    cluster_dir: str | None,
    identity: str | None,
    as_json: bool,
) -> None:
    """Allow PRINCIPAL (name or id) RIGHTS on each RESOURCE."""
    if not resources or not rights:
        raise InvalidArgumentError("policy grant: give at least one --resource and --rights")
    request = PolicyGrant(principal, resources, tuple(_rights(rights)), max_depth)
    _print_policy(_call_authority(cluster_dir, identity, request, "feitian-policy"), as_json)


@policy.command("revoke")
@click.argument("principal")
@resource_option
@rights_option
@cluster_option
@identity_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def policy_revoke(
    principal: str,
    resources: tuple[str, ...],
    rights: str,
    cluster_dir: str | None,
    identity: str | None,
    as_json: bool,
) -> None:
    """Remove RIGHTS (default all) on exactly the given RESOURCEs (default all) from PRINCIPAL's entries.

    Capabilities already issued stay valid until they expire: revoke them too with `feitian cap revoke`.
    """
    request = PolicyRevoke(principal, resources, tuple(_rights(rights)))
    _print_policy(_call_authority(cluster_dir, identity, request, "feitian-policy"), as_json)


@policy.command("ls")
@click.argument("principal", required=False, default="")
@cluster_option
@identity_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def policy_ls(principal: str, cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """List the policy entries (of PRINCIPAL, or everyone's)."""
    _print_policy(_call_authority(cluster_dir, identity, PolicyList(principal), "feitian-policy"), as_json)


# -- cap -------------------------------------------------------------------------------------------------------


@click.group()
def cap() -> None:
    """Capabilities (ZK-2): request them from the authority, inspect, delegate, revoke."""


def _identity_files(cluster_dir: str | None, identity: str | None) -> Any:
    return resolve_identity(_lc(cluster_dir).security, identity)


@cap.command("request")
@resource_option
@rights_option
@click.option("--ttl", default=3600.0, show_default=True, help="Lifetime in seconds (at most a day).")
@click.option(
    "--max-depth",
    type=click.IntRange(0, MAX_DELEGATION_DEPTH),
    default=0,
    show_default=True,
    help="How far the holder may delegate it.",
)
@click.option("--out", metavar="FILE", default=None, help="Write here instead of the identity's NAME.caps.")
@cluster_option
@identity_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def cap_request(
    resources: tuple[str, ...],
    rights: str,
    ttl: float,
    max_depth: int,
    out: str | None,
    cluster_dir: str | None,
    identity: str | None,
    as_json: bool,
) -> None:
    """Ask the authority for a capability (without --resource: everything the policy allows you).

    The authority issues it to the identity the request is authenticated as, within its policy.
    """
    if bool(resources) != bool(rights):
        raise InvalidArgumentError("cap request: give --resource and --rights together (or neither)")
    request = Issue(resources, tuple(_rights(rights)), ttl, max_depth)
    reply = _call_authority(cluster_dir, identity, request, "feitian-cap")
    files = _identity_files(cluster_dir, identity)
    target = Path(out) if out else files.capabilities
    kept = [] if out else [c for c in read_capabilities(target) if chain_expiry(c) > time.time_ns()]
    write_capabilities(target, kept + list(reply.chains))
    _show([describe_chain(c) for c in reply.chains], as_json)
    note(f"{len(reply.chains)} capability(ies) written to {target}")


def _show(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        emit_json(rows)
        return
    table(
        ["ID", "HOLDER", "RIGHTS", "RESOURCES", "EXPIRES", "CHAIN"],
        [
            [r["id"][:16], r["holder"], ",".join(r["rights"]), " ".join(r["resources"]), _when(r["expires_ns"]),
             " > ".join(r["links"])]
            for r in rows
        ],
    )  # fmt: skip


@cap.command("show")
@click.argument("files", nargs=-1, metavar="[FILE]...")
@cluster_option
@identity_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def cap_show(files: tuple[str, ...], cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """Decode capability files (default: the identity's NAME.caps). Shows contents; verification is the
    server's job."""
    paths = [Path(f) for f in files] or [_identity_files(cluster_dir, identity).capabilities]
    rows: list[dict[str, Any]] = []
    for path in paths:
        if not path.exists():
            raise NotFoundError(f"cap show: no capability file {path}", hint="get one with `feitian cap request`")
        rows.extend(describe_chain(chain) for chain in read_capabilities(path))
    _show(rows, as_json)


@cap.command("revoke")
@click.option("--id", "capability_id", default="", metavar="HEX", help="A capability id (as `cap show` prints).")
@click.option("--holder", default="", metavar="NAME|ID", help="A principal: every chain it holds or minted.")
@cluster_option
@identity_option
def cap_revoke(capability_id: str, holder: str, cluster_dir: str | None, identity: str | None) -> None:
    """Put a capability or a holder on the revocation list (admin). Every server honours it within the
    revocation bound (docs/security.md)."""
    reply = _call_authority(cluster_dir, identity, Revoke(capability_id, holder), "feitian-cap")
    click.echo(f"revoked {capability_id or holder}: revocation list version {reply.version}")


def _covering(chains: list[bytes], resources: list[str], rights: list[str]) -> CapabilityChain:
    wanted = [parse_resource(r) for r in resources]
    now = time.time_ns()
    for data in chains:
        chain = CapabilityChain.from_bytes(data)
        leaf = chain.leaf
        granted = [parse_resource(r) for r in leaf.resources]
        if (
            chain_expiry(data) > now
            and all(any(g.covers(w) for g in granted) for w in wanted)
            and set(parse_rights(rights))
            <= set(parse_rights(leaf.rights)) | ({*Right} if "admin" in leaf.rights else set())
        ):
            return chain
    raise NotFoundError(
        f"no capability of yours covers {', '.join(rights)} on {', '.join(resources)}",
        hint="request one with `feitian cap request --resource ... --rights ...`",
    )  # fmt: skip


@cap.command("delegate")
@click.option("--to", "to_pub", required=True, metavar="FILE", help="The delegate's NAME.pub.")
@resource_option
@rights_option
@click.option("--ttl", default=600.0, show_default=True, help="Lifetime in seconds (never past your own).")
@click.option("--out", metavar="FILE", required=True, help="Where to write the delegated capability.")
@cluster_option
@identity_option
def cap_delegate(
    to_pub: str,
    resources: tuple[str, ...],
    rights: str,
    ttl: float,
    out: str,
    cluster_dir: str | None,
    identity: str | None,
) -> None:
    """Delegate part of one of your capabilities to another principal (never more than you hold)."""
    if not resources or not rights:
        raise InvalidArgumentError("cap delegate: give --resource and --rights")
    files = _identity_files(cluster_dir, identity)
    signer = load_private_key(files.key)
    parent = _covering(files.read_capabilities(), list(resources), _rights(rights))
    delegate_key = load_public_key(to_pub)
    now = time.time_ns()
    chain = delegate(
        parent,
        signer,
        holder_key=delegate_key.key,
        holder_name=delegate_key.name,
        now_ns=now,
        resources=resources,
        rights=_rights(rights),
        expires_ns=min(chain_expiry(parent.to_bytes()), now + int(ttl * 1e9)),
        max_depth=0,
    )
    write_capabilities(Path(out), [chain.to_bytes()])
    _show([describe_chain(chain.to_bytes())], False)


# -- token -----------------------------------------------------------------------------------------------------


@click.group()
def token() -> None:
    """Tokens (ZK-3): short-lived, single-use credentials minted from your capabilities."""


@token.command("mint")
@click.option("--audience", required=True, metavar="NAME|ID", help="The receiving server (node name or id).")
@resource_option
@rights_option
@click.option("--ttl", default=DEFAULT_TOKEN_TTL_NS / 1e9, show_default=True, help="Lifetime in seconds (<= 600).")
@click.option("--holder-pubkey", metavar="FILE", default=None, help="Bind it to this principal (else: bearer).")
@click.option("--out", metavar="FILE", default=None, help="Write it here (default: stdout).")
@cluster_option
@identity_option
def token_mint(
    audience: str,
    resources: tuple[str, ...],
    rights: str,
    ttl: float,
    holder_pubkey: str | None,
    out: str | None,
    cluster_dir: str | None,
    identity: str | None,
) -> None:
    """Mint a token from one of your capabilities, for one server, usable once (`rpc call --token FILE`)."""
    if not resources or not rights:
        raise InvalidArgumentError("token mint: give --resource and --rights")
    files = _identity_files(cluster_dir, identity)
    signer = load_private_key(files.key)
    chain = _covering(files.read_capabilities(), list(resources), _rights(rights))
    holder = load_public_key(holder_pubkey).key if holder_pubkey else b""
    minted = mint_token(
        signer,
        chain,
        audience=audience,
        resources=resources,
        rights=_rights(rights),
        now_ns=time.time_ns(),
        nonce=new_nonce(),
        ttl_ns=int(ttl * 1e9),
        holder_key=holder,
    )
    text = base64.b64encode(minted.to_bytes()).decode("ascii") + "\n"
    if out:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        note(f"token for {audience} written to {out}")
    else:
        click.echo(text, nl=False)
