"""What the collector's server does to the garbage collector before it serves."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.system
def test_settle_heap_freezes_what_start_up_made_and_raises_the_young_threshold() -> None:
    """In a process of its own (freezing would change this test process's collector)."""
    script = (
        "import gc, json\n"
        "from baseplate_events.collector.__main__ import GC_THRESHOLD, settle_heap\n"
        "before = gc.get_threshold()\n"
        "settle_heap()\n"
        "print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count(), GC_THRESHOLD]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    before, after, frozen, threshold = json.loads(out)
    assert [threshold, *before[1:]] == after
    assert before[0] < threshold
    assert frozen > 10_000  # the modules and everything else made at import
