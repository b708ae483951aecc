"""Batch bodies byte for byte, size limits, and properties of the batch builder."""
from __future__ import annotations

import json
from typing import List

from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.send.batches import BatchBuilder, build_body, overhead
from publisher.spool.chunk import Chunk

from tests.support.batching import batches_of, chunk_of

E1 = b'{"1":{"str":"a"}}'
E2 = b'{"1":{"str":"b"}}'


def test_v1_body():
    """Version 1 batches are a JSON list."""
    assert b'[{"1":{"str":"a"}},{"1":{"str":"b"}}]' == build_body("1", [E1, E2])


def test_v2_body():
    """Version 2 batches are TJSON of a struct whose field 1 is list<Event>."""
    expected = b'{"1":{"lst":["rec",2,{"1":{"str":"a"}},{"1":{"str":"b"}}]}}'
    assert expected == build_body("2", [E1, E2])


def test_2j_body():
    """Version 2j batches are a plain JSON list."""
    assert b'[{"1":{"str":"a"}},{"1":{"str":"b"}}]' == build_body("2j", [E1, E2])


def test_builder_body_matches_build_body_across_chunks():
    """A batch assembled from several chunks is the same bytes as one built from the events."""
    builder = BatchBuilder("2", 10_000)
    assert builder.add(chunk_of([E1])) is None
    assert builder.add(chunk_of([E2, E1])) is None
    assert build_body("2", [E1, E2, E1]) == builder.body()


def test_size_is_counted_as_baseplate_counts():
    """v2 counts 27 bytes of overhead and each event plus a comma."""
    builder = BatchBuilder("2", 10_000)
    builder.add(chunk_of([E1, E2]))
    assert 27 + len(E1) + 1 + len(E2) + 1 == builder.size
    assert 2 == overhead("1") == overhead("2j")


def test_full_batch_returns_the_rest_in_order():
    """Events that do not fit come back, in order, for the next batch."""
    max_bytes = overhead("2j") + 2 * (len(E1) + 1)
    builder = BatchBuilder("2j", max_bytes)
    rest = builder.add(chunk_of([E1, E2, E1]))
    assert rest is not None
    assert [E1, E2] == builder.events()
    assert [E1] == rest.events()
    assert builder.full


def test_oversized_event_travels_alone():
    """An event larger than the batch limit is sent alone, not stuck for ever."""
    big = b'"' + b"x" * 200 + b'"'
    builder = BatchBuilder("2j", 100)
    rest = builder.add(chunk_of([big, E1]))
    assert [big] == builder.events()
    assert rest is not None and [E1] == rest.events()


def test_chunk_split_keeps_events_whole():
    """Splitting a chunk cuts between events, never inside one."""
    first, second = chunk_of([E1, E2, E1]).split(1)
    assert ([E1], [E2, E1]) == (first.events(), second.events())
    assert E2 + b"," + E1 == second.joined


events_strategy = st.lists(
    st.builds(
        lambda obj: json.dumps(obj, separators=(",", ":")).encode(),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=3)
            | st.dictionaries(st.text(max_size=5), inner, max_size=3),
            max_leaves=8,
        ),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(
    events=events_strategy,
    version=st.sampled_from(["1", "2", "2j"]),
    max_bytes=st.integers(min_value=8, max_value=600),
    chunk_sizes=st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=10),
)
def test_builder_round_trip_property(
    events: List[bytes], version: str, max_bytes: int, chunk_sizes: List[int]
):
    """However events arrive in chunks, batches are valid JSON, in order, whole, in the limit."""
    chunks: List[Chunk] = []
    position = 0
    for size in chunk_sizes * 10:
        if position >= len(events):
            break
        chunks.append(chunk_of(events[position : position + size]))
        position += size
    if position < len(events):
        chunks.append(chunk_of(events[position:]))

    bodies = []
    builder = BatchBuilder(version, max_bytes)
    for chunk in chunks:
        rest = builder.add(chunk)
        while rest is not None:
            bodies.append((builder.body(), builder.count, builder.size))
            builder = BatchBuilder(version, max_bytes)
            rest = builder.add(rest)
    if builder.count:
        bodies.append((builder.body(), builder.count, builder.size))

    seen = []
    for body, count, counted in bodies:
        document = json.loads(body)
        items = document["1"]["lst"][2:] if version == "2" else document
        if version == "2":
            assert ["rec", count] == document["1"]["lst"][:2]
        assert count == len(items)
        assert counted <= max_bytes or count == 1
        assert len(body) <= counted
        seen.extend(items)
    assert [json.loads(e) for e in events] == seen


@settings(max_examples=100, deadline=None)
@given(events=events_strategy, max_bytes=st.integers(min_value=8, max_value=400))
def test_batches_of_agrees_with_the_builder(events: List[bytes], max_bytes: int):
    """The simple list splitter cuts exactly where the chunk builder cuts."""
    expected = []
    builder = BatchBuilder("2j", max_bytes)
    rest = builder.add(chunk_of(events))
    while rest is not None:
        expected.append(builder.events())
        builder = BatchBuilder("2j", max_bytes)
        rest = builder.add(rest)
    expected.append(builder.events())
    assert expected == batches_of("2j", max_bytes, events)
