"""The varied mix: events of a schema with every TJSON shape, not the sample's.

The schema is ``benchmarks/varied.thrift`` (a shop's ``Checkout``), generated
into ``benchmarks/varied/`` by ``thrift --gen py``: nested structs, a list
of structs, maps with string and with integer keys (one of lists), sets of
strings and of i16, binary, i8, i16, i32, i64, a list of lists, doubles
(extreme ones and the special NaN and infinities among them) and strings with
escapes and non-ASCII text. An event averages about 700 bytes of TJSON.
"""
from __future__ import annotations

import math
import random
import uuid
from typing import List

from baseplate_events import serialize_v2_event

from .varied.ttypes import Channel, Checkout, Client, Geo, LineItem, Money

#: the schema, as ``--schema`` names it
SCHEMA = "benchmarks.varied.ttypes:Checkout"

_DOUBLES = [0.0, -0.0, 5e-324, 1.7976931348623157e308, -1.7976931348623157e308, 1e-300,
            math.nan, math.inf, -math.inf, 0.1, 2.5e17]
_NOTES = ['line\none', 'tab\there, "quoted" and back\\slash', 'caf\u00e9 \u2014 \u20ac 12',
          '\u65e5\u672c\u8a9e\u306e\u30e1\u30e2', 'emoji \U0001f6d2 in cart', 'ctrl \x01\x1f',
          '\u2028separator\u2029', 'plain ascii note']
_CITIES = ["Z\u00fcrich", "S\u00e3o Paulo", "Krak\u00f3w", "Portland", "\u6771\u4eac"]
_LABELS = ["sale", "new", "gift", "bulk", "fragile", "\u00e9t\u00e9"]


def _double(r: random.Random) -> float:
    return r.choice(_DOUBLES) if r.random() < 0.3 else r.uniform(-1e6, 1e6)


def varied_event(r: random.Random) -> Checkout:
    """One ``Checkout`` with fields drawn from ``r``; about 700 bytes of TJSON."""
    def some(value: object) -> object:  # an optional field, set in half the events
        return value if r.random() < 0.5 else None

    items = [
        LineItem(
            sku=f"SKU-{r.getrandbits(24):06x}",
            quantity=r.randrange(-(2**15), 2**15) if r.random() < 0.1 else r.randrange(1, 9),
            unit_price=Money(
                micros=r.choice([-(2**63), 2**63 - 1]) if r.random() < 0.1 else r.randrange(10**8),
                currency=r.choice(["EUR", "USD", "JPY"])),
            labels=set(r.sample(_LABELS, r.randrange(0, 2))),
            discount=_double(r),
        )
        for _ in range(1 if r.random() < 0.85 else 2)
    ]
    return Checkout(
        uuid=str(uuid.UUID(int=r.getrandbits(128), version=4)),
        timestamp_ms=1732790000123 + r.randrange(10**9),
        kind=r.choice(["checkout", "cart_update", "refund"]),
        client=Client(
            user_agent="Mozilla/5.0",
            fingerprint=some(r.getrandbits(96).to_bytes(12, "big")),
            geo=some(Geo(lat=r.uniform(-90, 90), lon=r.uniform(-180, 180),
                         accuracy=r.randrange(-128, 128), city=r.choice(_CITIES))),
            screen=[r.choice([1920, 390, -(2**31), 2**31 - 1])],
            touch=r.random() < 0.5,
        ),
        items=items,
        attributes=some({"ref": r.choice(["mail", "search", "ad \"spring\""])}),
        scores=some({r.randrange(-(2**31), 2**31): _double(r) for _ in range(1)}),
        history=some({r.randrange(-(2**63), 2**63): [r.choice(_LABELS)] for _ in range(1)}),
        flags={r.randrange(-(2**15), 2**15) for _ in range(2)},
        total=_double(r),
        version=r.randrange(-128, 128),
        note=r.choice(_NOTES),
        matrix=some([[r.randrange(-128, 128) for _ in range(2)] for _ in range(2)]),
        channel=r.choice([Channel.WEB, Channel.IOS, Channel.ANDROID]),
        taxes=some({"vat": Money(micros=r.randrange(10**9), currency="EUR")}),
        payload=some(r.getrandbits(64).to_bytes(8, "big")),
    )


def varied_pool(count: int, seed: int = 1) -> List[bytes]:
    """``count`` distinct serialized events of the varied mix."""
    rng = random.Random(seed)
    return [serialize_v2_event(varied_event(rng)) for _ in range(count)]
