"""What the compiled reader asks of a struct's shape before typing it (see :mod:`.typed`)."""
from __future__ import annotations

from typing import Any, Dict, List

from ...tjson.tags import CONTAINER_TAGS
from .documents import FieldShape, StructShape

__all__ = ["only_empty", "recursive_structs"]

_CONTAINERS = CONTAINER_TAGS


def only_empty(field: FieldShape) -> bool:
    """Whether every value of the container ``field`` seen so far was empty.

    A list of lists seen only as ``["lst", 0]`` knows its elements are lists
    (its head says so) but never saw one: what they hold is unknown, so its
    values are typed as empty until one is seen with elements.
    """
    element = field.element
    return (field.tag in _CONTAINERS and element is not None and element.tag in _CONTAINERS
            and element.element is None)


def recursive_structs(root: StructShape) -> "set[int]":
    """The ids of the struct shapes under ``root`` that contain themselves."""
    def inside(shape: StructShape) -> List[StructShape]:
        found = []
        for field in shape.fields.values():
            inner: Any = field
            while inner is not None:
                if inner.struct is not None:
                    found.append(inner.struct)
                inner = inner.element
        return found

    every: Dict[int, StructShape] = {}
    todo = [root]
    while todo:
        shape = todo.pop()
        if id(shape) not in every:
            every[id(shape)] = shape
            todo += inside(shape)
    recursive = set()
    for key, shape in every.items():
        seen: Dict[int, None] = {}
        todo = inside(shape)
        while todo:
            inner = todo.pop()
            if id(inner) == key:
                recursive.add(key)
                break
            if id(inner) not in seen:
                seen[id(inner)] = None
                todo += inside(inner)
    return recursive
