"""``config.include("baseplate_events.pyramid")``: see :mod:`baseplate_events.integrations.pyramid`.

Also works as ``pyramid.includes = baseplate_events.pyramid`` in an INI file.
"""
from .integrations.pyramid import (
    REGISTRY_KEY,
    add_event_filler,
    events_tween_factory,
    includeme,
)

__all__ = ["REGISTRY_KEY", "add_event_filler", "events_tween_factory", "includeme"]
