"""The user's units of a job file turned into Fuxi's: sizes (``512MiB``) into bytes, cores into millicores, a
task's resources into the shape of one worker slot; and the rules for the names and paths a job file holds.

Each check returns a problem (a string) or ``None``, so :mod:`feitian.job.spec.check` can list every one.
"""

from __future__ import annotations

import re

from feitian.base.units import GiB, KiB, MiB
from feitian.job.spec.model import MAX_JOB_NAME_BYTES, MAX_PATH_BYTES, Resources
from feitian.sched.core import BUILTIN_RESOURCES, DEFAULT_LIMITS

__all__ = [
    "MAX_SPLIT_SIZE",
    "MIN_SPLIT_SIZE",
    "format_size",
    "parse_size",
    "path_problem",
    "shape_of",
]

TiB = 1 << 40
MIN_SPLIT_SIZE = 64 * KiB  # Pangu's checksum block
MAX_SPLIT_SIZE = 64 * GiB
_UNITS = {"": 1, "b": 1, "k": KiB, "kib": KiB, "m": MiB, "mib": MiB, "g": GiB, "gib": GiB, "t": TiB, "tib": TiB}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # job and task names: safe in paths, process names, metrics
GROUP = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # Fuxi's quota group names
_SEGMENT_BAD = re.compile(r"[\x00-\x1f\x7f]")
_GLOB = re.compile(r"[*?\[]")
_BOUNDS = {
    "memory": DEFAULT_LIMITS.max_memory_bytes,
    "disk": DEFAULT_LIMITS.max_disk_bytes,
}


def parse_size(value: str | int) -> int | str:
    """``512MiB``, ``1.5GiB``, ``4G``, ``1048576`` (binary units: K/M/G/T mean KiB/MiB/GiB/TiB) or an int ->
    bytes; a problem (str) when it is not a positive size."""
    if isinstance(value, int):
        return value if value > 0 else f"{value} is not a positive size"
    found = _SIZE.fullmatch(value)
    unit = _UNITS.get(found.group(2).lower()) if found else None
    if found is None or unit is None:
        return f"{value!r} is not a size (a number of bytes with an optional unit: 512MiB, 2GiB, 4G, 1048576)"
    try:
        size = int(float(found.group(1)) * unit)
    except OverflowError:  # more digits than a float holds
        return f"{value[:32]!r}...: far too large"
    return size if size > 0 else f"{value!r} is not a positive size"


def format_size(size: int) -> str:
    """Bytes as the largest binary unit that divides them (``536870912`` -> ``512MiB``), else bytes."""
    for unit, name in ((TiB, "TiB"), (GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB")):
        if size % unit == 0:
            return f"{size // unit}{name}"
    return str(size)


def name_problem(kind: str, name: str, max_bytes: int = MAX_JOB_NAME_BYTES) -> str | None:
    if not NAME.fullmatch(name):
        return f"{kind} name {name!r}: letters, digits, '.', '_' and '-' only, starting with a letter or a digit"
    if len(name.encode()) > max_bytes:
        return f"{kind} name {name[:32]!r}...: longer than {max_bytes} bytes"
    return None


def path_problem(path: str, *, glob: bool) -> str | None:
    """A Pangu path: absolute, ``/``-separated, no empty, ``.`` or ``..`` segments, no control characters
    (docs/dfs.md); with ``glob``, segments may hold ``*``, ``?`` and ``[...]`` (an input pattern), else not."""
    if len(path.encode()) > MAX_PATH_BYTES:
        return f"path of {len(path.encode())} bytes: longer than {MAX_PATH_BYTES}"
    if not path.startswith("/"):
        return f"{path!r} is not an absolute Pangu path (it must start with '/')"
    body = path[1:-1] if len(path) > 1 and path.endswith("/") else path[1:]
    if not body:
        return None if not glob else f"{path!r}: the root is a directory, not an input (name files or a glob)"
    for segment in body.split("/"):
        if not segment:
            return f"{path!r}: empty path segment ('//')"
        if segment in (".", ".."):
            return f"{path!r}: '.' and '..' are not allowed in a Pangu path"
        if _SEGMENT_BAD.search(segment):
            return f"{path!r}: segment {segment!r} has a control character"
        if not glob and _GLOB.search(segment):
            return f"{path!r}: '*', '?' and '[' are glob characters, not allowed here"
        if len(segment.encode()) > 255:
            return f"{path!r}: a segment is longer than 255 bytes (Pangu's max_name_bytes)"
    return None


def is_glob(path: str) -> bool:
    return bool(_GLOB.search(path))


def resource_problems(resources: Resources) -> list[tuple[str, str]]:
    """(field, problem) for every amount that is no valid amount or is above Fuxi's bound."""
    out: list[tuple[str, str]] = []
    if resources.cpu is not None:
        millicores = round(resources.cpu * 1000)
        if millicores < 1:
            out.append(("cpu", f"{resources.cpu} cores is less than one millicore (0.001)"))
        elif millicores > DEFAULT_LIMITS.max_cpu_millicores:
            out.append(("cpu", f"{resources.cpu} cores is above {DEFAULT_LIMITS.max_cpu_millicores // 1000}"))
    for name in ("memory", "disk"):
        value = getattr(resources, name)
        if value is None:
            continue
        size = parse_size(value)
        if isinstance(size, str):
            out.append((name, size))
        elif size > _BOUNDS[name]:
            out.append((name, f"{value!r} is above Fuxi's bound {format_size(_BOUNDS[name])}"))
    for name, amount in (resources.virtual or {}).items():
        if name in BUILTIN_RESOURCES:
            out.append((f"virtual.{name}", f"{name!r} is a built-in resource: give it as `{name}:` instead"))
        elif not name or any(ord(c) < 32 or ord(c) == 127 for c in name) or len(name.encode()) > 256:
            out.append((f"virtual.{name}", f"resource name {name!r}: 1..256 bytes, no control characters"))
        elif amount > DEFAULT_LIMITS.max_virtual_amount:
            out.append((f"virtual.{name}", f"{amount} is above Fuxi's bound {DEFAULT_LIMITS.max_virtual_amount}"))
    return out


def shape_of(resources: Resources) -> dict[str, int]:
    """The worker slot's shape in Fuxi's units (``cpu`` millicores, ``memory``/``disk`` bytes, ``net`` Mbit/s,
    virtual resources as counts) of resources without problems (see :func:`resource_problems`)."""
    shape: dict[str, int] = {}
    if resources.cpu is not None:
        shape["cpu"] = round(resources.cpu * 1000)
    for name in ("memory", "disk"):
        value = getattr(resources, name)
        if value is not None:
            size = parse_size(value)
            if isinstance(size, str):
                raise ValueError(f"{name}: {size}")
            shape[name] = size
    if resources.net is not None:
        shape["net"] = resources.net
    shape.update(resources.virtual or {})
    return shape


def describe_shape(shape: dict[str, int]) -> str:
    parts = []
    for name, amount in shape.items():
        if name == "cpu":
            parts.append(f"cpu {amount / 1000:g} cores")
        elif name in ("memory", "disk"):
            parts.append(f"{name} {format_size(amount)}")
        elif name == "net":
            parts.append(f"net {amount} Mbit/s")
        else:
            parts.append(f"{name} {amount}")
    return ", ".join(parts)
