"""The C allocator's settings for column-wise evaluation.

A population passes through the models in chunks of a few thousand rows; each pass allocates tens
of temporary arrays of 0.2-2 MB. glibc serves blocks above its mmap threshold (128 kB at start) by
mmap and returns free memory at the top of the heap to the system once it exceeds its trim
threshold, so every pass faulted its pages in afresh: ~0.5 page faults a design point, which cost
more than the arithmetic (a serving step's roofline ran ~6x slower than with the memory kept).
glibc raises both thresholds by itself, up to 32 MB and 64 MB, each time it frees an mmapped block
of up to 32 MB (mallopt(3), "M_MMAP_THRESHOLD"); `keep_freed_memory` sets those same ceilings at
once, so freed arrays are reused.

The cost, for the process that runs `evaluate_many`: blocks of 128 kB-32 MB then come from the heap
arenas instead of mmap, and free memory is returned only from the top of the main arena once 64 MB
of it is free; holes inside an arena and other threads' arenas are kept, so a long-running
multi-threaded host can hold more memory through fragmentation. It is set on the first
`evaluate_many` call, not on `import dse`, and never over the user's own settings: any of
MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ or a glibc.malloc tunable in GLIBC_TUNABLES (setting
MALLOC_MMAP_THRESHOLD_=131072 keeps glibc's start value and opts out).
"""
from __future__ import annotations

import ctypes
import functools
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD_MAX  # what glibc sets with it


def user_set() -> bool:
    """Whether the user chose glibc's malloc thresholds (environment variables or tunables)."""
    return ({"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"} & set(os.environ)
            or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""))


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds to the ceilings its own adaptation reaches; nothing on
    other C libraries or when the user set them (`user_set`). Returns whether they were set."""
    if not sys.platform.startswith("linux") or user_set():
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this interpreter runs on
        libc.gnu_get_libc_version  # noqa: B018  glibc only: other libraries' mallopt differ or do nothing
    except (OSError, AttributeError):
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(libc.mallopt(M_TRIM_THRESHOLD,
                                                                                        TRIM_THRESHOLD))


@functools.cache
def keep_freed_memory_once() -> bool:
    """`keep_freed_memory`, the first time only (the settings hold for the process)."""
    return keep_freed_memory()
