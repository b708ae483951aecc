"""The events the benchmarks use: one typical ~500-byte v2 event, and a varied pool.

The typical event is what a web request records: who, what, where, one
experiment, two tags, a double. The pool varies ids, timestamps and strings so
that gzip sees realistic input, not one event repeated.
"""
from __future__ import annotations

import random
import uuid
from typing import List

from baseplate_events import serialize_v2_event
from event_schemas.event.ttypes import Event, Experiment, Request, User


def typical_event(rng: "random.Random | None" = None) -> Event:
    """A ~500-byte event of the sample schema: nested structs, a list, a map, strings."""
    r = rng or random.Random(7)
    return Event(
        source="frontpage-web",
        action=r.choice(["view", "click", "vote", "share"]),
        noun=r.choice(["comment", "post", "thread", "button"]),
        client_timestamp=1732790000123 + r.randrange(10**7),
        uuid=str(uuid.UUID(int=r.getrandbits(128), version=4)),
        user=User(user_id=f"t2_{r.getrandbits(40):x}", logged_in=r.random() < 0.7),
        request=Request(
            user_agent="Mozilla/5.0 (X11; Linux x86_64)",
            domain="www.example.com",
            base_url=f"/r/python/comments/{r.getrandbits(32):x}",
            status_code=200,
        ),
        experiments=[
            Experiment(id=4321, name="feed_ranking", variant=r.choice(["control", "treatment_b"]))
        ],
        tags={"page": "comments", "referrer": r.choice(["search", "direct", "social"])},
        value=round(r.random(), 3),
    )


def event_pool(count: int, seed: int = 1) -> List[bytes]:
    """``count`` distinct serialized events (about 500 bytes each)."""
    rng = random.Random(seed)
    return [serialize_v2_event(typical_event(rng)) for _ in range(count)]
