"""Kafka's default partitioner hash, so keyed records land where the Java client puts them.

Written from the algorithm (MurmurHash2, 32-bit, seed ``0x9747b28c``) as
``org.apache.kafka.common.utils.Utils.murmur2`` applies it: 4-byte blocks
read little-endian, then the 1-3 byte tail, then the final avalanche.
"""

from __future__ import annotations

import struct

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
# Keys repeat (user ids, order ids), and hashing is a Python loop per 4
# bytes, so recent results are kept; the cache is dropped whole when full.
_CACHE_SIZE = 8192
_cache: dict[bytes, int] = {}


def murmur2(data: bytes) -> int:
    """The hash of ``data`` as an unsigned 32-bit int (Java's int, read unsigned)."""
    m = _M
    mask = _MASK
    length = len(data)
    h = (_SEED ^ length) & mask
    blocks = length >> 2
    for k in struct.unpack_from(f"<{blocks}I", data):
        k = (k * m) & mask
        k ^= k >> 24
        h = ((h * m) & mask) ^ ((k * m) & mask)
    tail = blocks << 2
    rest = length & 3
    if rest:
        if rest == 3:
            h ^= data[tail + 2] << 16
        if rest >= 2:
            h ^= data[tail + 1] << 8
        h ^= data[tail]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    return h ^ (h >> 15)


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key``: ``toPositive(murmur2) % n``."""
    h = _cache.get(key)
    if h is None:
        if len(_cache) >= _CACHE_SIZE:
            _cache.clear()
        h = _cache[key] = murmur2(key) & 0x7FFFFFFF
    return h % partitions
