"""Serializer and put: ours against Thrift's TJSONProtocol, side by side.

Puts go to a real POSIX queue of stock size (10 x 8192); it is drained, untimed,
after every batch of 10 puts so that no put ever finds it full.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Dict, TypeVar

import posix_ipc

from baseplate_events import EventQueue, serialize_v2_event
from baseplate_events.errors import QueueLimitError

from . import baseline
from .sample import typical_event
from .timing import batched_runner, interleaved, loop_runner

QUEUE_MESSAGES = 10
QUEUE_MESSAGE_SIZE = 8192

T = TypeVar("T")


@dataclass
class MicroResult:
    event_bytes: int
    serialize_ours: float
    serialize_thrift: float
    put_ours: float
    put_thrift: float
    put_raw: float

    @property
    def serialize_ratio(self) -> float:
        return self.serialize_thrift / self.serialize_ours

    @property
    def put_ratio(self) -> float:
        return self.put_thrift / self.put_ours


def with_retries(open_queue: Callable[[], T], attempts: int = 20) -> T:
    """Open a queue, retrying while other users' queues hold the shared ``ulimit -q``."""
    for attempt in range(attempts):
        try:
            return open_queue()
        except QueueLimitError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.25)
    raise AssertionError("unreachable")


def measure(rounds: int = 25, per_round: int = 2000) -> MicroResult:
    event = typical_event()
    serialized = serialize_v2_event(event)
    assert serialized == baseline.thrift_serialize(event), "not byte-identical to Thrift"

    serializers = interleaved(
        {
            "ours": loop_runner(lambda: serialize_v2_event(event)),
            "thrift": loop_runner(lambda: baseline.thrift_serialize(event)),
        },
        rounds=rounds,
        per_round=per_round,
    )

    name = f"bench{os.getpid()}"
    queue: EventQueue = with_retries(
        lambda: EventQueue(
            name,
            serialize_v2_event,
            max_messages=QUEUE_MESSAGES,
            max_message_size=QUEUE_MESSAGE_SIZE,
        )
    )
    try:
        raw = posix_ipc.MessageQueue("/events-" + name)
        try:
            receive = raw.receive

            def drain() -> None:
                try:
                    for _ in range(QUEUE_MESSAGES):
                        receive(0)
                except posix_ipc.BusyError:
                    pass

            thrift_put = baseline.thrift_put(raw, QUEUE_MESSAGE_SIZE)
            send = raw.send
            candidates: Dict[str, Callable[[int], float]] = {
                "ours": batched_runner(lambda: queue.put(event), QUEUE_MESSAGES, drain),
                "thrift": batched_runner(lambda: thrift_put(event), QUEUE_MESSAGES, drain),
                "raw": batched_runner(lambda: send(serialized, 0), QUEUE_MESSAGES, drain),
            }
            puts = interleaved(candidates, rounds=rounds, per_round=per_round)
        finally:
            raw.close()
    finally:
        queue.close()
        queue.queue.unlink()
    return MicroResult(
        event_bytes=len(serialized),
        serialize_ours=serializers["ours"],
        serialize_thrift=serializers["thrift"],
        put_ours=puts["ours"],
        put_thrift=puts["thrift"],
        put_raw=puts["raw"],
    )
