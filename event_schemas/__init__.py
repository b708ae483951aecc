"""The sample schema under the seed's name, for this repository's checkout only.

``from event_schemas.event.ttypes import Event`` is how the seed's samples and
this repository's tests spell the sample schema. The real code is
:mod:`demo_app.event_schemas`; this package re-exports it, so the classes are
the very same objects. It is not in the wheel (see ``pyproject.toml``): an
installed baseplate-events leaves the name ``event_schemas`` to the user's own
schemas.
"""
