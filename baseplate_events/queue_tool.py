"""``python -m baseplate_events.queue_tool``: runs :mod:`baseplate_events.mqueue.tool`."""
from .mqueue.tool import console_main, full_name, main

if __name__ == "__main__":
    console_main()

__all__ = ["console_main", "full_name", "main"]
