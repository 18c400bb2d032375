"""The caching-allocator model against the rules of c10/cuda/CUDACachingAllocator.cpp,
each expectation worked out by hand from the rule the test names."""

import pytest

from archcost.memory.cuda_allocator import (K_LARGE_BUFFER, K_MIN_BLOCK_SIZE, K_ROUND_LARGE, K_SMALL_BUFFER,
                                            CachingAllocator, allocation_size, replay, round_size)

KiB, MiB = 1 << 10, 1 << 20


def test_round_size_is_512_multiples():
    # kMinBlockSize: round_size returns at least 512, else the next multiple of 512.
    assert round_size(1) == 512
    assert round_size(512) == 512
    assert round_size(513) == 1024
    assert round_size(1000 * 4) == 8 * 512  # 4000 bytes -> 4096


def test_small_allocations_fill_one_2mib_segment():
    # Small pool: requests <= 1 MiB are packed into kSmallBuffer (2 MiB) segments and a
    # block is split while >= 512 bytes remain. 256 KiB each: 8 fill exactly one segment.
    a = CachingAllocator()
    for _ in range(2 * MiB // (256 * KiB)):
        a.malloc(256 * KiB)
    assert a.stats.segments == 1
    assert a.stats.reserved_bytes == K_SMALL_BUFFER
    assert a.stats.allocated_bytes == 2 * MiB
    a.malloc(256 * KiB)  # the ninth needs a second segment
    assert a.stats.segments == 2 and a.stats.reserved_bytes == 2 * K_SMALL_BUFFER


def test_small_requests_round_to_512():
    # 1000 small requests of 100 bytes: each becomes a 512-byte block (kMinBlockSize), and
    # 4096 of them fit one 2 MiB segment, so one segment holds them all.
    a = CachingAllocator()
    for _ in range(1000):
        a.malloc(100)
    assert a.stats.allocated_bytes == 1000 * K_MIN_BLOCK_SIZE
    assert a.stats.requested_bytes == 1000 * 100
    assert a.stats.reserved_bytes == K_SMALL_BUFFER


def test_5mib_takes_a_20mib_segment_and_a_second_splits_it():
    # Requests between 1 and 10 MiB (kMinLargeAlloc) get a kLargeBuffer (20 MiB) segment;
    # should_split (large pool): split when more than 1 MiB (kSmallSize) remains. The second
    # 5 MiB request is served best-fit from the 15 MiB remainder: no new segment.
    a = CachingAllocator()
    a.malloc(5 * MiB)
    assert a.stats.reserved_bytes == K_LARGE_BUFFER and a.stats.allocated_bytes == 5 * MiB
    a.malloc(5 * MiB)
    assert a.stats.segments == 1
    assert a.stats.reserved_bytes == 20 * MiB
    assert a.stats.allocated_bytes == 10 * MiB
    assert a.cached_free_bytes == 20 * MiB - 2 * 5 * MiB


def test_11mib_is_rounded_to_12mib():
    # From kMinLargeAlloc (10 MiB) a request gets its own segment rounded up to kRoundLarge
    # (2 MiB): 11 MiB -> 12 MiB. The 1 MiB left is not more than kSmallSize, so the block is
    # not split: memory_allocated counts the whole 12 MiB block.
    assert allocation_size(11 * MiB) == 6 * K_ROUND_LARGE
    a = CachingAllocator()
    a.malloc(11 * MiB)
    assert a.stats.reserved_bytes == 12 * MiB
    assert a.stats.allocated_bytes == 12 * MiB
    assert a.stats.requested_bytes == 11 * MiB


def test_freed_block_reused_best_fit():
    # get_free_block: the smallest cached block that is large enough (lower_bound on size).
    # Three segments of 12, 16 and 24 MiB freed; a 14 MiB request takes the 16 MiB one (the
    # 2 MiB left is more than 1 MiB: split), no new segment.
    a = CachingAllocator()
    blocks = [a.malloc(n * MiB) for n in (12, 16, 24)]
    for b in blocks:
        a.free(b)
    reserved = a.stats.reserved_bytes
    assert reserved == (12 + 16 + 24) * MiB
    b = a.malloc(14 * MiB)
    assert a.stats.reserved_bytes == reserved
    assert b.segment == blocks[1].segment and b.size == 14 * MiB


def test_reserved_never_shrinks_without_empty_cache():
    # free() puts a block back into its pool (cached), never cudaFree; only empty_cache
    # (release_cached_blocks) returns wholly free segments.
    a = CachingAllocator()
    events = [("alloc", i, (i + 1) * 3 * MiB) for i in range(6)] + [("free", i) for i in range(6)]
    r = replay(events, a)
    assert a.stats.allocated_bytes == 0
    assert a.stats.reserved_bytes == r.peak_reserved_bytes > 0
    a.empty_cache()
    assert a.stats.reserved_bytes == 0


def test_freed_neighbours_merge():
    # free_block merges a freed block with free neighbours of its segment: after freeing
    # both 5 MiB halves, a 15 MiB request fits the merged 20 MiB segment.
    a = CachingAllocator()
    x, y = a.malloc(5 * MiB), a.malloc(5 * MiB)
    a.free(x)
    a.free(y)
    a.malloc(15 * MiB)
    assert a.stats.segments == 1


def test_capacity_releases_cache_then_ooms():
    # malloc's OOM path: when cudaMalloc fails, release cached whole segments and retry.
    a = CachingAllocator(capacity=24 * MiB)
    a.free(a.malloc(12 * MiB))  # a cached 12 MiB segment
    a.malloc(22 * MiB)  # needs 22 MiB: 12 + 22 > 24, so the cached segment is released
    assert a.stats.reserved_bytes == 22 * MiB
    r = replay([("alloc", "x", 4 * MiB)], a)  # a 20 MiB segment no longer fits
    assert r.out_of_memory


def test_max_split_size_keeps_oversize_blocks_whole():
    # With max_split_size, a request below it is never served by a cached block at or above
    # it (get_free_block), so a new segment is made.
    a = CachingAllocator(max_split_size=32 * MiB)
    a.free(a.malloc(40 * MiB))
    a.malloc(12 * MiB)
    assert a.stats.segments == 2


@pytest.mark.parametrize("n", [1, 511, 512, 1 << 20, (1 << 20) + 1, 10 << 20, 123456789])
def test_allocated_between_requested_and_reserved(n):
    a = CachingAllocator()
    a.malloc(n)
    assert n <= a.stats.allocated_bytes <= a.stats.reserved_bytes
