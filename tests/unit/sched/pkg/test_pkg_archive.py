"""Packing is deterministic whatever the source form; every unsafe entry is refused, naming the problem; unpacking
checks the digest and the same rules, and leaves a read-only tree."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from feitian.errors import DataCorruptionError, InvalidArgumentError, NotFoundError
from feitian.sched.pkg.archive import PackageLimits, PackInfo, pack, unpack


def make_tree(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "lib" / "py").mkdir(parents=True)
    (root / "README").write_text("hello\n")
    (root / "bin" / "run").write_text("#!/bin/sh\necho run\n")
    (root / "bin" / "run").chmod(0o755)
    (root / "lib" / "py" / "m.py").write_text("X = 1\n")
    (root / "lib" / "readme").symlink_to("../README")
    return root


def packed(source: Path, limits: PackageLimits | None = None) -> tuple[PackInfo, bytes]:
    out = io.BytesIO()
    info = pack(source, out, limits)
    return info, out.getvalue()


def test_the_same_tree_packs_to_the_same_bytes_whatever_its_mtimes_and_permissions(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    first, blob = packed(tree)
    for path in tree.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000), follow_symlinks=False)
    (tree / "README").chmod(0o600)  # no execute bit either way: the same canonical mode
    second, blob2 = packed(tree)
    assert second == first and blob2 == blob
    assert first.files == 7 and first.unpacked_bytes == 6 + 19 + 6
    assert hashlib.sha256(gzip.decompress(blob)).hexdigest() == first.digest  # the digest is of the tar


def test_content_or_execute_bit_changes_the_digest(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    digest = packed(tree)[0].digest
    (tree / "README").chmod(0o755)
    assert packed(tree)[0].digest != digest
    (tree / "README").chmod(0o644)
    assert packed(tree)[0].digest == digest
    (tree / "README").write_text("hellO\n")
    assert packed(tree)[0].digest != digest


def test_a_tar_a_tgz_and_a_zip_of_the_tree_have_the_directory_s_digest(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    digest = packed(tree)[0].digest
    for mode, name in (("w", "p.tar"), ("w:gz", "p.tgz"), ("w:xz", "p.tar.xz")):
        with tarfile.open(tmp_path / name, mode) as tf:
            tf.add(tree, arcname=".")
        assert packed(tmp_path / name)[0].digest == digest, name
    with zipfile.ZipFile(tmp_path / "p.zip", "w") as zf:  # files only: the directories are implied
        for path in sorted(tree.rglob("*")):
            rel = path.relative_to(tree).as_posix()
            if path.is_symlink():
                info = zipfile.ZipInfo(rel)
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, os.readlink(path))
            elif path.is_file():
                info = zipfile.ZipInfo(rel)
                info.external_attr = (stat.S_IFREG | path.stat().st_mode & 0o777) << 16
                zf.writestr(info, path.read_bytes())
    assert packed(tmp_path / "p.zip")[0].digest == digest


def tar_with(tmp_path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> Path:
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(
    ("members", "problem"),
    [
        ([(member("/etc/passwd"), b"x")], "'/etc/passwd': absolute path"),
        ([(member("a/../../x"), b"x")], "'a/../../x': '..' in the path"),
        ([(member("l", tarfile.SYMTYPE, "/etc"), b"")], "symbolic link to an absolute path '/etc'"),
        ([(member("d/l", tarfile.SYMTYPE, "../../x"), b"")], "symbolic link '../../x' points outside the package"),
        ([(member("a", tarfile.SYMTYPE, "."), b""), (member("b", tarfile.SYMTYPE, "a/a/.."), b"")], "after the start"),
        ([(member("l", tarfile.SYMTYPE, "d"), b""), (member("l/x"), b"x")], "beneath the symbolic link 'l'"),
        ([(member("l/x"), b"x"), (member("l", tarfile.SYMTYPE, "d"), b"")], "other entries are beneath it"),
        ([(member("f"), b"x"), (member("f/x"), b"x")], "beneath 'f', which is not a directory"),
        ([(member("f"), b"x"), (member("./f"), b"y")], "'./f': appears twice"),
        ([(member("dev", tarfile.CHRTYPE), b"")], "'dev': a device file"),
        ([(member("p", tarfile.FIFOTYPE), b"")], "'p': a FIFO"),
        ([(member("h", tarfile.LNKTYPE, "nothere"), b"")], "hard link to 'nothere', which is not in the archive"),
    ],
)
def test_an_unsafe_entry_is_refused_naming_it(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]], problem: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=r"bad\.tar") as err:
        packed(tar_with(tmp_path, *members))
    assert problem in err.value.message


def test_bounds_are_enforced_with_their_names(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    with pytest.raises(InvalidArgumentError, match=r"more than 3 entries \(max_files\)"):
        packed(tree, PackageLimits(max_files=3))
    with pytest.raises(InvalidArgumentError, match=r"more than 10 bytes of files \(max_unpacked_bytes\)"):
        packed(tree, PackageLimits(max_unpacked_bytes=10))
    with pytest.raises(InvalidArgumentError, match=r"longer than 8 bytes \(max_path_bytes\)"):
        packed(tree, PackageLimits(max_path_bytes=8))
    # the sizes a tar's headers declare count before a byte is copied
    big = tar_with(tmp_path, (member("a"), b"x" * 100))
    with pytest.raises(InvalidArgumentError, match="max_unpacked_bytes"):
        packed(big, PackageLimits(max_unpacked_bytes=99))


def test_what_is_not_an_archive_is_said_so(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"this is not an archive at all\n" * 50)
    with pytest.raises(InvalidArgumentError, match=r"junk\.tgz'?: not an archive") as err:
        packed(junk)
    assert err.value.hint is not None and ".tar.gz" in err.value.hint
    empty = tmp_path / "empty.tar"
    empty.write_bytes(b"")
    with pytest.raises(InvalidArgumentError, match="not an archive"):
        packed(empty)
    with pytest.raises(NotFoundError, match="no such file or directory"):
        packed(tmp_path / "missing")
    damaged = tmp_path / "damaged.tgz"
    good = io.BytesIO()
    with tarfile.open(fileobj=good, mode="w:gz") as tf:
        info = member("a")
        info.size = 100_000
        tf.addfile(info, io.BytesIO(os.urandom(100_000)))
    damaged.write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    with pytest.raises(InvalidArgumentError, match="damaged"):
        packed(damaged)


def test_a_fifo_in_a_directory_is_refused(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    os.mkfifo(tree / "lib" / "pipe")
    with pytest.raises(InvalidArgumentError, match="'lib/pipe': a FIFO"):
        packed(tree)


def test_unpack_verifies_the_digest_and_leaves_a_read_only_tree(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "t")
    info, blob = packed(tree)
    (tmp_path / "blob").write_bytes(blob)
    out = tmp_path / "out"
    assert unpack(tmp_path / "blob", out, info.digest) == info.unpacked_bytes
    assert (out / "bin" / "run").read_text() == "#!/bin/sh\necho run\n"
    assert stat.S_IMODE((out / "bin" / "run").stat().st_mode) == 0o555
    assert stat.S_IMODE((out / "README").stat().st_mode) == 0o444
    assert stat.S_IMODE((out / "lib" / "py").stat().st_mode) == 0o555
    assert stat.S_IMODE(out.stat().st_mode) == 0o555
    assert os.readlink(out / "lib" / "readme") == "../README"
    with pytest.raises(DataCorruptionError, match=f"is not the expected {'0' * 64}"):
        unpack(tmp_path / "blob", tmp_path / "out2", "0" * 64)


def test_unpack_refuses_an_escaping_entry_even_with_its_right_digest(tmp_path: Path) -> None:
    """A blob replaced in Pangu by someone with a matching record: the rules hold before the digest is known."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = member("../escaped")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    (tmp_path / "blob").write_bytes(gzip.compress(raw.getvalue()))
    digest = hashlib.sha256(raw.getvalue()).hexdigest()
    with pytest.raises(DataCorruptionError, match=r"'\.\.' in the path"):
        unpack(tmp_path / "blob", tmp_path / "out", digest)
    assert not (tmp_path / "escaped").exists()
