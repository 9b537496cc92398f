"""The one exception tree of feitian.

Every error raised by feitian code is a :class:`FeitianError`. Each concrete class has a stable wire ``code``
(a short string that never changes once released) so that an error raised in a server arrives at the caller as
the same class with the same fields, a CLI ``exit_code`` and the ``http_status`` of REST answers. Every code is
registered here (a class defined elsewhere would exist only once its module is imported): the contract test
``tests/unit/test_errors.py`` checks that no other module defines one.

A ``reason`` field that callers branch on is a member of the class's declared :class:`~enum.StrEnum`
(``ConflictReason.NO_LEASE``, also ``ConflictError.Reason``), never free text. On the wire it is the member's
string value, so an older peer reads it unchanged; a value this side does not know (a newer peer) stays a plain
string.

The one wire form of an error is ``feitian.rpc.core.messages.ErrorInfo``: code, message, hint, fields and
``retryable``. A code this side does not know decodes (:func:`error_from_wire`) to a generic error that keeps
the code and whether it may be retried (:class:`UnavailableError` if so, else :class:`FeitianError`).

Fields are keyword arguments stored in ``fields``; they must be plain data (str, int, float, bool, None, lists
and dicts of those) because they travel on the wire.

    FeitianError
    ├── InvalidArgumentError        caller bug, never retried
    │   ├── ConfigError             lists every problem at once
    │   └── MessageTooLargeError    a message over a named bound
    ├── NotFoundError
    │   ├── LogCompactedError       consensus: the entries are in a snapshot now
    │   └── LogUnavailableError     consensus: the entries are past the end of the log
    ├── AlreadyExistsError
    ├── ConflictError               version mismatch, non-empty directory, ...
    ├── PermissionDeniedError
    ├── UnauthenticatedError
    ├── UnavailableError            retryable
    │   ├── NotLeaderError          carries leader_hint
    │   ├── ConnectionLostError
    │   └── OverloadedError
    ├── DeadlineExceededError
    ├── CancelledError              the caller cancelled the call (wire only; locally asyncio.CancelledError)
    ├── SessionExpiredError         re-establish, do not retry
    ├── DataCorruptionError         checksum mismatch, never repaired silently
    ├── ProtocolError               a peer broke the wire protocol
    └── InternalError               an invariant broke: a bug
"""

from __future__ import annotations

import contextlib
from enum import StrEnum
from typing import Any, ClassVar

__all__ = [
    "AccessReason",
    "AlreadyExistsError",
    "AlreadyExistsReason",
    "CallCancelledError",
    "ConfigError",
    "ConflictError",
    "ConflictReason",
    "ConnectionLostError",
    "DataCorruptionError",
    "DataCorruptionReason",
    "DeadlineExceededError",
    "FeitianError",
    "InternalError",
    "InvalidArgumentError",
    "LogCompactedError",
    "LogUnavailableError",
    "MessageTooLargeError",
    "NotFoundError",
    "NotFoundReason",
    "NotLeaderError",
    "OverloadedError",
    "PermissionDeniedError",
    "ProtocolError",
    "SessionExpiredError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnavailableReason",
    "error_class_for_code",
    "error_from_wire",
    "exit_code_for",
]

# Exit codes of the CLI (see docs/cli.md).
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_NOT_FOUND = 4
EXIT_CONFLICT = 5
EXIT_PERMISSION = 6
EXIT_DEADLINE = 7

_REGISTRY: dict[str, type[FeitianError]] = {}


# -- declared reasons (the ``reason`` field), one enum per error class; values are wire strings, never changed ----


class NotFoundReason(StrEnum):
    NO_PARENT = "no_parent"  # dfs: a parent directory of the path does not exist
    NO_REPLICA = "no_replica"  # dfs: this chunkserver holds no replica of the chunk
    UNKNOWN_METHOD = "unknown_method"  # rpc: the server does not answer this method (an older server)


class AlreadyExistsReason(StrEnum):
    DIR_EXISTS = "dir_exists"  # dfs: a directory is in the way


