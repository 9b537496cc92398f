"""Where a secured node's HTTP gateway listens: HTTPS with client certificates, and a readable refusal otherwise.

aiohttp's own TLS site hands every connection to the event loop's TLS transport, which answers a plaintext HTTP
request with a reset (``curl: (56)``) and a client without a certificate with a bare handshake failure, and logs
neither. :class:`TlsSite` accepts connections itself and looks at the first byte before any TLS:

* ``0x16`` (a TLS handshake record): the connection goes to aiohttp over TLS. The server asks for a certificate
  but does not insist (``CERT_OPTIONAL``), so a client without one completes the handshake and gets a ``401``
  JSON error saying that a client certificate is required (the gateway refuses every request without one); a
  certificate that is presented must still come from the cluster CA, or the handshake fails — logged with its
  reason.
* anything else (a plaintext HTTP request): the request is read (up to ``PLAINTEXT_READ_BYTES``) and answered in
  plain text with ``400 Bad Request`` naming the scheme to use; the refusal is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl

from aiohttp import web

from feitian.rpc.tls import TLS_RECORD_BYTE, describe_ssl_error

__all__ = ["HANDSHAKE_TIMEOUT_S", "PLAINTEXT_READ_BYTES", "TlsSite", "plaintext_refusal"]

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_S = 10.0  # for the first byte, and again for the TLS handshake
PLAINTEXT_READ_BYTES = 64 << 10  # of a plaintext request, read before answering (so the close is not a reset)


def plaintext_refusal(url: str, example_path: str = "/", docs: str = "docs/security.md") -> bytes:
    """The plain-text HTTP answer to a request without TLS on the HTTPS port at ``url``; the example asks for
    ``example_path`` and the last line points at ``docs``."""
    body = (
        f"this port speaks HTTPS with client certificates (mutual TLS), not plain HTTP: use {url}/ with a "
        "certificate issued by the cluster's CA, e.g.\n"
        f"  curl --cacert DIR/security/ca.pem --cert DIR/security/identities/admin.crt "
        f"--key DIR/security/identities/admin.key {url}{example_path}\n"
        f"(DIR: the cluster directory; {docs})\n"
    ).encode()
    head = (
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


class TlsSite(web.BaseSite):
    """An aiohttp site serving ``runner`` over TLS on ``host:port`` (port 0: any), see the module docstring.
    ``example_path`` and ``docs`` go into the plaintext refusal (:func:`plaintext_refusal`), ``label`` starts
    its log lines."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext,
        *,
        example_path: str = "/",
        docs: str = "docs/security.md",
        label: str = "http",
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=1024)
        self.label = label  # starts each log line (Nuwa's: "rest")
        self.example_path = example_path
        self.docs = docs
        self.host = host
        self.requested_port = port
        self.sock: socket.socket | None = None
        self.refused_plaintext = 0  # connections answered with the 400 (tests read it)
        self.failed_handshakes = 0
        self._accepting: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self.sock is not None
        port: int = self.sock.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def name(self) -> str:
        return self.url

    async def start(self) -> None:
        await super().start()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.sock = socket.create_server((self.host, self.requested_port), family=family, backlog=self._backlog)
        self.sock.setblocking(False)
        self._accepting = asyncio.get_running_loop().create_task(self._accept(self.sock), name=f"{self.label}-accept")

    async def stop(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*(t for t in [self._accepting, *self._connections] if t), return_exceptions=True)
        if self.sock is not None:
            self.sock.close()
        await super().stop()

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(sock)
            except OSError as exc:  # e.g. out of file descriptors: say so, and keep serving the others
                log.warning("%s: accept failed: %s", self.label, exc)
                await asyncio.sleep(0.1)
                continue
            conn.setblocking(False)
            task = loop.create_task(self._serve(conn, _label(peer)))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    async def _serve(self, conn: socket.socket, peer: str) -> None:
        loop = asyncio.get_running_loop()
        handed_over = False
        try:
            first = await _peek(loop, conn, HANDSHAKE_TIMEOUT_S)
            if not first:
                return  # closed (or silent) before saying anything
            if first[0] != TLS_RECORD_BYTE:
                await self._refuse_plaintext(loop, conn, peer)
                return
            server = self._runner.server
            assert server is not None
            handed_over = True  # the loop owns the socket from here, and closes it if the handshake fails
            try:
                await loop.connect_accepted_socket(
                    server, conn, ssl=self._ssl_context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S
                )
            except ssl.SSLError as exc:
                self.failed_handshakes += 1
                log.info("%s: TLS handshake from %s failed: %s", self.label, peer, describe_ssl_error(exc))
                return
            except (OSError, TimeoutError) as exc:
                log.info("%s: TLS handshake from %s did not complete: %s", self.label, peer, exc or type(exc).__name__)
                return
        except Exception:  # a bug: this connection goes, the site serves on
            log.exception("%s: serving a connection from %s failed", self.label, peer)
        finally:
            if not handed_over:
                conn.close()

    async def _refuse_plaintext(self, loop: asyncio.AbstractEventLoop, conn: socket.socket, peer: str) -> None:
        self.refused_plaintext += 1
        log.info(
            "%s: refused a plaintext request from %s: this port speaks HTTPS with client certificates", self.label, peer
        )
        with contextlib.suppress(OSError, TimeoutError):
            await _drain(loop, conn, PLAINTEXT_READ_BYTES)  # what the client sent: closing unread data resets
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                await loop.sock_sendall(conn, plaintext_refusal(self.url, self.example_path, self.docs))
            conn.shutdown(socket.SHUT_WR)


async def _readable(loop: asyncio.AbstractEventLoop, conn: socket.socket, timeout_s: float) -> bool:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(conn.fileno(), wake)
    try:
        await asyncio.wait_for(ready, timeout_s)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(conn.fileno())


async def _peek(loop: asyncio.AbstractEventLoop, conn: socket.socket, timeout_s: float) -> bytes:
    """The first byte the client sent, left unread (b"" if it closed or said nothing in time)."""
    if not await _readable(loop, conn, timeout_s):
        return b""
    try:
        return conn.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return b""


async def _drain(loop: asyncio.AbstractEventLoop, conn: socket.socket, limit: int) -> None:
    """Read what the client has sent, up to ``limit`` bytes: the request's head has arrived with its first byte."""
    received = 0
    while received < limit and await _readable(loop, conn, 0.05):
        try:
            chunk = conn.recv(min(65536, limit - received))
        except BlockingIOError:
            continue
        if not chunk:
            return
        received += len(chunk)


def _label(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
