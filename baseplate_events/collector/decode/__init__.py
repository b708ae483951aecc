"""Reading a batch: the collector's second stage, after the intake's checks.

:mod:`.batches` splits a checked body into its events and decodes each one;
:mod:`.documents` reads any TJSON struct into a generic document (the type
tags from :mod:`baseplate_events.tjson.tags`), :mod:`.typed` checks events
against a compiled ``--schema`` at msgspec's speed, and :mod:`.schema` loads
that schema from a Thrift class.
"""
