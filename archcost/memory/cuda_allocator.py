"""A model of PyTorch's CUDA caching allocator, to replay a run's allocations without a GPU.

The rules are those of ``c10/cuda/CUDACachingAllocator.cpp`` (``DeviceCachingAllocator``,
PyTorch 2.x, default settings: one stream, no ``expandable_segments``, no
``roundup_power2_divisions``, no memory fraction):

- every request is rounded up to a multiple of 512 bytes (``round_size``);
- a rounded request of at most 1 MiB is served from the small pool, anything larger from
  the large pool (``get_pool``);
- the allocator first looks for the smallest free cached block of the pool that is large
  enough, ties broken by the lower address (``get_free_block``: ``lower_bound`` in a set
  ordered by (size, address));
- when none is found it asks the driver for a new segment (``alloc_block``) of 2 MiB for a
  small request, 20 MiB for a request under 10 MiB, else the request rounded up to 2 MiB
  (``get_allocation_size``);
- the block found is split when the rest is worth keeping (``should_split``): in the small
  pool when at least 512 bytes remain; in the large pool when more than 1 MiB remains and
  the request is below ``max_split_size``. An unsplit block is handed out whole, and
  ``memory_allocated`` counts its whole size (an 11 MiB request holds a 12 MiB block);
- a freed block merges with its free neighbours of the same segment (``free_block``) and
  stays cached: reserved memory never shrinks without ``empty_cache`` (``release_cached_blocks``),
  or an allocation that would not fit otherwise (then every cached segment that is wholly
  free is released and the allocation retried: the OOM path of ``malloc``);
- with ``max_split_size`` set, a request below it is never served by a cached block at or
  above it, and a request at or above it only by a block less than 20 MiB larger.

``allocated`` is the sum of the sizes of the blocks handed out (``memory_allocated``),
``reserved`` the sum of the segments (``memory_reserved``); each has its peak
(``max_memory_allocated``, ``max_memory_reserved``).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Dict, Hashable, Iterable, List, Optional, Tuple

MiB = 1 << 20

K_MIN_BLOCK_SIZE = 512  # kMinBlockSize: every size is rounded up to a multiple of 512 bytes
K_SMALL_SIZE = 1 * MiB  # kSmallSize: the largest "small" request, served from the small pool
K_SMALL_BUFFER = 2 * MiB  # kSmallBuffer: small requests are packed into 2 MiB segments
K_LARGE_BUFFER = 20 * MiB  # kLargeBuffer: requests between 1 and 10 MiB get a 20 MiB segment
K_MIN_LARGE_ALLOC = 10 * MiB  # kMinLargeAlloc: from 10 MiB a request gets a segment of its own size
K_ROUND_LARGE = 2 * MiB  # kRoundLarge: such a segment is the request rounded up to 2 MiB
NO_MAX_SPLIT = 1 << 63  # max_split_size's default (SIZE_MAX): every large block may be split


def round_size(nbytes: int) -> int:
    """``round_size``: the request rounded up to a multiple of kMinBlockSize (at least 512)."""
    if nbytes < K_MIN_BLOCK_SIZE:
        return K_MIN_BLOCK_SIZE
    return K_MIN_BLOCK_SIZE * ((nbytes + K_MIN_BLOCK_SIZE - 1) // K_MIN_BLOCK_SIZE)


def is_small(size: int) -> bool:
    """``get_pool``: a rounded size of at most kSmallSize comes from the small pool."""
    return size <= K_SMALL_SIZE


def allocation_size(size: int) -> int:
    """``get_allocation_size``: the segment cudaMalloc'd for a rounded request no cached block serves."""
    if size <= K_SMALL_SIZE:
        return K_SMALL_BUFFER
    if size < K_MIN_LARGE_ALLOC:
        return K_LARGE_BUFFER
    return K_ROUND_LARGE * ((size + K_ROUND_LARGE - 1) // K_ROUND_LARGE)


class OutOfMemory(Exception):
    """cudaMalloc of a new segment would pass the capacity, even after releasing the cache."""


@dataclass(eq=False)
class Block:
    size: int
    ptr: int  # a virtual address: segments are laid out one after another
    small: bool
    segment: int
    allocated: bool = False
    requested: int = 0  # the bytes asked for (before rounding)
    tag: str = "tensor"  # what asked: tensor | cublas | cudnn ...
    prev: Optional["Block"] = None
    next: Optional["Block"] = None

    @property
    def is_split(self) -> bool:
        return self.prev is not None or self.next is not None

    def key(self) -> Tuple[int, int]:
        return (self.size, self.ptr)


@dataclass
class Stats:
    allocated_bytes: int = 0  # memory_allocated: sizes of the blocks handed out
    reserved_bytes: int = 0  # memory_reserved: sizes of the segments
    requested_bytes: int = 0  # the sizes asked for, before rounding
    peak_allocated_bytes: int = 0  # max_memory_allocated
    peak_reserved_bytes: int = 0  # max_memory_reserved
    peak_requested_bytes: int = 0
    segments: int = 0
    cuda_mallocs: int = 0
    cuda_frees: int = 0
    requested_at_allocated_peak: int = 0  # the bytes asked for when memory_allocated peaked
    requested_by_tag: Dict[str, int] = field(default_factory=dict)  # now
    requested_by_tag_at_allocated_peak: Dict[str, int] = field(default_factory=dict)


class CachingAllocator:
    """One device's caching allocator, one stream. ``capacity``: the bytes cudaMalloc may
    hand out in all (None: unlimited); past it the allocator releases its cache and retries,
    then raises ``OutOfMemory``, as the real one does."""

    def __init__(self, max_split_size: Optional[int] = None, capacity: Optional[int] = None):
        self.max_split_size = NO_MAX_SPLIT if max_split_size is None else max_split_size
        self.capacity = capacity
        self.pools: Dict[bool, List[Tuple[int, int, Block]]] = {True: [], False: []}  # free blocks, sorted
        self.stats = Stats()
        self._next_ptr = 0
        self._segments = 0

    # -- the pools ---------------------------------------------------------------------------
    def _insert(self, b: Block):
        bisect.insort(self.pools[b.small], (b.size, b.ptr, b))

    def _remove(self, b: Block):
        pool = self.pools[b.small]
        i = bisect.bisect_left(pool, (b.size, b.ptr))
        assert pool[i][2] is b
        del pool[i]

    def _free_block(self, size: int, small: bool) -> Optional[Block]:
        """``get_free_block``: the smallest cached block of at least ``size`` (lowest address
        among equals), subject to the max_split_size rules; removed from the pool."""
        pool = self.pools[small]
        i = bisect.bisect_left(pool, (size, -1))
        if i == len(pool):
            return None
        b = pool[i][2]
        if size < self.max_split_size <= b.size:
            return None  # do not return an oversized block for a smaller request
        if size >= self.max_split_size and b.size >= size + K_LARGE_BUFFER:
            return None  # an oversized block may be rounded up, but within 20 MiB
        del pool[i]
        return b

    def _should_split(self, b: Block, size: int) -> bool:
        """``should_split``."""
        remaining = b.size - size
        if b.small:
            return remaining >= K_MIN_BLOCK_SIZE
        return size < self.max_split_size and remaining > K_SMALL_SIZE

    # -- cudaMalloc / cudaFree -------------------------------------------------------------------
    def _cuda_malloc(self, size: int, small: bool) -> Optional[Block]:
        if self.capacity is not None and self.stats.reserved_bytes + size > self.capacity:
            return None
        b = Block(size, self._next_ptr, small, self._segments)
        self._next_ptr += size
        self._segments += 1
        s = self.stats
        s.reserved_bytes += size
        s.segments += 1
        s.cuda_mallocs += 1
        s.peak_reserved_bytes = max(s.peak_reserved_bytes, s.reserved_bytes)
        return b

    def _release(self, b: Block):
        """``release_block``: cudaFree a cached segment that is wholly free."""
        self._remove(b)
        self.stats.reserved_bytes -= b.size
        self.stats.segments -= 1
        self.stats.cuda_frees += 1

    def _release_available(self, size: int, small: bool) -> bool:
        """``release_available_cached_blocks`` (only with max_split_size set): free the
        smallest oversize cached block that covers the request, else the largest ones."""
        if self.max_split_size == NO_MAX_SPLIT:
            return False
        want = max(size, self.max_split_size)
        pool = self.pools[small]
        i = bisect.bisect_left(pool, (want, -1))
        if i < len(pool):
            self._release(pool[i][2])
            return True
        released = 0
        for _, _, b in reversed(list(pool)):
            if released >= want or b.size < self.max_split_size:
                break
            released += b.size
            self._release(b)
        return released >= want

    def empty_cache(self):
        """``release_cached_blocks``: cudaFree every cached segment that is wholly free
        (a free block that is not split is a whole segment)."""
        for small in (True, False):
            for _, _, b in list(self.pools[small]):
                if not b.is_split:
                    self._release(b)

    # -- malloc / free --------------------------------------------------------------------------
    def malloc(self, nbytes: int, tag: str = "tensor") -> Block:
        size = round_size(nbytes)
        small = is_small(size)
        b = self._free_block(size, small)
        if b is None:
            seg = allocation_size(size)
            b = self._cuda_malloc(seg, small)
            if b is None and self._release_available(size, small):
                b = self._cuda_malloc(seg, small)
            if b is None:
                self.empty_cache()
                b = self._cuda_malloc(seg, small)
            if b is None:
                raise OutOfMemory(f"tried to allocate {seg} bytes with {self.stats.reserved_bytes} reserved "
                                  f"of a capacity of {self.capacity}")
        if self._should_split(b, size):
            rest = Block(b.size - size, b.ptr + size, small, b.segment, prev=b, next=b.next)
            if b.next is not None:
                b.next.prev = rest
            b.next = rest
            b.size = size
            self._insert(rest)
        b.allocated = True
        b.requested = nbytes
        b.tag = tag
        s = self.stats
        s.allocated_bytes += b.size
        s.requested_bytes += nbytes
        s.requested_by_tag[tag] = s.requested_by_tag.get(tag, 0) + nbytes
        if s.allocated_bytes > s.peak_allocated_bytes:
            s.peak_allocated_bytes = s.allocated_bytes
            s.requested_at_allocated_peak = s.requested_bytes
            s.requested_by_tag_at_allocated_peak = dict(s.requested_by_tag)
        s.peak_requested_bytes = max(s.peak_requested_bytes, s.requested_bytes)
        return b

    def free(self, b: Block):
        """``free`` → ``free_block``: merge with free neighbours, back into the pool (cached)."""
        assert b.allocated, "double free"
        b.allocated = False
        self.stats.allocated_bytes -= b.size
        self.stats.requested_bytes -= b.requested
        self.stats.requested_by_tag[b.tag] -= b.requested
        for other in (b.prev, b.next):
            if other is not None and not other.allocated:
                self._remove(other)
                if other is b.prev:
                    b.ptr = other.ptr
                    b.prev = other.prev
                    if b.prev is not None:
                        b.prev.next = b
                else:
                    b.next = other.next
                    if b.next is not None:
                        b.next.prev = b
                b.size += other.size
        self._insert(b)

    @property
    def cached_free_bytes(self) -> int:
        return self.stats.reserved_bytes - self.stats.allocated_bytes


# An event: ("alloc", key, nbytes[, tag]) or ("free", key). Keys name allocations (a storage).
Event = Tuple


@dataclass
class Replay:
    peak_allocated_bytes: int  # predicted torch.cuda.max_memory_allocated (beyond what was there before)
    peak_reserved_bytes: int  # predicted torch.cuda.max_memory_reserved
    peak_requested_bytes: int  # the most bytes the program asked for at once (no rounding)
    requested_at_allocated_peak: int
    requested_by_tag_at_allocated_peak: Dict[str, int]
    segments: int
    cuda_mallocs: int
    cuda_frees: int
    out_of_memory: str = ""  # the OOM message, when a capacity was given and passed
    live: Dict[Hashable, Block] = field(default_factory=dict, repr=False)


def replay(events: Iterable[Event], allocator: Optional[CachingAllocator] = None) -> Replay:
    """Run ``events`` through ``allocator`` (a fresh one by default) and return its peaks.
    A free of a key never allocated is ignored (a storage made before the replay began); a
    request of 0 bytes takes no block (the CUDA allocator returns no memory for it)."""
    a = allocator or CachingAllocator()
    live: Dict[Hashable, Block] = {}
    oom = ""
    try:
        for ev in events:
            if ev[0] == "alloc":
                if ev[2]:
                    live[ev[1]] = a.malloc(ev[2], ev[3] if len(ev) > 3 else "tensor")
            elif ev[0] == "free":
                b = live.pop(ev[1], None)
                if b is not None:
                    a.free(b)
            else:
                raise ValueError(f"unknown allocator event {ev!r}")
    except OutOfMemory as exc:
        oom = str(exc)
    s = a.stats
    return Replay(s.peak_allocated_bytes, s.peak_reserved_bytes, s.peak_requested_bytes,
                  s.requested_at_allocated_peak, dict(s.requested_by_tag_at_allocated_peak),
                  s.segments, s.cuda_mallocs, s.cuda_frees, oom, live)
