"""Streamline's bounds, one frozen value passed to writers, readers and the shuffle client (docs/streamline.md)."""

from __future__ import annotations

from dataclasses import dataclass

from feitian.base.units import KiB, MiB
from feitian.errors import ConfigError
from feitian.job.streamline.blocks import MAX_BLOCK_BYTES

__all__ = ["StreamlineConfig"]


@dataclass(frozen=True, slots=True)
class StreamlineConfig:
    """``memory_bytes``: records a writer buffers before it spills a run to disk, and what a reader's merge may
    hold (its fan-in is ``memory_bytes // (2 * block_bytes)``); ``block_bytes``: the target size of one framed
    block; ``fetch_piece_bytes``: the byte range one ``streamline.Fetch`` call asks for; ``fetch_parallelism``:
    producer instances a :class:`ShuffleClient` fetches from at once; ``fetch_timeout_s``: one fetch call's
    deadline; ``fetch_attempts``: tries of one piece at one location before moving on to the next location."""

    memory_bytes: int = 64 * MiB
    block_bytes: int = 1 * MiB
    fetch_piece_bytes: int = 1 * MiB
    fetch_parallelism: int = 4
    fetch_timeout_s: float = 30.0
    fetch_attempts: int = 2

    def problems(self) -> list[str]:
        out: list[str] = []
        if not 4 * KiB <= self.block_bytes <= MAX_BLOCK_BYTES:
            out.append(f"block_bytes must be in {4 * KiB}..{MAX_BLOCK_BYTES}, got {self.block_bytes}")
        if self.memory_bytes < 4 * self.block_bytes:
            out.append(f"memory_bytes must be at least 4 blocks ({4 * self.block_bytes}), got {self.memory_bytes}")
        if not 4 * KiB <= self.fetch_piece_bytes <= 64 * MiB:
            out.append(f"fetch_piece_bytes must be in {4 * KiB}..{64 * MiB}, got {self.fetch_piece_bytes}")
        if self.fetch_parallelism < 1:
            out.append(f"fetch_parallelism must be >= 1, got {self.fetch_parallelism}")
        if self.fetch_timeout_s <= 0:
            out.append(f"fetch_timeout_s must be > 0, got {self.fetch_timeout_s}")
        if self.fetch_attempts < 1:
            out.append(f"fetch_attempts must be >= 1, got {self.fetch_attempts}")
        return out

    def validate(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError("invalid streamline config", problems=problems)

    @property
    def merge_fan_in(self) -> int:
        """Sorted runs one merge pass reads at once (each holds about one block in memory)."""
        return max(2, self.memory_bytes // (2 * self.block_bytes))
