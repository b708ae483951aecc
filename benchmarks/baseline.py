"""Models of baseplate.py 2.7.1's put path, for the side-by-side ratios.

baseplate 2.7.1's ``serialize_v2_event`` is ``TSerialization.serialize(event,
TJSONProtocolFactory())``; its ``EventQueue.put`` checks the size and calls its
``MessageQueue.put(serialized, timeout=0)``, which sends with posix_ipc (inside
a retry-policy loop). The model below keeps only the serialize, the size check
and one non-blocking ``mq_send``: it is a little *faster* than the real thing,
so ratios against it understate our lead.
"""
from __future__ import annotations

from typing import Any, Callable

import posix_ipc
from thrift.protocol.TJSONProtocol import TJSONProtocolFactory
from thrift.TSerialization import serialize

_FACTORY = TJSONProtocolFactory()


def thrift_serialize(event: Any) -> bytes:
    """baseplate 2.7.1's v2 serializer: Thrift's pure-Python TJSONProtocol."""
    return serialize(event, _FACTORY)  # type: ignore[no-any-return]


def thrift_put(queue: posix_ipc.MessageQueue, max_size: int) -> Callable[[Any], None]:
    """baseplate 2.7.1's ``EventQueue.put`` with the v2 serializer, minus its retry loop."""
    send = queue.send

    def put(event: Any) -> None:
        serialized = serialize(event, _FACTORY)
        if len(serialized) > max_size:
            raise ValueError("too large")
        send(serialized, 0)

    return put
