"""Identity key pairs on disk (ZK-1): Ed25519 private keys that never leak through file permissions.

Files, as ``feitian key create NAME`` writes them:

* ``NAME.key`` -- the private key, PKCS#8 PEM, preceded by one ``# feitian private key: NAME (ID)`` line.
  Created with mode 0600 from the start (``O_CREAT | O_EXCL`` on a temporary name, then hard-linked into
  place, so it is never readable by others, never half-written, and never replaces an existing key).
  :func:`load_private_key` refuses a file that group or others may read or write.
* ``NAME.pub`` -- one line ``feitian-ed25519 <base64 raw key> NAME``, safe to share.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import os
import stat
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from feitian.errors import AlreadyExistsError, ConfigError, InvalidArgumentError, NotFoundError
from feitian.security.core.identity import (
    ED25519_PUBLIC_KEY_BYTES,
    principal_id_for,
    validate_name,
)

__all__ = [
    "KeyPair",
    "PublicKey",
    "create_identity_files",
    "load_private_key",
    "load_public_key",
    "new_nonce",
    "save_private_key",
    "save_public_key",
]

_PUBLIC_PREFIX = "feitian-ed25519"
_PRIVATE_COMMENT = "# feitian private key: "
_MAX_KEY_FILE_BYTES = 16 * 1024
NONCE_BYTES = 16


def new_nonce() -> bytes:
    """16 bytes from the OS's cryptographic random source, for :func:`~feitian.security.mint_token`."""
    return os.urandom(NONCE_BYTES)


class PublicKey(msgspec.Struct, frozen=True):
    """A principal's public half: its name and raw 32-byte Ed25519 key."""

    name: str
    key: bytes

    @property
    def principal_id(self) -> str:
        return principal_id_for(self.key)

    def to_text(self) -> str:
        return f"{_PUBLIC_PREFIX} {base64.b64encode(self.key).decode('ascii')} {self.name}\n"

    @classmethod
    def from_text(cls, text: str) -> PublicKey:
        parts = text.strip().split()
        try:
            if len(parts) != 3 or parts[0] != _PUBLIC_PREFIX:
                raise ValueError("expected 'feitian-ed25519 <base64 key> <name>'")
            key = base64.b64decode(parts[1], validate=True)
            if len(key) != ED25519_PUBLIC_KEY_BYTES:
                raise ValueError(f"key is {len(key)} bytes, expected {ED25519_PUBLIC_KEY_BYTES}")
            return cls(name=validate_name(parts[2]), key=key)
        except (ValueError, binascii.Error, InvalidArgumentError) as exc:
            raise InvalidArgumentError(f"public key: cannot parse ({exc})") from None


class KeyPair:
    """An Ed25519 private key with its principal name; satisfies :class:`~feitian.security.core.Signer`."""

    __slots__ = ("_private", "name", "public_key")

    def __init__(self, private_key: Ed25519PrivateKey, name: str) -> None:
        self._private = private_key
        self.name = validate_name(name)
        self.public_key = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls, name: str) -> KeyPair:
        return cls(Ed25519PrivateKey.generate(), name)

    @classmethod
    def from_seed(cls, seed: bytes, name: str) -> KeyPair:
        """A key pair from its 32-byte seed (the raw Ed25519 private key, :meth:`seed`): deterministic keys for
        tests and simulations, and an application's key handed from its submitter to its processes."""
        if len(seed) != 32:
            raise InvalidArgumentError(f"key seed must be 32 bytes, got {len(seed)}")
        return cls(Ed25519PrivateKey.from_private_bytes(seed), name)

    @property
    def principal_id(self) -> str:
        return principal_id_for(self.public_key)

    @property
    def private_key(self) -> Ed25519PrivateKey:
        """The ``cryptography`` key object (for certificate signing and TLS)."""
        return self._private

    def public(self) -> PublicKey:
        return PublicKey(name=self.name, key=self.public_key)

    def sign(self, data: bytes) -> bytes:
        return self._private.sign(data)

    def seed(self) -> bytes:
        """The raw 32-byte private key (:meth:`from_seed` makes the same key again): handle with care."""
        return self._private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    def private_pem(self) -> bytes:
        """PKCS#8 PEM of the private key, unencrypted: handle with care."""
        return self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def __repr__(self) -> str:
        return f"KeyPair(name={self.name!r}, principal_id={self.principal_id!r})"


