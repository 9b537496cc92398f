"""Commands of the coordination log: typed, tagged msgspec structs (a union decoded by its ``cmd`` tag).

Node writes (:class:`CreateNode`, :class:`SetNode`, :class:`DeleteNode`, :class:`Transaction`) and the client's
session commands (:class:`CreateSession`, :class:`CloseSession`) carry a header: the ``principal`` the service
authenticated, and ``client_id`` + ``request_seq`` that make a retried write return its first result instead of
applying twice. ``session_id`` (0: none) ties the write to a session: ephemeral creates belong to it, the
session must be alive and owned by ``principal``, and the client's remembered results are forgotten with it.

:class:`ExpireSessions` and :class:`StartLeaderTerm` are proposed by the leader itself (see ``tracker``).

``validate_command`` checks everything that does not depend on the state (paths, sizes, counts); the state
machine runs it again on apply, so the service may call it first to refuse a bad request without a log entry.
"""

from __future__ import annotations

from typing import Any

import msgspec

from feitian.coord.core.limits import CoordLimits
from feitian.coord.core.paths import is_directory, validate_path
from feitian.errors import FeitianError, InvalidArgumentError, MessageTooLargeError

__all__ = [
    "Batch",
    "CheckOp",
    "CloseSession",
    "Command",
    "CreateNode",
    "CreateOp",
    "CreateSession",
    "DeleteNode",
    "DeleteOp",
    "ExpireSessions",
    "Op",
    "SetNode",
    "SetOp",
    "StartLeaderTerm",
    "Transaction",
    "decode_command",
    "encode_command",
    "validate_command",
]

# -- operations (alone as commands, or inside a transaction) ----------------------------------------------------


class CreateOp(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag="create", tag_field="op"):
    """Create a file (``/a/b``) or a directory (``/a/b/``).

    ``sequential``: ``path`` is a prefix; the parent's next sequence number, 10 digits zero-padded, is appended
    to the name. ``ephemeral``: a file owned by the write's session, deleted with it. ``parents``: create missing
    ancestor directories (persistent) too.
    """

    path: str
    value: bytes = b""
    ephemeral: bool = False
    sequential: bool = False
    parents: bool = False


class SetOp(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag="set", tag_field="op"):
    """Replace a file's value; with ``expected_version`` only if the file is at that version."""

    path: str
    value: bytes
    expected_version: int | None = None


class DeleteOp(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag="delete", tag_field="op"):
    """Delete a file or an empty directory; with ``expected_version`` only if it is at that version."""

    path: str
    expected_version: int | None = None


class CheckOp(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag="check", tag_field="op"):
    """A transaction condition. ``exists=False``: the node must not exist (other fields unset). Otherwise it must
    exist and match every field given — ``create_revision`` is how a lock holder fences its writes."""

    path: str
    exists: bool = True
    version: int | None = None
    create_revision: int | None = None
    mod_revision: int | None = None


Op = CreateOp | SetOp | DeleteOp | CheckOp

# -- commands ---------------------------------------------------------------------------------------------------


