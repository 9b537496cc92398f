"""The one exception tree of feitian.

Every error raised by feitian code is a :class:`FeitianError`. Each concrete class has a stable wire ``code``
(a short string that never changes once released) so that an error raised in a server arrives at the caller as
the same class with the same fields, and a CLI ``exit_code``.

Fields are keyword arguments stored in ``fields``; they must be plain data (str, int, float, bool, None, lists
and dicts of those) because they travel on the wire.

    FeitianError
    ├── InvalidArgumentError        caller bug, never retried
    │   ├── ConfigError             lists every problem at once
    │   └── MessageTooLargeError    a message over a named bound
    ├── NotFoundError
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

from typing import Any, ClassVar

__all__ = [
    "AlreadyExistsError",
    "CallCancelledError",
    "ConfigError",
    "ConflictError",
    "ConnectionLostError",
    "DataCorruptionError",
    "DeadlineExceededError",
    "FeitianError",
    "InternalError",
    "InvalidArgumentError",
    "MessageTooLargeError",
    "NotFoundError",
    "NotLeaderError",
    "OverloadedError",
    "PermissionDeniedError",
    "ProtocolError",
    "SessionExpiredError",
    "UnauthenticatedError",
    "UnavailableError",
    "error_class_for_code",
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


class FeitianError(Exception):
    """Root of every feitian error.

    ``message`` names the operation, the object and the mismatch. ``hint`` (optional) tells a human what to do.
    ``fields`` carries structured data (for example ``leader_hint`` of :class:`NotLeaderError`).
    """

    code: ClassVar[str] = "error"
    exit_code: ClassVar[int] = EXIT_ERROR
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, hint: str | None = None, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.fields: dict[str, Any] = fields

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
        return (_rebuild, (self.code, self.message, self.hint, self.fields))

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.fields.items())
        return f"{type(self).__name__}({self.message!r}{extra})"


def _rebuild(code: str, message: str, hint: str | None, fields: dict[str, Any]) -> FeitianError:
    return error_class_for_code(code)(message, hint=hint, **fields)


_REGISTRY[FeitianError.code] = FeitianError


def error_class_for_code(code: str) -> type[FeitianError]:
    """The class registered for a wire code; unknown codes (a newer peer) map to :class:`FeitianError`."""
    return _REGISTRY.get(code, FeitianError)


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, FeitianError):
        return exc.exit_code
    return EXIT_ERROR


class InvalidArgumentError(FeitianError):
    """The caller passed something invalid. Never retried."""

    code = "invalid_argument"
    exit_code = EXIT_USAGE


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


class NotFoundError(FeitianError):
    code = "not_found"
    exit_code = EXIT_NOT_FOUND


class AlreadyExistsError(FeitianError):
    code = "already_exists"
    exit_code = EXIT_CONFLICT


class ConflictError(FeitianError):
    """A condition did not hold: version mismatch, non-empty directory, ..."""

    code = "conflict"
    exit_code = EXIT_CONFLICT


class PermissionDeniedError(FeitianError):
    code = "permission_denied"
    exit_code = EXIT_PERMISSION


class UnauthenticatedError(FeitianError):
    code = "unauthenticated"
    exit_code = EXIT_PERMISSION


class UnavailableError(FeitianError):
    """The service cannot answer now; retrying later (or elsewhere) may succeed."""

    code = "unavailable"
    exit_code = EXIT_UNAVAILABLE
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


class CallCancelledError(FeitianError):
    """The call was cancelled by its caller (the reply a server sends for a cancelled call)."""

    code = "cancelled"


class SessionExpiredError(FeitianError):
    """The session is gone with its ephemeral nodes and locks: re-establish it, do not retry."""

    code = "session_expired"


class DataCorruptionError(FeitianError):
    """Stored or transferred data failed its checksum. Never repaired silently."""

    code = "data_corruption"


class ProtocolError(FeitianError):
    """A peer sent something that breaks the wire protocol."""

    code = "protocol"


class InternalError(FeitianError):
    """An invariant broke: this is a bug."""

    code = "internal"
