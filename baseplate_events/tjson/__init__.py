"""Thrift's TJSONProtocol, the v2 event wire format, written without Thrift's slow path.

Used where an event is serialized, in the web process. ``encode`` is the
compiled encoder that writes exactly the bytes of Apache Thrift's
``TJSONProtocol``; :mod:`.tags` is the table of type tags that the encoder
writes and the collector's reader reads back.
"""
