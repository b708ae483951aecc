"""The publisher daemon: the last hop of the pipeline.

``python -m publisher --queue-name NAME config.ini`` takes the events off
``/events-NAME``, writes them to a disk spool, batches, signs, gzips and POSTs
them to the collector. Along the data path, one module per concept:

- :mod:`publisher.config` parses ``[event-publisher:NAME]`` into the frozen
  objects of :mod:`publisher.sections`, one per INI section;
- :mod:`publisher.loop` runs the intake loop (queue to spool) and the sender
  thread (spool to collector), and shuts them down; :mod:`publisher.stall`
  tells when a full disk stops the intake loop;
- :mod:`publisher.landing` receives into a file-backed ring (``_landing.c``
  in C) so that a ``kill -9`` loses nothing between queue and spool;
- :mod:`publisher.record` is the spool record's bytes (pack, unpack, check);
- :mod:`publisher.spool` is the write-ahead spool on disk, with its ack file
  and segment names in :mod:`publisher.spool_format`, its start-up check in
  :mod:`publisher.spool_recovery` and its read-back in
  :mod:`publisher.spool_reader`; :mod:`publisher.upgrade` moves an old
  default spool;
- :mod:`publisher.batching` builds v1 / v2 / 2j batch bodies and cuts them
  from the spool;
- :mod:`publisher.post` signs, compresses and POSTs one batch, and classifies
  the answer; :mod:`publisher.transport` is the HTTP under it (requests, one
  connection), and :mod:`publisher.deadline` cuts a POST that overruns
  ``collector.timeout``;
- :mod:`publisher.delivery` is the policy: collector answers become splits,
  dead letters (:mod:`publisher.dead_letters`) and backoff
  (:mod:`publisher.backoff`); :mod:`publisher.replay` sends a dead-letter file
  again;
- :mod:`publisher.metrics` (statsd, :mod:`publisher.prometheus`) and
  :mod:`publisher.health` report what happened;
- :mod:`publisher.paths` and :mod:`publisher.secret_permissions` check that
  directories and secrets are this user's alone;
- :mod:`publisher.__main__` is the command line.
"""
