"""The event collector: the far end of the pipeline, a WSGI service a site can run.

``make_app(settings)`` builds the WSGI app; ``python -m baseplate_events.collector``
serves it with waitress. The sink contract is in :mod:`baseplate_events.collector.sinks`.
"""
