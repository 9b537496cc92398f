"""Keys, column-wise: a stable hash, the 8-byte big-endian prefix, the sort order, partition ids.

Every function here works on a whole column at once (a pyarrow array) with numpy/pyarrow kernels; none loops over
records in Python. Each vectorized function has a scalar twin (:func:`stable_hash`, :func:`key_prefix`) that is
the reference its tests compare against, and that a per-record caller may use.

The hash is stable across processes, machines and Python versions (Python's ``hash`` of bytes is salted per
process, so it cannot decide which partition a key goes to): a polynomial hash of the key's bytes modulo 2**64,
``h = sum(b[i] * P**(n-1-i))``, then the splitmix64 finalizer to spread it, then ``h % partitions``.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from feitian.errors import InvalidArgumentError

__all__ = [
    "binary_parts",
    "hash_partition_ids",
    "key_prefix",
    "key_prefixes",
    "range_partition_id",
    "range_partition_ids",
    "sort_indices",
    "splitters_from_keys",
    "stable_hash",
    "stable_hashes",
]

_P = 1_099_511_628_211  # the 64-bit FNV prime, as the polynomial's base
_MASK = (1 << 64) - 1
U64 = npt.NDArray[np.uint64]


def _mix(h: int) -> int:
    """splitmix64's finalizer (scalar)."""
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK
    return h ^ (h >> 31)


def stable_hash(key: bytes) -> int:
    """The stable 64-bit hash of one key (the reference for :func:`stable_hashes`)."""
    h = 0
    for b in key:
        h = (h * _P + b) & _MASK
    return _mix(h)


def _mix_np(h: U64) -> U64:
    with np.errstate(over="ignore"):
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))


