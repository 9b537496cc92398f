"""Running one attempt of one instance inside a TaskWorker: its records in, the task's code, its records out.

**Records.** A record is a ``(key, value)`` pair of bytes. A source instance reads its split's whole lines as
``(b"", line)`` (no newline); a consumer reads, pipe after pipe in the job's order, partition *i* of every producer
instance of each upstream pipe (merged by key when the pipe sorts). What the code gives back is partitioned for
each downstream pipe (streamline's writer: spills under its memory bound, commits with one rename, published in
Pangu by one atomic rename — a loser or a retry never duplicates output) and, when the task has an ``output``,
written as ``key<TAB>value`` lines (just ``value`` when the key is empty) to the instance's result file.

**Code.** ``function``: ``module:function`` called as ``function(records, **args)``, returning or yielding
records (keys and values may be bytes, str or numbers: they are written as bytes, numbers in decimal). From a
package, the package directory is on ``sys.path``. ``command``: an executable that reads records on stdin (one
``key<TAB>value`` line each, or ``value`` when the key is empty) and writes records on stdout the same way, like
Hadoop streaming. The user's code runs in a thread of the TaskWorker; its input is fed through a bounded queue, so
memory stays bounded whatever the size of the input (a source split is read whole: at most ``split_size``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from feitian.base.clock import Clock, MonotonicClock
from feitian.errors import InvalidArgumentError
from feitian.job.messages import AttemptDone, InputEdge, TaskRun
from feitian.job.streamline import (
    OutputStore,
    PanguOutput,
    PartitionedWriter,
    Partitioning,
    kv_batch,
    read_split,
    upload_file,
)

if TYPE_CHECKING:
    from feitian.dfs import DfsClient

__all__ = ["CHUNK_RECORDS", "AttemptCancelled", "AttemptContext", "run_attempt", "stream_number", "to_bytes"]

CHUNK_RECORDS = 8_192  # records handed between the reader, the code and the writers at a time
QUEUE_CHUNKS = 4  # chunks of input waiting for the code (the input's memory bound, with CHUNK_RECORDS)
STDERR_TAIL = 2_048
_END = object()


class AttemptCancelled(Exception):
    """The JobMaster cancelled the attempt (it lost the race, or the job ended)."""


@dataclass
class AttemptContext:
    """What every attempt of one TaskWorker shares."""

    dfs: DfsClient
    pangu: PanguOutput
    store: OutputStore
    scratch: Path
    package_dir: str = ""
    processed: dict[str, int] = field(default_factory=dict)  # attempt -> records read so far (progress)
    clock: Clock = field(default_factory=MonotonicClock)


def stream_number(epoch: int, attempt: int) -> int:
    """The attempt's number for streamline (one int, unique per instance over the job's epochs)."""
    return epoch << 16 | attempt


def to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgumentError(
            f"a record's key or value must be bytes, str or a number, got {type(value).__name__}",
            hint="return (key, value) pairs",
        )
    return str(value).encode()


def _load_function(ref: str, package_dir: str) -> Callable[..., Any]:
    module_name, _, attr = ref.partition(":")
    if package_dir and package_dir not in sys.path:
        sys.path.insert(0, package_dir)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidArgumentError(f"function {ref}: cannot import {module_name} ({exc})") from None
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise InvalidArgumentError(f"function {ref}: {module_name} has no {attr}")
    if not callable(target):
        raise InvalidArgumentError(f"function {ref}: not callable")
    return target  # type: ignore[no-any-return]


class _Input:
    """The records of one attempt, produced on the event loop, consumed by the code's thread."""

    def __init__(self, cancelled: threading.Event, progress: dict[str, int], key: str) -> None:
        self.q: queue.Queue[object] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self.cancelled = cancelled
        self.count = 0
        self.progress, self.key = progress, key  # records read so far, for the worker's progress reports

    async def put(self, chunk: object) -> None:
        """Hand ``chunk`` to the code's thread, waiting (in a thread of its own, not on the loop) while the queue
        is full; AttemptCancelled when the attempt is cancelled meanwhile."""
        await asyncio.to_thread(self._put, chunk)

    def _put(self, chunk: object) -> None:
        while not self.cancelled.is_set():
            try:
                self.q.put(chunk, timeout=0.1)
                return
            except queue.Full:
                continue
        raise AttemptCancelled()

    def records(self) -> Iterator[tuple[bytes, bytes]]:
        while True:
            if self.cancelled.is_set():
                raise AttemptCancelled()
            try:
                chunk = self.q.get(timeout=0.1)
            except queue.Empty:
                continue
            if chunk is _END:
                return
            if isinstance(chunk, BaseException):
                raise chunk
            assert isinstance(chunk, list)
            self.count += len(chunk)
            self.progress[self.key] = self.count
            yield from chunk


