"""The intake stage: queue to spool.

The intake loop (:mod:`publisher.daemon`) takes events off the POSIX queue
through a source (:mod:`.sources`): the file-backed landing zone
(:mod:`.landing`, with ``publisher._landing`` in C), so that a ``kill -9``
loses nothing before they are spooled, or memory. :mod:`.stall` tells when a
full disk stops it.
"""
