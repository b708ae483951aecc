"""Types of the optional C extension built from ``_landing.c``."""
from typing import Any, Tuple

def receive_into(
    mqd: int, ring: Any, offset: int, msgsize: int, limit: int, wake_fd: int, timeout: float,
    linger: float, until: int,
) -> Tuple[int, int, int]: ...
def gather(ring: Any, end: int) -> Tuple[bytes, bytes, int]: ...