class ConflictReason(StrEnum):
    BUSY = "busy"  # dfs: the chunk is being written; a copy waits for its writer
    IS_A_DIRECTORY = "is_a_directory"
    NOT_A_DIRECTORY = "not_a_directory"
    NOT_EMPTY = "not_empty"
    NOT_LAST_CHUNK = "not_last_chunk"
    OPEN_FOR_WRITING = "open_for_writing"
    UNDER_REPLICATED = "under_replicated"
    LEASE_EXPIRED = "lease_expired"  # dfs: the write lease ran out
    NO_LEASE = "no_lease"  # dfs: the file is not open for writing under that lease
    STALE_LEASE = "stale_lease"  # dfs: the lease is not the file's current one
    STALE_READER = "stale_reader"  # dfs: the reader asked for an older version than the replica holds
    STALE_REPLICA = "stale_replica"  # dfs: the replica is older than the version asked for
    STALE_VERSION = "stale_version"
    STALE_COPY = "stale_copy"
    VERSION_AHEAD = "version_ahead"
    VERSION_NOT_OWNED = "version_not_owned"
    MISSING_BYTES = "missing_bytes"  # dfs: the replica has fewer bytes than its pipeline agreed on
    OUT_OF_ORDER = "out_of_order"
    SEALED = "sealed"  # dfs: the chunk is sealed at its length
    NO_COPY = "no_copy"


class AccessReason(StrEnum):
    """Why a credential or a call was refused (UnauthenticatedError and PermissionDeniedError)."""

    # UnauthenticatedError: the credential is absent, unreadable, not genuine or not current.
    MISSING = "missing"  # nothing was presented
    TRUNCATED = "truncated"  # the encoding ends early
    MALFORMED = "malformed"  # undecodable, over a size bound, or a field out of range
    BAD_SIGNATURE = "bad_signature"  # forged or altered
    UNTRUSTED_ISSUER = "untrusted_issuer"  # the chain does not start at the cluster authority
    BROKEN_CHAIN = "broken_chain"  # a link is not issued by the previous link's holder
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    REVOKED_ID = "revoked_id"  # a capability of the chain is on the revocation list
    REVOKED_HOLDER = "revoked_holder"  # a principal of the chain (or the peer) is on the revocation list
    WRONG_AUDIENCE = "wrong_audience"  # a token minted for another receiver
    REPLAYED = "replayed"  # a token nonce seen before
    ISSUED_BEFORE_START = "issued_before_start"  # a token older than this receiver's replay memory
    BAD_CERTIFICATE = "bad_certificate"  # a TLS peer certificate without a valid feitian principal
    NOT_A_SERVICE = "not_a_service"  # a server whose certificate is not a service's
    UNEXPECTED_PEER = "unexpected_peer"  # a genuine service, but not the one the client asked for
    TLS_REQUIRED = "tls_required"  # a plaintext connection to a server that needs TLS
    TLS_HANDSHAKE = "tls_handshake"  # the TLS handshake failed
    # PermissionDeniedError: the credential is genuine but does not allow this.
    WIDENED_DELEGATION = "widened_delegation"  # a link claims more than its parent holds
    WRONG_HOLDER = "wrong_holder"  # presented by a principal that is not its holder
    NOT_GRANTED = "not_granted"  # no presented capability (or policy entry) covers the request
    PROXY_DISABLED = "proxy_disabled"  # rpc: this proxy does not forward
    MISSING_RIGHT = "missing_right"  # dfs: a chunk token without the right for the operation
    WRONG_CHUNK = "wrong_chunk"  # dfs: a chunk token for another chunk
    WRONG_PATH = "wrong_path"  # dfs: the file or chunk is not at the path named
    WRONG_SERVER = "wrong_server"  # dfs: a chunk token for another chunkserver


