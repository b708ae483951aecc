"""The publisher daemon: the last hop of the pipeline.

``python -m publisher --queue-name NAME config.ini`` takes the events off
``/events-NAME``, writes them to a disk spool, batches, signs, gzips and POSTs
them to the collector. One folder per stage of the data path:

- :mod:`publisher.intake`: queue to spool, through the landing zone
  (``_landing.c`` in C) so that a ``kill -9`` loses nothing on the way;
- :mod:`publisher.spool`: the write-ahead spool on disk, its record bytes,
  its start-up check and its read-back;
- :mod:`publisher.send`: spool to collector: batches, their delivery, one
  signed POST over HTTP, dead letters and their replay;
- :mod:`publisher.daemon` runs the intake loop and the sender thread and
  shuts them down; :mod:`publisher.__main__` is the command line;
- :mod:`publisher.config` parses ``[event-publisher:NAME]``;
  :mod:`publisher.metrics` reports what happened (statsd, Prometheus, the
  health file); :mod:`publisher.paths` checks that directories are this
  user's alone.
"""
