"""The app-side runtime: what a Pyramid or Flask request goes through to put an event.

First stage of the data path. A request's :class:`~.request_events.RequestEvents`
fills in the event (:mod:`.autofill`), serializes it and hands it to the
process-wide queue (:mod:`.shared_queue`, over ``event_queue``), the log
sink (:mod:`.log_sink`) or, under test, a recorder (:mod:`.capture`). What a put
loses is counted (:mod:`.loss_metrics`, :mod:`.prometheus`, ``statsd_target``);
:mod:`.settings` parses the apps' ``events.*`` settings.
"""
