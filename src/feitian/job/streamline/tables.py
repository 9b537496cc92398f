"""CSV and Parquet in and out, as Arrow tables (pyarrow's readers and writers: column-wise, in C++).

A CSV split is a text split (:func:`~.text.read_split`: whole lines, Hadoop's boundaries) parsed with the
column names given, the header line skipped by the split that starts at 0. A Parquet file splits by row
groups: :func:`parquet_row_groups` says how many there are, :func:`read_parquet` reads some of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from feitian.job.streamline.text import ReadAt, read_split

__all__ = ["parquet_row_groups", "read_csv", "read_csv_split", "read_parquet", "write_csv", "write_parquet"]


def read_csv(data: bytes, column_names: Sequence[str] | None = None, *, header: bool = True) -> pa.Table:
    """Parse CSV ``data``; with ``column_names`` the first line is a header only if ``header``."""
    read = pacsv.ReadOptions(
        column_names=list(column_names) if column_names is not None else None,
        skip_rows=1 if header and column_names is not None else 0,
        autogenerate_column_names=False,
    )
    return pacsv.read_csv(pa.py_buffer(data), read_options=read)


def read_csv_split(
    read_at: ReadAt, size: int, start: int, length: int, column_names: Sequence[str], *, header: bool = True
) -> pa.Table:
    """The rows of one split of a CSV file (the split starting at 0 skips the header if ``header``)."""
    data = read_split(read_at, size, start, length)
    return read_csv(data, column_names, header=header and start == 0)


def write_csv(table: pa.Table | pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def write_parquet(table: pa.Table | pa.RecordBatch, *, row_group_rows: int = 1 << 20) -> bytes:
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=row_group_rows)
    return bytes(sink.getvalue().to_pybytes())


def parquet_row_groups(data: bytes) -> int:
    return int(pq.ParquetFile(pa.py_buffer(data)).num_row_groups)


def read_parquet(
    data: bytes, row_groups: Sequence[int] | None = None, columns: Sequence[str] | None = None
) -> pa.Table:
    """A Parquet file's rows (only ``row_groups`` if given: one split per row group)."""
    f = pq.ParquetFile(pa.py_buffer(data))
    cols = list(columns) if columns is not None else None
    if row_groups is None:
        return f.read(columns=cols)
    return f.read_row_groups(list(row_groups), columns=cols)
