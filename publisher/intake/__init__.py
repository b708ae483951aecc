"""The intake stage: queue to spool.

Events taken off the POSIX queue land in a file-backed ring (:mod:`.landing`)
before the intake loop appends them to the spool; :mod:`.stall` tells when a
full disk stops it.
"""
