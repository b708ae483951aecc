"""The publisher's own figures: counters and timers sent to statsd
(:mod:`.counters`, :mod:`.names`), the Prometheus exporter (:mod:`.prometheus`)
and the health file (:mod:`.health`). Every stage reports here; nothing here
is on the data path.
"""