def save_private_key(path: str | os.PathLike[str], key: KeyPair) -> Path:
    """Write ``key`` to a new file at ``path`` with mode 0600; AlreadyExistsError if ``path`` exists."""
    target = Path(path)
    content = f"{_PRIVATE_COMMENT}{key.name} ({key.principal_id})\n".encode() + key.private_pem()
    _write_new_file(target, content, 0o600)
    return target


def save_public_key(path: str | os.PathLike[str], public: PublicKey) -> Path:
    """Write a public key file (mode 0644); AlreadyExistsError if ``path`` exists."""
    target = Path(path)
    _write_new_file(target, public.to_text().encode(), 0o644)
    return target


def load_private_key(path: str | os.PathLike[str]) -> KeyPair:
    """Load a private key file, refusing one that group or others may access (ConfigError with a hint)."""
    source = Path(path)
    try:
        fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFoundError(f"load private key {source}: no such file") from None
    except PermissionError:
        raise ConfigError(f"load private key {source}", problems=[f"{source}: permission denied"]) from None
    try:
        st = os.fstat(fd)  # the file we opened, not whatever the path names by now
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"load private key {source}", problems=[f"{source} is not a regular file"])
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            problem = f"{source} has mode {mode:04o}; a private key must not be accessible by group or others"
            raise ConfigError(
                f"load private key {source}",
                problems=[problem],
                hint=f"chmod 600 {source}",
                path=str(source),
                mode=f"{mode:04o}",
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(_MAX_KEY_FILE_BYTES + 1)
    finally:
        os.close(fd)
    return _parse_private(source, data)


def _parse_private(source: Path, data: bytes) -> KeyPair:
    problem = None
    name = source.stem
    text = data.decode("utf-8", errors="replace")
    first = text.split("\n", 1)[0]
    if first.startswith(_PRIVATE_COMMENT):
        name = first[len(_PRIVATE_COMMENT) :].split(" ", 1)[0]
    begin = data.find(b"-----BEGIN")
    if len(data) > _MAX_KEY_FILE_BYTES or begin < 0:
        problem = "not a PEM private key"
    else:
        try:
            private = serialization.load_pem_private_key(data[begin:], password=None)
        except (ValueError, TypeError) as exc:
            problem = f"cannot parse the PEM private key ({exc})"
        else:
            if not isinstance(private, Ed25519PrivateKey):
                problem = f"an {type(private).__name__}, not an Ed25519 key"
            else:
                try:
                    return KeyPair(private, name)
                except InvalidArgumentError as exc:
                    problem = exc.message
    raise ConfigError(f"load private key {source}", problems=[f"{source}: {problem}"])


def load_public_key(path: str | os.PathLike[str]) -> PublicKey:
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8", errors="replace")[:_MAX_KEY_FILE_BYTES]
    except FileNotFoundError:
        raise NotFoundError(f"load public key {source}: no such file") from None
    try:
        return PublicKey.from_text(text)
    except InvalidArgumentError as exc:
        raise ConfigError(f"load public key {source}", problems=[exc.message]) from None


def create_identity_files(directory: str | os.PathLike[str], name: str) -> tuple[KeyPair, Path, Path]:
    """Generate a key pair and write ``NAME.key`` (0600) and ``NAME.pub`` in ``directory``.

    What ``feitian key create NAME`` does; returns the key and both paths. Refuses to overwrite either file.
    """
    key = KeyPair.generate(name)
    folder = Path(directory)
    private_path, public_path = folder / f"{key.name}.key", folder / f"{key.name}.pub"
    if public_path.exists():
        raise AlreadyExistsError(f"create identity {name}: {public_path} already exists")
    save_private_key(private_path, key)
    save_public_key(public_path, key.public())
    return key, private_path, public_path


def _write_new_file(target: Path, content: bytes, mode: int) -> None:
    """Create ``target`` with ``mode`` and ``content`` atomically, never replacing an existing file."""
    if target.exists():
        raise AlreadyExistsError(f"write {target}: file already exists")
    temp = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # exactly ``mode`` whatever the umask
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(temp, target)
        except FileExistsError:
            raise AlreadyExistsError(f"write {target}: file already exists") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            os.replace(temp, target)  # no hard links here; the existence check above stands in for O_EXCL
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
