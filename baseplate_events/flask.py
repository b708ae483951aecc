"""``EventsExtension(app)``: see :mod:`baseplate_events.integrations.flask`."""
from .integrations.flask import EXTENSION_KEY, EventsExtension

__all__ = ["EXTENSION_KEY", "EventsExtension"]
