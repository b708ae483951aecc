"""Interleaved timing: every candidate runs once per round, in rotating order.

On a shared two-core machine the speed of the CPU drifts from second to
second; interleaving puts every candidate through the same drift, and medians
over rounds ignore the rounds another process stole.
"""
from __future__ import annotations

import gc
import statistics
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

T = TypeVar("T")

#: A candidate: run the operation ``n`` times, return the seconds it took (setup excluded).
Runner = Callable[[int], float]


def loop_runner(operation: Callable[[], object]) -> Runner:
    """Time ``operation`` called ``n`` times in a plain loop."""

    def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            operation()
        return time.perf_counter() - start

    return run


def batched_runner(
    operation: Callable[[], object], batch: int, after_batch: Callable[[], object]
) -> Runner:
    """Time ``operation`` in batches of ``batch`` calls; ``after_batch`` (untimed) resets state.

    For queue puts: a stock queue holds 10 messages, so it is drained between batches.
    """

    def run(n: int) -> float:
        total = 0.0
        done = 0
        while done < n:
            size = min(batch, n - done)
            start = time.perf_counter()
            for _ in range(size):
                operation()
            total += time.perf_counter() - start
            after_batch()
            done += size
        return total

    return run


def interleaved(
    candidates: Dict[str, Runner], rounds: int, per_round: int, warmup: Optional[int] = None
) -> Dict[str, float]:
    """Median microseconds per operation of each candidate over ``rounds`` interleaved rounds."""
    names = list(candidates)
    for name in names:  # warm caches, compile encoders, fault pages in
        candidates[name](warmup if warmup is not None else max(1, per_round // 10))
    samples: Dict[str, List[float]] = {name: [] for name in names}
    enabled = gc.isenabled()
    gc.disable()
    try:
        for index in range(rounds):
            order = names[index % len(names):] + names[: index % len(names)]
            for name in order:
                seconds = candidates[name](per_round)
                samples[name].append(seconds / per_round * 1e6)
    finally:
        if enabled:
            gc.enable()
    return {name: statistics.median(values) for name, values in samples.items()}


def client_threads(post: Callable[..., T], requests: Sequence[Tuple[Any, ...]],
                   clients: int) -> Tuple[List[threading.Thread], List[T]]:
    """``clients`` threads (not started) that share ``requests``, each posted once as
    ``post(*request)``; every answer lands in the list returned beside them."""
    answers: List[T] = []
    lock = threading.Lock()
    position = iter(range(len(requests)))

    def client() -> None:
        while True:
            with lock:
                index = next(position, None)
            if index is None:
                return
            answer = post(*requests[index])
            with lock:
                answers.append(answer)

    return [threading.Thread(target=client) for _ in range(clients)], answers
