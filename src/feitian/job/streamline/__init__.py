"""Streamline (FUXI-9): the library that moves records between a job's tasks. See docs/streamline.md."""

from feitian.job.streamline.blocks import KV_SCHEMA, BlockParser, decode_block, encode_block, is_kv, kv_batch
from feitian.job.streamline.config import StreamlineConfig
from feitian.job.streamline.keys import (
    hash_partition_ids,
    key_prefix,
    key_prefixes,
    range_partition_id,
    range_partition_ids,
    sort_indices,
    splitters_from_keys,
    stable_hash,
    stable_hashes,
)
from feitian.job.streamline.merge import Merger, merge_sorted, sort_batch
from feitian.job.streamline.reader import read_partition
from feitian.job.streamline.store import CommitResult, OutputIndex, OutputStore, PartitionEntry
from feitian.job.streamline.transfer import (
    MAX_PIECE_BYTES,
    FetchPartition,
    FetchReply,
    ProducerLocation,
    ShuffleClient,
    ShuffleService,
)
from feitian.job.streamline.writer import PartitionedWriter, Partitioning, WriterStats

__all__ = [
    "KV_SCHEMA",
    "MAX_PIECE_BYTES",
    "BlockParser",
    "CommitResult",
    "FetchPartition",
    "FetchReply",
    "Merger",
    "OutputIndex",
    "OutputStore",
    "PartitionEntry",
    "PartitionedWriter",
    "Partitioning",
    "ProducerLocation",
    "ShuffleClient",
    "ShuffleService",
    "StreamlineConfig",
    "WriterStats",
    "decode_block",
    "encode_block",
    "hash_partition_ids",
    "is_kv",
    "key_prefix",
    "key_prefixes",
    "kv_batch",
    "merge_sorted",
    "range_partition_id",
    "range_partition_ids",
    "read_partition",
    "sort_batch",
    "sort_indices",
    "splitters_from_keys",
    "stable_hash",
    "stable_hashes",
]
