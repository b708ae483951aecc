"""The spool stage: events taken off the queue are kept on disk until the collector has them.

A write-ahead log of records in numbered segments (:mod:`.store`), their bytes
(:mod:`.framing`, :mod:`.format`), the start-up check (:mod:`.recovery`), the
read-back (:mod:`.reader`) and the move of an old default spool (:mod:`.upgrade`).
"""