class _Outputs:
    """Where the code's records go: a writer per downstream pipe, and the result file."""

    def __init__(self, run: TaskRun, ctx: AttemptContext) -> None:
        ref = run.ref
        number = stream_number(ref.epoch, ref.attempt)
        self.writers = []
        for edge in run.outputs:
            if edge.mode == "hash":
                partitioning = Partitioning.hash(edge.partitions, sort=edge.sort)
            else:
                partitioning = Partitioning.single(sort=edge.sort)
            self.writers.append(PartitionedWriter(ctx.store, edge.output, ref.index, number, partitioning))
        self.result_path = ctx.scratch / f"result-{ref.task}-{ref.index}-{ref.epoch}.{ref.attempt}"
        self.result = open(self.result_path, "wb") if run.result is not None else None  # noqa: SIM115
        self.count = 0

    def write(self, records: Iterable[Any]) -> None:
        keys: list[bytes] = []
        values: list[bytes] = []
        for record in records:
            try:
                key, value = record
            except (TypeError, ValueError):
                raise InvalidArgumentError(
                    f"the code gave {type(record).__name__} {str(record)[:60]!r}, not a (key, value) pair"
                ) from None
            keys.append(to_bytes(key))
            values.append(to_bytes(value))
            if len(keys) >= CHUNK_RECORDS:
                self._flush(keys, values)
                keys, values = [], []
        if keys:
            self._flush(keys, values)

    def _flush(self, keys: list[bytes], values: list[bytes]) -> None:
        self.count += len(keys)
        if self.writers:
            batch = kv_batch(keys, values)
            for writer in self.writers:
                writer.write(batch)
        if self.result is not None:
            lines = (k + b"\t" + v + b"\n" if k else v + b"\n" for k, v in zip(keys, values, strict=True))
            self.result.write(b"".join(lines))

    def abort(self) -> None:
        for writer in self.writers:
            with contextlib.suppress(Exception):
                writer.abort()
        self.close_result()
        with contextlib.suppress(OSError):
            self.result_path.unlink()

    def close_result(self) -> None:
        if self.result is not None and not self.result.closed:
            self.result.close()


def _run_function(fn: Callable[..., Any], records: Iterator[tuple[bytes, bytes]], args: dict[str, Any]) -> Any:
    out = fn(records, **args)
    return () if out is None else out


def _run_command(
    argv: list[str], records: Iterator[tuple[bytes, bytes]], outputs: _Outputs, cwd: Path, package_dir: str
) -> None:
    env = dict(os.environ)
    if package_dir:
        env["PATH"] = f"{package_dir}/bin:{env.get('PATH', '')}"
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env
        )
    except OSError as exc:
        raise InvalidArgumentError(f"command {argv[0]}: cannot start ({exc.strerror})") from None
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    failure: list[BaseException] = []

    def feed() -> None:
        try:
            for key, value in records:
                proc.stdin.write(key + b"\t" + value + b"\n" if key else value + b"\n")  # type: ignore[union-attr]
        except BrokenPipeError:
            pass  # the command stopped reading: its exit status says why
        except BaseException as exc:
            failure.append(exc)
            proc.kill()
        finally:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # type: ignore[union-attr]

    stderr_tail: list[bytes] = []

    def drain_stderr() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            stderr_tail.append(line)
            if len(stderr_tail) > 20:
                del stderr_tail[0]

    threads = [threading.Thread(target=feed, daemon=True), threading.Thread(target=drain_stderr, daemon=True)]
    for t in threads:
        t.start()

    def lines() -> Iterator[tuple[bytes, bytes]]:
        for line in proc.stdout:  # type: ignore[union-attr]
            line = line.rstrip(b"\n")
            key, tab, value = line.partition(b"\t")
            yield (key, value) if tab else (b"", key)

    try:
        outputs.write(lines())
    finally:
        code = proc.wait()
        for t in threads:
            t.join(timeout=5)
    if failure:
        raise failure[0]
    if code != 0:
        tail = b"".join(stderr_tail)[-STDERR_TAIL:].decode(errors="replace").strip()
        raise InvalidArgumentError(f"command {argv[0]} exited {code}" + (f": {tail}" if tail else ""))