class _Header(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    principal: str
    client_id: str = ""  # "" : not deduplicated
    request_seq: int = 0  # >= 1 when client_id is set; increases per write of that client
    session_id: int = 0


class CreateNode(_Header, frozen=True, kw_only=True, omit_defaults=True, tag="create", tag_field="cmd"):
    path: str
    value: bytes = b""
    ephemeral: bool = False
    sequential: bool = False
    parents: bool = False

    def op(self) -> CreateOp:
        return CreateOp(
            path=self.path,
            value=self.value,
            ephemeral=self.ephemeral,
            sequential=self.sequential,
            parents=self.parents,
        )


class SetNode(_Header, frozen=True, kw_only=True, omit_defaults=True, tag="set", tag_field="cmd"):
    path: str
    value: bytes
    expected_version: int | None = None

    def op(self) -> SetOp:
        return SetOp(path=self.path, value=self.value, expected_version=self.expected_version)


class DeleteNode(_Header, frozen=True, kw_only=True, omit_defaults=True, tag="delete", tag_field="cmd"):
    path: str
    expected_version: int | None = None

    def op(self) -> DeleteOp:
        return DeleteOp(path=self.path, expected_version=self.expected_version)


class Transaction(_Header, frozen=True, kw_only=True, omit_defaults=True, tag="txn", tag_field="cmd"):
    """Operations applied in order, all or nothing, at one revision. A failing check or operation aborts the
    whole transaction with that error (its ``op_index`` field says which)."""

    ops: tuple[Op, ...]


class CreateSession(_Header, frozen=True, kw_only=True, omit_defaults=True, tag="create_session", tag_field="cmd"):
    ttl_ms: int


class CloseSession(_Header, frozen=True, kw_only=True, omit_defaults=True, tag="close_session", tag_field="cmd"):
    """Close ``session_id`` (of the header): its ephemerals go at one revision. Closing a gone session is a no-op."""


class ExpireSessions(msgspec.Struct, frozen=True, kw_only=True, tag="expire_sessions", tag_field="cmd"):
    """Proposed by the leader's SessionTracker. Ignored when ``epoch`` is older than the leader epoch in force."""

    session_ids: tuple[int, ...]
    epoch: int


class StartLeaderTerm(msgspec.Struct, frozen=True, kw_only=True, tag="start_leader_term", tag_field="cmd"):
    """The first command of a new leader. Once it applies, every earlier entry has applied: the leader loads the
    sessions into its SessionTracker then (each gets a full TTL from that moment)."""

    epoch: int


WriteCommand = CreateNode | SetNode | DeleteNode | Transaction


class Batch(msgspec.Struct, frozen=True, kw_only=True, tag="batch", tag_field="cmd"):
    """Independent writes that travel in one log entry (a client's concurrent writes, sent as one request).

    Each applies on its own, in order, exactly as if it were an entry of its own: its own validation, its own
    deduplication, its own revision when it changes the tree, its own result or error. One failing never
    affects another; this is not a transaction."""

    commands: tuple[WriteCommand, ...]


Command = (
    CreateNode
    | SetNode
    | DeleteNode
    | Transaction
    | CreateSession
    | CloseSession
    | ExpireSessions
    | StartLeaderTerm
    | Batch
)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Command)


def encode_command(command: Command) -> bytes:
    return _encoder.encode(command)


def decode_command(data: bytes) -> Command:
    """Decode a log entry; :class:`InvalidArgumentError` if it is not a well-typed command."""
    try:
        command: Command = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidArgumentError(f"coord command: cannot decode {len(data)} bytes: {exc}") from None
    return command


# -- validation that needs no state -----------------------------------------------------------------------------


def validate_command(command: Command, limits: CoordLimits) -> None:
    """Raise an InvalidArgumentError (or MessageTooLargeError) naming the operation and the problem. For a
    :class:`Batch` only the batch's own bounds are checked here: each write is validated when it applies
    (``validate_command`` on it), so that a bad write fails alone."""
    if isinstance(command, Batch):
        validate_batch_bounds(len(command.commands), sum(write_bytes(c) for c in command.commands), limits)
        return
    if isinstance(command, ExpireSessions | StartLeaderTerm):
        if isinstance(command, ExpireSessions) and len(command.session_ids) > limits.max_expire_batch:
            raise InvalidArgumentError(
                f"expire sessions: {len(command.session_ids)} sessions exceed the batch of {limits.max_expire_batch}"
            )
        return
    _validate_header(command, limits)
    if isinstance(command, CreateSession):
        if command.session_id:
            raise InvalidArgumentError("create session: session_id must be 0")
        if not limits.min_session_ttl_ms <= command.ttl_ms <= limits.max_session_ttl_ms:
            raise InvalidArgumentError(
                f"create session: ttl_ms {command.ttl_ms} is outside "
                f"[{limits.min_session_ttl_ms}, {limits.max_session_ttl_ms}]",
                ttl_ms=command.ttl_ms,
            )
    elif isinstance(command, CloseSession):
        if command.session_id <= 0:
            raise InvalidArgumentError("close session: session_id must be >= 1")
    elif isinstance(command, Transaction):
        _validate_transaction(command, limits)
    else:
        validate_op(command.op(), command.session_id, limits)


def write_bytes(write: Any) -> int:
    """The size of the paths (characters) and values (bytes) a write carries: what bounds a batch. ``write`` is
    a write command or a client's write request (they name their fields alike)."""
    ops = getattr(write, "ops", None)
    if ops is not None:
        return sum(len(op.path) + len(getattr(op, "value", b"")) for op in ops)
    return len(write.path) + len(getattr(write, "value", b""))


