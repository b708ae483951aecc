"""Re-exports :mod:`demo_app.event_schemas.event.ttypes`: the same classes, not copies."""
from demo_app.event_schemas.event.ttypes import *  # noqa: F401,F403
