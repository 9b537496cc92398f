"""Property: whatever was synced before a crash is recovered exactly; of the sync the crash cut, a prefix.

Random sequences of appends, syncs, releases, clean reopens and crashes. A crash is a torn sync: the buffered
batches are written, then the log is copied as a crash would leave it (only segments that existed before the
sync, or created by it, and the last one cut at a random point after what the previous sync made durable,
followed by nothing, preallocated zeros or garbage), and the test continues on the copy.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wal_test_support import crash_image, cut, segments

from feitian.runtime.wal import WAL, Preallocate
from feitian.runtime.wal_format import SEGMENT_HEADER_SIZE, Record

SEGMENT_SIZE = 4096
OPS = st.sampled_from(["append"] * 4 + ["sync"] * 3 + ["crash", "reopen", "release"])


def open_wal(directory: Path, preallocate: Preallocate) -> tuple[WAL, list[Record]]:
    wal, recovered = WAL.open(directory, segment_size_bytes=SEGMENT_SIZE, preallocate=preallocate)
    return wal, [Record(r.kind, r.data) for r in recovered]


def first_label(wal: WAL) -> int:
    return int(wal.segment_paths()[0].name[17:33], 16) if wal.segment_paths() else 1


@settings(
    max_examples=int(os.environ.get("FEITIAN_PROPERTY_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_synced_records_survive_any_crash(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        directory = root / "wal-0"
        preallocate = data.draw(st.sampled_from(Preallocate), label="preallocate")
        wal, _ = open_wal(directory, preallocate)
        synced: list[Record] = []  # what is durable, in order
        pending: list[Record] = []  # appended since the last sync
        base = 1  # ordinal of synced[0] (records before it were released)
        for step, op in enumerate(data.draw(st.lists(OPS, min_size=4, max_size=40), label="ops")):
            if op == "append":
                sizes = data.draw(st.lists(st.integers(0, 1500), min_size=1, max_size=8), label="sizes")
                batch = [Record(step % 5, (b"%d|" % step * n)[:n]) for n in sizes]
                wal.append(batch)
                pending += batch
            elif op == "sync":
                wal.sync()
                synced += pending
                pending = []
            elif op == "reopen":
                wal.close()
                wal, recovered = open_wal(directory, preallocate)
                synced += pending
                pending = []
                assert recovered == synced[first_label(wal) - base :]
            elif op == "release":
                upto = data.draw(st.integers(base, base + len(synced) + 1), label="release_before")
                wal.release_before(upto)
                label = first_label(wal)
                assert base <= label <= max(upto, base)
                del synced[: label - base]
                base = label
            else:  # crash in the middle of a sync
                before = {p.name: p.stat().st_size for p in segments(directory)}
                tail_before = wal.durable_tail()
                if tail_before is not None:
                    before[tail_before[0].name] = tail_before[1]
                torn = pending
                wal.sync()
                image = crash_image(directory, root / f"crash-{step}")
                wal.close()
                files = segments(image)
                if not files:  # nothing was ever written
                    directory = image
                    wal, recovered = open_wal(directory, preallocate)
                    assert recovered == [] and synced == []
                    continue
                keep = data.draw(st.integers(max(len(before) - 1, 0), len(files) - 1), label="last kept segment")
                for extra in files[keep + 1 :]:
                    extra.unlink()
                last = files[keep]
                low = before.get(last.name, SEGMENT_HEADER_SIZE)
                at = data.draw(st.integers(low, last.stat().st_size), label="cut at")
                tail = data.draw(st.sampled_from([b"", bytes(700), b"\xa5FTr" + b"\x17" * 60]), label="tail")
                cut(last, at, tail)
                directory = image
                wal, recovered = open_wal(directory, preallocate)
                durable = synced[first_label(wal) - base :] if segments(directory) else []
                assert recovered[: len(durable)] == durable
                assert recovered[len(durable) :] == torn[: len(recovered) - len(durable)]
                synced = durable + recovered[len(durable) :]
                pending = []
        wal.close()
        wal, recovered = open_wal(directory, preallocate)
        assert recovered == (synced + pending)[first_label(wal) - base :]
        wal.close()
