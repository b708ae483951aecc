"""The collector as a web service: the first stage of the collector's data path.

:mod:`.app` is the Pyramid app (``POST /v1``, ``/v2``, ``/v2j``, the probes,
``/metrics``); :mod:`.intake` checks a request before its body is read;
:mod:`.handler` takes one batch from intake through decoding to the sink and
chooses the answer; :mod:`.settings` and :mod:`.metrics` are the service's
settings table and Prometheus metrics; :mod:`.gunicorn_conf` runs it under
gunicorn. The decoding is in :mod:`baseplate_events.collector.decode` and the
storing in :mod:`baseplate_events.collector.sinks`.
"""
