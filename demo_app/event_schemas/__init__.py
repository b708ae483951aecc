"""The sample v2 event schema (``event.thrift``) and its generated Python code.

It lives inside ``demo_app`` so that installing baseplate-events puts no
top-level ``event_schemas`` package into an environment: users keep their own
schemas under that name. In a checkout of this repository the repo-root
``event_schemas`` package (not installed) re-exports this one, so the seed's
``from event_schemas.event.ttypes import Event`` works there as written.
Regenerate the code after editing ``event.thrift`` with ``make schema``.
"""