async def _split_records(run: TaskRun, ctx: AttemptContext, sink: _Input) -> None:
    split = run.split
    assert split is not None
    loop = asyncio.get_running_loop()
    size = (await ctx.dfs.stat(split.path)).length

    def read_at(offset: int, n: int) -> bytes:
        data: bytes = asyncio.run_coroutine_threadsafe(ctx.dfs.read(split.path, offset, n), loop).result()
        return data

    if split.length == 0:
        return
    data = await asyncio.to_thread(read_split, read_at, size, split.offset, split.length)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for start in range(0, len(lines), CHUNK_RECORDS):
        await sink.put([(b"", line) for line in lines[start : start + CHUNK_RECORDS]])


async def _edge_records(edge: InputEdge, ctx: AttemptContext) -> AsyncIterator[list[tuple[bytes, bytes]]]:
    async for batch in ctx.pangu.fetch(edge.output, edge.instances, edge.partition, sort=edge.sort):
        keys = batch.column("key").to_pylist()
        values = batch.column("value").to_pylist()
        for start in range(0, len(keys), CHUNK_RECORDS):
            yield list(zip(keys[start : start + CHUNK_RECORDS], values[start : start + CHUNK_RECORDS], strict=True))


async def _feed(run: TaskRun, ctx: AttemptContext, sink: _Input) -> None:
    try:
        if run.split is not None:
            await _split_records(run, ctx, sink)
        for edge in run.inputs:
            async for chunk in _edge_records(edge, ctx):
                await sink.put(chunk)
        await sink.put(_END)
    except AttemptCancelled:
        raise
    except BaseException as exc:
        with contextlib.suppress(AttemptCancelled):
            await sink.put(exc)
        raise


async def run_attempt(run: TaskRun, ctx: AttemptContext, cancelled: threading.Event) -> AttemptDone:
    """Run one attempt to its end: AttemptDone, or an exception (AttemptCancelled when cancelled)."""
    started = ctx.clock.monotonic_ns()
    code = run.code
    fn = None
    if code.function is not None:
        fn = _load_function(code.function, ctx.package_dir)
    elif code.command is None:
        raise InvalidArgumentError(f"task {run.ref.task}: operator {code.operator!r} is not run by TaskWorkers yet")
    key = str(run.ref)
    sink = _Input(cancelled, ctx.processed, key)
    outputs = _Outputs(run, ctx)
    feeder = asyncio.get_running_loop().create_task(_feed(run, ctx, sink))
    try:

        def body() -> None:
            records = sink.records()
            if fn is not None:
                outputs.write(_run_function(fn, records, dict(code.args or {})))
            else:
                assert code.command is not None
                _run_command(list(code.command), records, outputs, ctx.scratch, ctx.package_dir)
            for _ in records:  # the code stopped early: the rest of the input still counts as read
                pass

        await asyncio.to_thread(body)
        await feeder
        outputs.close_result()
        results = [await asyncio.to_thread(w.close) for w in outputs.writers]
        if cancelled.is_set():
            raise AttemptCancelled()
        for result in results:
            await ctx.pangu.publish(ctx.store, result)
        if run.result is not None:
            await ctx.dfs.mkdir(run.result.temp.rsplit("/", 1)[0] or "/", parents=True)
            await upload_file(ctx.dfs, outputs.result_path, run.result.temp, replication=run.result.replication)
    except BaseException:
        feeder.cancel()
        with contextlib.suppress(BaseException):
            await feeder
        outputs.abort()
        raise
    finally:
        ctx.processed.pop(key, None)
        with contextlib.suppress(OSError):
            outputs.result_path.unlink()
        for writer in outputs.writers:  # published in Pangu (or failed): the local copy is not needed
            shutil.rmtree(ctx.store.committed_dir(writer.output, run.ref.index), ignore_errors=True)
    output = msgspec.json.encode({"records": outputs.count})
    return AttemptDone(run.ref, sink.count, output, ctx.clock.monotonic_ns() - started)
