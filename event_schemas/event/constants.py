"""Re-exports :mod:`demo_app.event_schemas.event.constants`."""
from demo_app.event_schemas.event.constants import *  # noqa: F401,F403