class UnavailableReason(StrEnum):
    DISK_FULL = "disk_full"  # ENOSPC/EDQUOT: free space, then retry
    READ_ONLY = "read_only"  # the file system is read-only
    IO_ERROR = "io_error"  # EIO
    OS_ERROR = "os_error"  # another OS error
    NO_LEADER = "no_leader"  # no replica answered as leader
    UNREACHABLE = "unreachable"  # no replica could be reached
    LEADER_STARTING = "leader_starting"  # a new leader has not finished taking over
    LOG_NOT_WRITABLE = "log_not_writable"  # NotLeaderError: the leader's log cannot be written
    NO_SERVERS = "no_servers"  # dfs: not enough chunkservers to place a chunk
    NO_SURVIVOR = "no_survivor"  # dfs: no replica of the chunk survives
    NO_CHUNK_CAPABILITY = "no_chunk_capability"  # dfs: the master cannot mint chunk tokens
    REVOCATIONS_STALE = "revocations_stale"  # security: the revocation list is too old to trust
    REPLAY_CACHE_FULL = "replay_cache_full"  # OverloadedError: the token replay memory is full


class DataCorruptionReason(StrEnum):
    IO_ERROR = "io_error"  # a read failed with EIO: the medium is damaged


class FeitianError(Exception):
    """Root of every feitian error.

    ``message`` names the operation, the object and the mismatch. ``hint`` (optional) tells a human what to do.
    ``fields`` carries structured data (for example ``leader_hint`` of :class:`NotLeaderError`).
    """

    code: ClassVar[str] = "error"
    exit_code: ClassVar[int] = EXIT_ERROR
    http_status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False
    Reason: ClassVar[type[StrEnum] | None] = None  # the declared values of the ``reason`` field
    peer_code: str | None = None  # set on an error decoded from a code this side does not know

    def __init__(self, message: str, *, hint: str | None = None, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        reasons = type(self).Reason
        reason = fields.get("reason")
        if reasons is not None and isinstance(reason, str) and not isinstance(reason, reasons):
            # A declared reason read from the wire becomes its member again; a newer peer's stays a string.
            with contextlib.suppress(ValueError):
                fields["reason"] = reasons(reason)
        self.fields: dict[str, Any] = fields

    @property
    def wire_code(self) -> str:
        """The code this error travels under: its class's, or the unknown code it was decoded from."""
        return self.peer_code or self.code

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        code = cls.__dict__.get("code")
        if code is None:
            raise TypeError(f"{cls.__name__} must define a wire code")
        if code in _REGISTRY and _REGISTRY[code] is not cls:
            raise TypeError(f"wire code {code!r} of {cls.__name__} is already used by {_REGISTRY[code].__name__}")
        _REGISTRY[code] = cls

    def __getattr__(self, name: str) -> Any:
        # Structured fields read as attributes: err.leader_hint. Only called when normal lookup fails.
        fields = self.__dict__.get("fields")
        if fields is not None and name in fields:
            return fields[name]
        raise AttributeError(name)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.wire_code, self.message, self.hint, self.fields, self.retryable))

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.fields.items())
        return f"{type(self).__name__}({self.message!r}{extra})"


def _rebuild(
    code: str, message: str, hint: str | None, fields: dict[str, Any], retryable: bool | None = None
) -> FeitianError:
    return error_from_wire(code, message, hint=hint, fields=fields, retryable=retryable)


_REGISTRY[FeitianError.code] = FeitianError


def error_class_for_code(code: str) -> type[FeitianError]:
    """The class registered for a wire code; unknown codes (a newer peer) map to :class:`FeitianError`."""
    return _REGISTRY.get(code, FeitianError)


def error_from_wire(
    code: str,
    message: str,
    *,
    hint: str | None = None,
    fields: dict[str, Any] | None = None,
    retryable: bool | None = None,
) -> FeitianError:
    """The error a wire form describes. A known code gives its class (fields it does not take: an
    :class:`InternalError` naming the code). An unknown code (a newer peer) gives :class:`UnavailableError` when
    ``retryable`` says it may be retried, else :class:`FeitianError`; either keeps the code as ``wire_code``."""
    fields = dict(fields or {})
    klass = _REGISTRY.get(code)
    if klass is None:
        error = (UnavailableError if retryable else FeitianError)(message, hint=hint, **fields)
        error.peer_code = code
        return error
    try:
        return klass(message, hint=hint, **fields)
    except TypeError:  # fields the local class does not accept (a peer of another version)
        return InternalError(f"{code}: {message}", hint=hint)


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, FeitianError):
        return exc.exit_code
    return EXIT_ERROR