def validate_batch_bounds(count: int, size: int, limits: CoordLimits) -> None:
    if count < 1:
        raise InvalidArgumentError("write batch: no writes")
    if count > limits.max_batch_writes:
        raise InvalidArgumentError(
            f"write batch: {count} writes exceed {limits.max_batch_writes}", limit=limits.max_batch_writes
        )
    if size > limits.max_batch_bytes:
        raise MessageTooLargeError(
            f"write batch: {size} bytes of paths and values exceed {limits.max_batch_bytes}",
            limit=limits.max_batch_bytes,
            size=size,
        )


def _validate_header(command: Any, limits: CoordLimits) -> None:
    name = _COMMAND_NAMES[type(command)]
    if len(command.principal.encode(errors="replace")) > limits.max_principal_bytes:
        raise InvalidArgumentError(f"{name}: principal longer than {limits.max_principal_bytes} bytes")
    if command.client_id:
        size = len(command.client_id.encode(errors="replace"))
        if size > limits.max_client_id_bytes or not command.client_id.isprintable():
            raise InvalidArgumentError(
                f"{name}: client_id must be 1..{limits.max_client_id_bytes} printable bytes, got {size}"
            )
        if command.request_seq < 1:
            raise InvalidArgumentError(f"{name}: request_seq must be >= 1 with a client_id")
    if command.session_id < 0:
        raise InvalidArgumentError(f"{name}: session_id must be >= 0")


def _validate_transaction(command: Transaction, limits: CoordLimits) -> None:
    if not command.ops:
        raise InvalidArgumentError("txn: no operations")
    if len(command.ops) > limits.max_txn_ops:
        raise InvalidArgumentError(
            f"txn: {len(command.ops)} operations exceed {limits.max_txn_ops}", limit=limits.max_txn_ops
        )
    size = sum(len(op.path.encode(errors="replace")) + len(getattr(op, "value", b"")) for op in command.ops)
    if size > limits.max_txn_bytes:
        raise MessageTooLargeError(
            f"txn: {size} bytes of paths and values exceed {limits.max_txn_bytes}",
            limit=limits.max_txn_bytes,
            size=size,
        )
    for index, op in enumerate(command.ops):
        try:
            validate_op(op, command.session_id, limits)
        except FeitianError as exc:
            raise in_transaction(exc, index) from None


def in_transaction(error: FeitianError, index: int) -> FeitianError:
    """The same error, its message prefixed with ``txn op N:`` and ``op_index`` among its fields."""
    fields = {k: v for k, v in error.fields.items() if k != "op_index"}
    return type(error)(f"txn op {index}: {error.message}", hint=error.hint, op_index=index, **fields)


def validate_op(op: Op, session_id: int, limits: CoordLimits) -> None:
    name = op_name(op)
    validate_path(name, op.path, limits, allow_root=isinstance(op, CheckOp))
    if isinstance(op, CreateOp | SetOp):
        if len(op.value) > limits.max_value_bytes:
            raise MessageTooLargeError(
                f"{name} {op.path}: value of {len(op.value)} bytes exceeds {limits.max_value_bytes} bytes",
                path=op.path,
                limit=limits.max_value_bytes,
                size=len(op.value),
            )
        if is_directory(op.path) and (op.value or isinstance(op, SetOp)):
            raise InvalidArgumentError(f"{name} {op.path}: a directory holds no value", path=op.path)
    if isinstance(op, CreateOp) and op.ephemeral:
        if is_directory(op.path):
            raise InvalidArgumentError(f"create {op.path}: a directory cannot be ephemeral", path=op.path)
        if not session_id:
            raise InvalidArgumentError(f"create {op.path}: an ephemeral node needs a session", path=op.path)
    if isinstance(op, SetOp | DeleteOp) and op.expected_version is not None and op.expected_version < 1:
        raise InvalidArgumentError(f"{name} {op.path}: expected_version must be >= 1", path=op.path)
    conditions = (op.version, op.create_revision, op.mod_revision) if isinstance(op, CheckOp) else ()
    if isinstance(op, CheckOp) and not op.exists and any(c is not None for c in conditions):
        raise InvalidArgumentError(f"check {op.path}: exists=False takes no version or revision", path=op.path)


def op_name(op: Op) -> str:
    return _OP_NAMES[type(op)]


_OP_NAMES: dict[type, str] = {CreateOp: "create", SetOp: "set", DeleteOp: "delete", CheckOp: "check"}
_COMMAND_NAMES: dict[type, str] = {
    CreateNode: "create",
    SetNode: "set",
    DeleteNode: "delete",
    Transaction: "txn",
    CreateSession: "create session",
    CloseSession: "close session",
    ExpireSessions: "expire sessions",
    StartLeaderTerm: "start leader term",
}
