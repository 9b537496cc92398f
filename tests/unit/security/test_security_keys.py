"""Key files: created 0600 atomically, loose permissions refused with a clear error."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from feitian.errors import AlreadyExistsError, ConfigError, InvalidArgumentError, NotFoundError
from feitian.security import (
    KeyPair,
    PublicKey,
    create_identity_files,
    load_private_key,
    load_public_key,
    principal_id_for,
    save_private_key,
)
from feitian.security.core.identity import verify_signature


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_create_identity_files(tmp_path: Path) -> None:
    key, private_path, public_path = create_identity_files(tmp_path, "alice")
    assert mode(private_path) == 0o600
    assert private_path.read_text().startswith(f"# feitian private key: alice ({key.principal_id})\n")
    loaded = load_private_key(private_path)
    assert (loaded.name, loaded.public_key) == ("alice", key.public_key)
    public = load_public_key(public_path)
    assert public == key.public() and public.principal_id == key.principal_id
    assert verify_signature(public.key, loaded.sign(b"hello"), b"hello")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_mode_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = save_private_key(tmp_path / "k.key", KeyPair.generate("k"))
    finally:
        os.umask(old)
    assert mode(path) == 0o600


@pytest.mark.parametrize("loose", [0o644, 0o640, 0o604, 0o620, 0o660])
def test_loose_permissions_are_refused(tmp_path: Path, loose: int) -> None:
    path = save_private_key(tmp_path / "alice.key", KeyPair.generate("alice"))
    path.chmod(loose)
    with pytest.raises(ConfigError) as info:
        load_private_key(path)
    text = str(info.value)
    assert str(path) in text and f"{loose:04o}" in text and "group or others" in text
    assert info.value.hint == f"chmod 600 {path}"
    path.chmod(0o600)
    load_private_key(path)
    path.chmod(0o400)
    load_private_key(path)


def test_never_overwrites(tmp_path: Path) -> None:
    path = save_private_key(tmp_path / "a.key", KeyPair.generate("a"))
    before = path.read_bytes()
    with pytest.raises(AlreadyExistsError):
        save_private_key(path, KeyPair.generate("b"))
    assert path.read_bytes() == before
    with pytest.raises(AlreadyExistsError):
        create_identity_files(tmp_path, "a")


def test_bad_key_files(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_private_key(tmp_path / "missing.key")
    garbage = tmp_path / "garbage.key"
    garbage.write_text("hello")
    garbage.chmod(0o600)
    with pytest.raises(ConfigError, match="not a PEM"):
        load_private_key(garbage)
    ec_key = tmp_path / "ec.key"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    ec_key.chmod(0o600)
    with pytest.raises(ConfigError, match="not an Ed25519"):
        load_private_key(ec_key)
    with pytest.raises(ConfigError, match="not a regular file"):
        (tmp_path / "dir.key").mkdir(mode=0o700)
        load_private_key(tmp_path / "dir.key")


def test_public_key_text() -> None:
    key = KeyPair.from_seed(b"\x01" * 32, "svc-1")
    assert PublicKey.from_text(key.public().to_text()) == key.public()
    for bad in ("", "ssh-ed25519 AAAA svc", "feitian-ed25519 !!! svc", "feitian-ed25519 AAAA svc"):
        with pytest.raises(InvalidArgumentError):
            PublicKey.from_text(bad)


def test_principal_ids_and_names() -> None:
    key = KeyPair.from_seed(b"\x01" * 32, "a")
    assert key.principal_id == principal_id_for(key.public_key)
    assert len(key.principal_id) == 26 and key.principal_id.isalnum() and key.principal_id.islower()
    assert KeyPair.from_seed(b"\x02" * 32, "a").principal_id != key.principal_id
    for bad in ("", "-x", "a b", "x" * 65, "é"):
        with pytest.raises(InvalidArgumentError):
            KeyPair.generate(bad)
    assert "PRIVATE" not in repr(key)