class InvalidArgumentError(FeitianError):
    """The caller passed something invalid. Never retried."""

    code = "invalid_argument"
    exit_code = EXIT_USAGE
    http_status = 400


class ConfigError(InvalidArgumentError):
    """A configuration is invalid. ``problems`` lists every problem found, not only the first."""

    code = "config"

    def __init__(self, message: str, *, problems: list[str] | None = None, **fields: Any) -> None:
        problems = list(problems or [])
        if problems:
            message = message + ":\n  " + "\n  ".join(problems)
        super().__init__(message, problems=problems, **fields)


class MessageTooLargeError(InvalidArgumentError):
    """A message exceeded a named bound (``limit`` and ``size`` in bytes)."""

    code = "message_too_large"
    http_status = 413


class NotFoundError(FeitianError):
    code = "not_found"
    exit_code = EXIT_NOT_FOUND
    http_status = 404
    Reason = NotFoundReason


class AlreadyExistsError(FeitianError):
    code = "already_exists"
    exit_code = EXIT_CONFLICT
    http_status = 409
    Reason = AlreadyExistsReason


class ConflictError(FeitianError):
    """A condition did not hold: version mismatch, non-empty directory, ..."""

    code = "conflict"
    exit_code = EXIT_CONFLICT
    http_status = 409
    Reason = ConflictReason


class PermissionDeniedError(FeitianError):
    code = "permission_denied"
    exit_code = EXIT_PERMISSION
    http_status = 403
    Reason = AccessReason


class UnauthenticatedError(FeitianError):
    code = "unauthenticated"
    exit_code = EXIT_PERMISSION
    http_status = 401
    Reason = AccessReason


class UnavailableError(FeitianError):
    """The service cannot answer now; retrying later (or elsewhere) may succeed."""

    code = "unavailable"
    exit_code = EXIT_UNAVAILABLE
    http_status = 503
    Reason = UnavailableReason
    retryable = True


class NotLeaderError(UnavailableError):
    """This replica is not the leader. ``leader_hint`` names the leader if known."""

    code = "not_leader"


class ConnectionLostError(UnavailableError):
    """The connection broke; a call in flight may or may not have executed."""

    code = "connection_lost"


class OverloadedError(UnavailableError):
    """A bounded queue is full; the request was refused without being executed."""

    code = "overloaded"


class DeadlineExceededError(FeitianError):
    code = "deadline_exceeded"
    exit_code = EXIT_DEADLINE
    http_status = 504


class CallCancelledError(FeitianError):
    """The call was cancelled by its caller (the reply a server sends for a cancelled call)."""

    code = "cancelled"
    http_status = 499  # nginx's 'client closed request'


class SessionExpiredError(FeitianError):
    """The session is gone with its ephemeral nodes and locks: re-establish it, do not retry."""

    code = "session_expired"
    http_status = 410


class DataCorruptionError(FeitianError):
    """Stored or transferred data failed its checksum. Never repaired silently."""

    code = "data_corruption"
    Reason = DataCorruptionReason


class ProtocolError(FeitianError):
    """A peer sent something that breaks the wire protocol."""

    code = "protocol"


class InternalError(FeitianError):
    """An invariant broke: this is a bug."""

    code = "internal"


class LogCompactedError(NotFoundError):
    """The requested log entries were compacted into a snapshot (``feitian.consensus``)."""

    code = "log_compacted"


class LogUnavailableError(NotFoundError):
    """The requested log entries are beyond the end of the log (``feitian.consensus``)."""

    code = "log_unavailable"
