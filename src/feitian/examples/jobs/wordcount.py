"""Wordcount: the map splits lines into words, the reduce adds up each word's counts.

``map_words`` counts the words of its whole split before it emits them (a combiner in the map: one record per
distinct word, not per word); ``sum_counts`` reads its partition sorted by word (the pipe sorts), so each word's
counts arrive together.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Iterator


def map_words(records: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
    counts: Counter[bytes] = Counter()
    for _, line in records:
        counts.update(line.split())
    for word, n in counts.items():
        yield word, str(n).encode()


def sum_counts(records: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
    for word, group in itertools.groupby(records, key=lambda r: r[0]):
        yield word, str(sum(int(v) for _, v in group)).encode()
