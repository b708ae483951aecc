"""POSIX message queues: the hand-off between the web apps and the publisher.

Second stage of the data path. :mod:`.posix` opens, puts on and takes from a
queue; :mod:`.access` checks who may use a queue right after it is opened;
:mod:`.limits` explains a kernel refusal in operator terms; :mod:`.tool` is
the operator's command (``python -m baseplate_events.queue_tool``).
"""
