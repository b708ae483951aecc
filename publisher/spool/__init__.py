"""The spool stage: events taken off the queue are kept on disk until the collector has them.

A write-ahead log of records in numbered segments (:mod:`.store`), opened and
locked by :mod:`.directory`, appended by :mod:`.writer`; its bytes are
:mod:`.framing`'s (a record) and :mod:`.format`'s (the ack, a position);
:mod:`.chunk` is what it hands out. The start-up check is :mod:`.recovery`,
the read-back :mod:`.reader`, damaged stretches :mod:`.damage`, and the move
of an old default spool :mod:`.upgrade`.
"""
