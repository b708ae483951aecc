"""An event's uuid in its one canonical form: the de-duplication key and Kafka's message key."""
from __future__ import annotations

import re
import uuid
from typing import Any, Optional

__all__ = ["canonical_uuid"]

#: the spellings of a UUID taken: 8-4-4-4-12 or 32 hex digits, bare, in braces or after
#: urn:uuid:, either case; ASCII only (uuid.UUID alone also takes "_", spaces, "٦"...).
#: re.ASCII: without it, case folding takes "İ" (U+0130) and "ı" (U+0131) for "i".
_UUID_SPELLING = re.compile(
    r"(?i:urn:uuid:)?(?:[0-9a-fA-F]{8}(-?)[0-9a-fA-F]{4}\1[0-9a-fA-F]{4}\1[0-9a-fA-F]{4}\1"
    r"[0-9a-fA-F]{12})|\{[0-9a-fA-F]{8}(-?)[0-9a-fA-F]{4}\2[0-9a-fA-F]{4}\2[0-9a-fA-F]{4}\2"
    r"[0-9a-fA-F]{12}\}", re.ASCII)
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def canonical_uuid(value: Any) -> Optional[str]:
    """``value`` as a lower-case hyphenated UUID, or None if it is not a UUID string.

    Taken: 8-4-4-4-12 or 32 hex digits (ASCII, either case), bare, in braces
    or after ``urn:uuid:``; all of them are one id (the de-duplication key).
    """
    if type(value) is not str or not 32 <= len(value) <= 45:
        return None
    if _CANONICAL_UUID.fullmatch(value) is not None:  # the usual case, 5x cheaper than UUID()
        return value
    if _UUID_SPELLING.fullmatch(value) is None:  # UUID() alone takes "_", spaces, "٦"...
        return None
    try:
        return str(uuid.UUID(value.lower()))  # UUID() knows "urn:uuid:" in lower case only
    except ValueError:  # the pattern admits nothing UUID() refuses; never an exception here
        return None
