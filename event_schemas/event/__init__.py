"""Re-exports :mod:`demo_app.event_schemas.event` (see the package docstring)."""
__all__ = ["constants", "ttypes"]
