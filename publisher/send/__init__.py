"""The send stage: spool to collector.

Batches cut from spool chunks (:mod:`.batches`, :mod:`.assembler`); the
sender thread's delivery of each batch with its answers and retries
(:mod:`.delivery`, :mod:`.backoff`), the search of a refused batch
(:mod:`.bisection`); one signed POST (:mod:`.post`) over HTTP
(:mod:`.transport`, :mod:`.deadline`); dead letters (:mod:`.dead_letters`)
and their replay (:mod:`.replay`).
"""
