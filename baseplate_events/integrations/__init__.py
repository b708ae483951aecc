"""The framework integrations (Pyramid, Flask): thin layers over :mod:`baseplate_events.runtime`.

``baseplate_events.integrations.pyramid`` (``config.include("baseplate_events.pyramid")``)
and ``baseplate_events.integrations.flask`` (``EventsExtension(app)``) only tell
the shared request-scoped queue when a request starts and how it ended. Each
imports its framework, so neither is imported here.
"""
