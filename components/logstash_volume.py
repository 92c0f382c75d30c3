"""How one Logstash data volume is shared: the persistent queue, the dead letter queue, a heap dump and
the filesystem's own needs, from the volume's size and the JVM heap (both in plain numbers).

The settings refuse a volume too small for it (components/settings) and the Logstash config is sized
by it (components/logging/configs.py): one computation for both, below either layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.units import MIB, mib_share

# Logstash's heap as a share of its container's memory limit (the rest: off-heap, metaspace, the OS).
HEAP_PERCENT = 50


def heap_mb(memory_limit_bytes: float) -> int:
    return mib_share(memory_limit_bytes, HEAP_PERCENT)
# Logstash's defaults (logstash-core/lib/logstash/environment.rb), written out so that the sizing below
# does not rest on a default that may move.
QUEUE_PAGE_BYTES = 64 * MIB  # queue.page_capacity
DEAD_LETTERS_DEFAULT_BYTES = 1024 * MIB  # dead_letter_queue.max_bytes
# DeadLetterQueueFactory.MAX_SEGMENT_SIZE_BYTES. The writer counts only sealed segments (*.log) when it
# measures itself against dead_letter_queue.max_bytes (DeadLetterQueueWriter.computeQueueSize), so the
# open one (*.log.tmp) comes on top.
DEAD_LETTER_SEGMENT_BYTES = 10 * MIB
# The persistent queue needs one whole page: Logstash refuses queue.page_capacity > queue.max_bytes at
# start (PersistedQueueConfigValidator#check_page_capacity). The dead letter queue takes a fifth of what
# the two queues share, so they share at least this much.
SMALLEST_QUEUE_BUDGET = QUEUE_PAGE_BYTES * 5 // 4
# Small files on the volume (the uuid, the locks of path.data and of both queues, a checkpoint per queue
# page): one filesystem block, 4 KiB, each.
SMALL_FILE_BYTES = 4096


def filesystem_reserve(volume: int) -> int:
    """What the filesystem keeps of a volume for itself and its root user. ext4 as mke2fs makes it by
    default holds back 5% for root (Logstash runs as uid 1000 and cannot use it), about 1.6% for inode
    tables and a journal of up to 64 MiB below 16 GiB (ext2fs_default_journal_size; above that it is
    under 1% of the volume): a tenth and 64 MiB cover every size."""
    return volume // 10 + 64 * MIB


@dataclass(frozen=True)
class LogstashVolume:
    """Everything that can land on one Logstash data volume (path.data), in bytes, and the two queue caps
    that make it fit: the persistent queue (queue.max_bytes) and the dead letter queue
    (dead_letter_queue.max_bytes) share it with the JVM's heap dump and the filesystem's own needs."""

    size: int
    filesystem: int
    heap_dump: int  # -XX:HeapDumpPath is path.data: one dump on OutOfMemoryError, about the heap's size
    # Queue.write writes an element and only then waits while the queue is full (isMaxBytesReached sums
    # the pages' written bytes), so the queue passes queue.max_bytes by up to one element: a page.
    queue_overshoot: int
    open_dead_letter_segment: int
    small_files: int
    queue_max_bytes: int
    dead_letter_max_bytes: int


def _reserves(size: int, heap_mb: int) -> dict[str, int]:
    """What a volume of ``size`` bytes holds besides the two queues."""
    return dict(filesystem=filesystem_reserve(size), heap_dump=heap_mb * MIB, queue_overshoot=QUEUE_PAGE_BYTES,
                open_dead_letter_segment=DEAD_LETTER_SEGMENT_BYTES,
                small_files=SMALL_FILE_BYTES * (4 + size // QUEUE_PAGE_BYTES + 2))


def logstash_volume(size: int, heap_mb: int) -> LogstashVolume:
    """How one Logstash volume of ``size`` bytes is shared; ValueError if the persistent queue would not
    get one whole page, which Logstash refuses at start (the settings refuse such a size first)."""
    reserves = _reserves(size, heap_mb)
    budget = size - sum(reserves.values())
    if budget < SMALLEST_QUEUE_BUDGET:
        raise ValueError(
            f"logging.logstash.storageSize ({size // MIB}Mi) is too small: the persistent queue needs at least "
            f"one {QUEUE_PAGE_BYTES // MIB} MiB page (queue.page_capacity) beside the dead letter queue, a heap "
            f"dump of {heap_mb} MiB and the filesystem's share; expected at least "
            f"{logstash_storage_minimum(heap_mb) // MIB}Mi")
    dead_letters = min(DEAD_LETTERS_DEFAULT_BYTES, budget // 5) // MIB * MIB
    return LogstashVolume(size=size, **reserves, queue_max_bytes=(budget - dead_letters) // MIB * MIB,
                          dead_letter_max_bytes=dead_letters)


def logstash_storage_minimum(heap_mb: int) -> int:
    """The smallest volume, in bytes and whole MiB, that logstash_volume accepts for a heap of ``heap_mb``."""
    def fits(mib: int) -> bool:
        return mib * MIB - sum(_reserves(mib * MIB, heap_mb).values()) >= SMALLEST_QUEUE_BUDGET

    low, high = 1, 1
    while not fits(high):
        high *= 2
    while low < high:  # the reserves grow more slowly than the volume: fits is monotonic
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle + 1, high)
    return low * MIB
