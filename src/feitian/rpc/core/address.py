"""Kuafu addresses (KUAFU-2).

* ``tcp://host:port`` — a server; IPv6 hosts in brackets (``tcp://[::1]:9000``).
* ``unix:///path/to/socket`` — a server on a Unix domain socket of this machine.
* ``nuwa://cluster/ServiceName`` — a service registered in Nuwa: resolved to the live servers registered under
  its directory (NUWA-7) and balanced across them.
"""

from __future__ import annotations

import msgspec

from feitian.errors import InvalidArgumentError

_HINT = "addresses look like tcp://127.0.0.1:7000, unix:///run/feitian/x.sock or nuwa://cluster/Service"


class TcpAddress(msgspec.Struct, frozen=True):
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


class UnixAddress(msgspec.Struct, frozen=True):
    path: str

    def __str__(self) -> str:
        return f"unix://{self.path}"


class NuwaAddress(msgspec.Struct, frozen=True):
    cluster: str
    service: str

    def __str__(self) -> str:
        return f"nuwa://{self.cluster}/{self.service}"


Address = TcpAddress | UnixAddress | NuwaAddress
EndpointAddress = TcpAddress | UnixAddress


def parse_address(text: str) -> Address:
    """Parse an address; raises InvalidArgumentError naming what is wrong."""
    if not isinstance(text, str):
        raise InvalidArgumentError(f"address must be a string, got {type(text).__name__}", hint=_HINT)
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise InvalidArgumentError(f"address {text!r} has no scheme", hint=_HINT)
    if scheme == "tcp":
        return _parse_tcp(text, rest)
    if scheme == "unix":
        if not rest.startswith("/"):
            raise InvalidArgumentError(f"address {text!r}: a unix socket path must be absolute", hint=_HINT)
        return UnixAddress(rest)
    if scheme == "nuwa":
        cluster, slash, service = rest.partition("/")
        if not cluster or not slash or not service or "/" in service.strip("/"):
            raise InvalidArgumentError(f"address {text!r}: expected nuwa://<cluster>/<ServiceName>", hint=_HINT)
        return NuwaAddress(cluster, service.strip("/"))
    raise InvalidArgumentError(f"address {text!r}: unknown scheme {scheme!r}", hint=_HINT)


def parse_endpoint(text: str) -> EndpointAddress:
    """Parse an address that names one server (tcp:// or unix://)."""
    address = parse_address(text)
    if isinstance(address, NuwaAddress):
        raise InvalidArgumentError(f"address {text!r} names a service, not a server", hint=_HINT)
    return address


def _parse_tcp(text: str, rest: str) -> TcpAddress:
    if rest.startswith("["):
        host, bracket, port_part = rest[1:].partition("]")
        if not bracket or not port_part.startswith(":"):
            raise InvalidArgumentError(f"address {text!r}: expected tcp://[ipv6]:port", hint=_HINT)
        port_text = port_part[1:]
    else:
        host, colon, port_text = rest.rpartition(":")
        if not colon:
            raise InvalidArgumentError(f"address {text!r} has no port", hint=_HINT)
    if not host:
        raise InvalidArgumentError(f"address {text!r} has no host", hint=_HINT)
    if not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise InvalidArgumentError(f"address {text!r}: port must be 0..65535, got {port_text!r}", hint=_HINT)
    return TcpAddress(host, int(port_text))
