"""What a collector process does to its heap once start-up is over, before it serves.

:func:`settle_heap` is called by ``python -m baseplate_events.collector``
before its banner, and by gunicorn in each worker once the app is loaded
(``post_worker_init`` in ``baseplate_events.collector.gunicorn_conf``). Two
things, each measured under ``benchmarks.collector_table``'s load (Kafka,
varied mix):

- **The garbage collector.** The modules, the app, the sink and the compiled
  schema are never garbage, but every collection of the old generation would
  walk them (about 43,000 objects); and the young generation, collected
  whenever 700 more objects live than at the last collection, would be walked
  with the batches in flight. With Python's thresholds: 75 young and 7 middle
  collections per 40,000 events, 0.08 to 0.11 µs of CPU per event; none with
  :data:`GC_THRESHOLD`.
- **glibc's malloc.** A batch's decompressed body (373 KB for 500 events)
  grows by ``realloc`` to 516 KB and is then cut to size. glibc serves a block
  that large with a fresh ``mmap`` of its own once it passes its *dynamic*
  threshold, which only ever rises to the size of the largest block freed
  (here 373 KB, never 516): so every batch mapped new memory and faulted in
  every page of it, about 100 page faults per batch, 3.7% of the process's
  CPU in ``perf``. With :data:`MMAP_THRESHOLD` and :data:`TRIM_THRESHOLD` set
  (``mallopt``), such blocks are reused from the heap: 0 to 10 faults per batch.
  The cost is that up to :data:`TRIM_THRESHOLD` of freed memory at the top of
  each malloc arena is kept for the next batch instead of given back. On a C
  library other than glibc (musl...), malloc is left as it is.
"""
from __future__ import annotations

import ctypes
import gc
import logging
import platform

__all__ = ["GC_THRESHOLD", "MMAP_THRESHOLD", "TRIM_THRESHOLD", "settle_heap", "tune_malloc"]

logger = logging.getLogger(__name__)

#: the garbage collector's first threshold while serving (Python's default is 700)
GC_THRESHOLD = 10_000
#: blocks at least this large get an mmap of their own (glibc's largest allowed value)
MMAP_THRESHOLD = 32 * 1024 * 1024
#: how much free memory at the top of a malloc arena is kept rather than given back
TRIM_THRESHOLD = 64 * 1024 * 1024

# mallopt's parameter numbers, from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def settle_heap() -> None:
    """Freeze what start-up made, raise the young generation's threshold, tune malloc."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    tune_malloc()


def tune_malloc() -> bool:
    """Set glibc's fixed mmap and trim thresholds; False (and nothing done) off glibc."""
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library Python itself runs on
    except (OSError, AttributeError) as exc:  # no C library to load: leave malloc alone
        logger.warning("collector: malloc left untuned: %s", exc)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt answers 1 on success, 0 for a value it refuses
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
