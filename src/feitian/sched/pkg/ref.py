"""What names a package: ``NAME`` (its latest version) or ``NAME@VERSION``, and the record of one version."""

from __future__ import annotations

import re

import msgspec

from feitian.errors import InvalidArgumentError

__all__ = ["MAX_NAME_BYTES", "PackageRef", "parse_spec", "validate_digest", "validate_name"]

MAX_NAME_BYTES = 128
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_DIGEST = re.compile(r"[0-9a-f]{64}")
MAX_VERSION = 10**12


class PackageRef(msgspec.Struct, frozen=True, kw_only=True):
    """One version of a package, as stored in Nuwa: its content's digest (sha256 of the canonical tar, the
    blob's name in Pangu), the blob's size, the bytes of its files unpacked, its entries, and when it was
    uploaded (seconds since the epoch)."""

    name: str
    version: int
    digest: str
    size: int
    unpacked_bytes: int
    files: int
    created_s: float

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"


def validate_name(name: str) -> str:
    if not _NAME.fullmatch(name) or len(name.encode()) > MAX_NAME_BYTES:
        raise InvalidArgumentError(
            f"package name {name!r}: letters, digits, '.', '_' and '-' only, starting with a letter or digit, "
            f"at most {MAX_NAME_BYTES} bytes",
            hint="e.g. wordcount or my-app_2.1",
        )
    return name


def validate_version(version: int) -> int:
    if not 1 <= version <= MAX_VERSION:
        raise InvalidArgumentError(f"package version {version}: not between 1 and {MAX_VERSION}")
    return version


def parse_spec(spec: str) -> tuple[str, int | None]:
    """``NAME`` -> (NAME, None: the latest); ``NAME@VERSION`` -> (NAME, VERSION)."""
    name, at, version = spec.partition("@")
    validate_name(name)
    if not at:
        return name, None
    if not version.isdigit():
        raise InvalidArgumentError(
            f"package {spec!r}: the version after '@' is not a number", hint="NAME or NAME@VERSION, e.g. app@3"
        )
    return name, validate_version(int(version))


def validate_digest(digest: str) -> str:
    if not _DIGEST.fullmatch(digest):
        raise InvalidArgumentError(f"package digest {digest!r}: not 64 lowercase hex digits (a sha256)")
    return digest