def binary_parts(keys: pa.Array) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """(offsets as int64, relative to the first; the data bytes the keys span) of a binary array."""
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    if not (pa.types.is_binary(keys.type) or pa.types.is_large_binary(keys.type) or pa.types.is_string(keys.type)):
        raise TypeError(f"keys must be a binary column, got {keys.type}")
    n = len(keys)
    buffers = keys.buffers()
    wide = pa.types.is_large_binary(keys.type)
    offsets = np.frombuffer(buffers[1], dtype=np.int64 if wide else np.int32)[keys.offset : keys.offset + n + 1]
    offsets = offsets.astype(np.int64)
    data = (
        np.frombuffer(buffers[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
        if buffers[2] is not None and n
        else np.zeros(0, np.uint8)
    )
    return offsets - offsets[0] if n else np.zeros(1, np.int64), data


def stable_hashes(keys: pa.Array) -> U64:
    """:func:`stable_hash` of every key of a binary column, in O(total key bytes) numpy work."""
    offsets, data = binary_parts(keys)
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    out = np.zeros(n, dtype=np.uint64)
    if len(data):
        max_len = int(lengths.max())
        powers = np.ones(max_len, dtype=np.uint64)
        with np.errstate(over="ignore"):
            if max_len > 1:
                powers[1:] = np.cumprod(np.full(max_len - 1, _P, dtype=np.uint64))
            # byte i of key k has exponent (len_k - 1 - (i - start_k)) = end_k - 1 - i
            ends = np.repeat(offsets[1:], lengths)
            exponent = ends - 1 - np.arange(len(data), dtype=np.int64)
            contrib = data.astype(np.uint64) * powers[exponent]
            nonempty = lengths > 0
            out[nonempty] = np.add.reduceat(contrib, offsets[:-1][nonempty])
    return _mix_np(out)


def hash_partition_ids(keys: pa.Array, partitions: int) -> npt.NDArray[np.int64]:
    """The partition (``stable_hash(key) % partitions``) of every key."""
    if partitions < 1:
        raise InvalidArgumentError(f"partitions must be >= 1, got {partitions}")
    return (stable_hashes(keys) % np.uint64(partitions)).astype(np.int64)


def key_prefix(key: bytes) -> int:
    """The first 8 bytes of ``key`` as a big-endian integer, zero-padded (the reference of :func:`key_prefixes`)."""
    return int.from_bytes(key[:8].ljust(8, b"\0"), "big")


def key_prefixes(keys: pa.Array) -> U64:
    """:func:`key_prefix` of every key: ordering by it never contradicts the keys' byte order (a ≤ b implies
    prefix(a) ≤ prefix(b)), so range partitions on it keep a global order whatever the key lengths."""
    offsets, data = binary_parts(keys)
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    if n and len(data) and np.all(lengths == lengths[0]) and lengths[0] >= 8:
        # fixed-width keys of 8 bytes or more (terasort's 10): one strided view, no per-byte loop
        width = int(lengths[0])
        head = np.ascontiguousarray(data.reshape(n, width)[:, :8])
        return head.view(">u8").ravel().astype(np.uint64)
    out = np.zeros(n, dtype=np.uint64)
    starts = offsets[:-1]
    for j in range(8):  # eight column-wise steps, whatever the number of keys
        has = lengths > j
        byte = np.zeros(n, dtype=np.uint64)
        byte[has] = data[starts[has] + j]
        out |= byte << np.uint64(8 * (7 - j))
    return out


def splitters_from_keys(sample: Sequence[bytes], partitions: int) -> list[int]:
    """``partitions - 1`` prefix splitters from a sample of keys (evenly spaced order statistics)."""
    if partitions < 1:
        raise InvalidArgumentError(f"partitions must be >= 1, got {partitions}")
    prefixes = sorted(key_prefix(k) for k in sample)
    if not prefixes:
        return [0] * (partitions - 1)
    return [prefixes[(i * len(prefixes)) // partitions] for i in range(1, partitions)]


def range_partition_ids(keys: pa.Array, splitters: Sequence[int] | U64) -> npt.NDArray[np.int64]:
    """Partition of every key: the number of splitters ≤ its 8-byte prefix (``bisect_right``), so partition
    ``j`` holds prefixes in ``[splitters[j-1], splitters[j])``. ``splitters`` are ascending prefix integers."""
    s = np.asarray(splitters, dtype=np.uint64)
    if len(s) > 1 and np.any(s[1:] < s[:-1]):
        raise InvalidArgumentError("splitters must be ascending")
    return np.searchsorted(s, key_prefixes(keys), side="right").astype(np.int64)


def range_partition_id(key: bytes, splitters: Sequence[int]) -> int:
    """The reference of :func:`range_partition_ids` for one key."""
    return bisect.bisect_right(list(splitters), key_prefix(key))


def sort_indices(keys: pa.Array) -> npt.NDArray[np.int64]:
    """A stable order of the keys by their bytes (memcmp order, shorter first on a common prefix).

    Fixed-width keys of at most 16 bytes (terasort's 10) sort as big-endian integers with numpy: by the first 8
    bytes alone when no two keys share them, else both halves with ``lexsort``. Variable-length keys of at most 8
    bytes sort by (zero-padded prefix, length); longer ones by the prefix when no two share it; the rest through
    Arrow's sort kernel."""
    if not pa.types.is_binary(keys.type) and not pa.types.is_large_binary(keys.type):
        return np.asarray(pc.sort_indices(keys), dtype=np.int64)
    offsets, data = binary_parts(keys)
    n = len(offsets) - 1
    lengths = np.diff(offsets)
    if n > 1 and np.all(lengths == lengths[0]) and 0 < lengths[0] <= 16:
        width = int(lengths[0])
        padded = np.zeros((n, 16), dtype=np.uint8)
        padded[:, :width] = data.reshape(n, width)
        hi = padded[:, :8].copy().view(">u8").ravel().astype(np.uint64)
        order = np.argsort(hi, kind="stable")
        first = hi[order]
        if width <= 8 or not np.any(first[1:] == first[:-1]):
            return order.astype(np.int64)  # the first 8 bytes decide (no two keys share them): one sort
        lo = padded[:, 8:].copy().view(">u8").ravel()
        return np.lexsort((lo, hi)).astype(np.int64)
    if n > 1:
        prefix = key_prefixes(keys)
        if int(lengths.max()) <= 8:
            # zero-padded prefix, then length: two keys with equal padded prefixes are one key and that key
            # followed by zero bytes, and the shorter comes first
            return np.lexsort((lengths, prefix)).astype(np.int64)
        order = np.argsort(prefix, kind="stable")
        first = prefix[order]
        if not np.any(first[1:] == first[:-1]):
            return order.astype(np.int64)
    return np.asarray(pc.sort_indices(keys), dtype=np.int64)
