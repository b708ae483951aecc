"""The publisher daemon: the last hop of the pipeline.

``python -m publisher --queue-name NAME config.ini`` drains ``/events-NAME``,
writes what it takes to a disk spool, batches, signs, gzips and POSTs the
events to the collector. One module per concept:

- :mod:`publisher.config` parses ``[event-publisher:NAME]`` into a frozen object;
- :mod:`publisher.batching` builds v1 / v2 / 2j batch bodies;
- :mod:`publisher.spool` is the write-ahead spool on disk;
- :mod:`publisher.post` signs, compresses and POSTs one batch, and classifies the answer;
- :mod:`publisher.transport` is the HTTP under it (requests, one connection), and
  :mod:`publisher.deadline` cuts a POST that overruns ``collector.timeout``;
- :mod:`publisher.delivery` turns collector answers into splits, dead letters and backoff;
- :mod:`publisher.metrics` and :mod:`publisher.health` report what happened;
- :mod:`publisher.loop` runs the intake loop (queue to spool) and the sender thread,
  and shuts them down;
- :mod:`publisher.__main__` is the command line.
"""
