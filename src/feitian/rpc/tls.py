"""TLS inside Kuafu's own stream: one ``ssl.SSLObject`` over memory buffers per connection.

Kuafu runs TLS itself rather than through the event loop's ``ssl=`` transports, so that:

* the server sees every failed handshake and logs it with its reason (the loop's TLS transports drop them
  silently), and can answer a plaintext Kuafu client with a readable refusal instead of a reset;
* the client can tell "the server refused my certificate" from "the server is down";
* decrypted bytes go straight into the frame decoder's buffers (a large payload is decrypted into its own
  buffer), and a burst of small frames costs one encryption and one write per event-loop iteration.

The socket carries ciphertext only; :class:`~feitian.rpc.stream.FrameStream` feeds what arrives into
:attr:`TlsSession.incoming`, drives the handshake, decrypts into the decoder, and encrypts what it sends.
"""

from __future__ import annotations

import contextlib
import ssl

__all__ = ["RAW_BUFFER_BYTES", "TlsSession", "describe_ssl_error"]

RAW_BUFFER_BYTES = 256 << 10  # ciphertext received per read
TLS_RECORD_BYTE = 0x16  # the first byte of a TLS handshake record (a ClientHello)


class TlsSession:
    """The TLS state of one connection; see the module docstring."""

    __slots__ = ("established", "incoming", "obj", "outgoing", "raw", "server_side")

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
        raw: memoryview | None = None,
    ) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        hostname = None if server_side else server_hostname
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_side=server_side, server_hostname=hostname)
        self.server_side = server_side
        self.established = False
        # Ciphertext is received here and copied into ``incoming`` at once, in the same callback, so the
        # connections of one event loop can share one buffer (``raw``, e.g. a server's) instead of each
        # keeping RAW_BUFFER_BYTES of its own for as long as it is open.
        self.raw = memoryview(bytearray(RAW_BUFFER_BYTES)) if raw is None else raw

    def handshake(self) -> bool:
        """Advance the handshake with what has arrived; True once it is complete. Raises ssl.SSLError."""
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        self.established = True
        return True

    def output(self) -> bytes:
        """Ciphertext waiting to be sent (b"" if none)."""
        return self.outgoing.read() if self.outgoing.pending else b""

    def has_input(self) -> bool:
        return bool(self.incoming.pending or self.obj.pending())

    def peer_certificate(self) -> bytes:
        return self.obj.getpeercert(binary_form=True) or b""

    def close_notify(self) -> None:
        """Queue a close_notify alert (best effort)."""
        with contextlib.suppress(ssl.SSLError, ValueError):
            self.obj.unwrap()


def describe_ssl_error(exc: BaseException) -> str:
    """A short, readable reason for a TLS failure (OpenSSL's reason code, lower case)."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason:
        return reason.lower().replace("_", " ")
    return str(exc) or type(exc).__name__
