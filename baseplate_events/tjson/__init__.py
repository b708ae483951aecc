"""Thrift's TJSONProtocol, the v2 event wire format, written without Thrift's slow path.

Used where an event is serialized, in the web process. :mod:`.encode` is the
compiled encoder that writes exactly the bytes of Apache Thrift's
``TJSONProtocol``; the collector's reader decodes the same bytes.
"""
