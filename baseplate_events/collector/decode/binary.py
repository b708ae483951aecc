"""A ``binary`` value as Thrift's TJSONProtocol reader takes it: base64 text."""
from __future__ import annotations

import binascii
from typing import Optional

__all__ = ["BASE64_PADDING", "base64_problem"]

#: the "=" that make a base64 text of len(text) % 4 characters a multiple of 4 (Thrift's reader)
BASE64_PADDING = ("", "===", "==", "=")


def base64_problem(value: str) -> Optional[str]:
    """Why Thrift's reader cannot decode the binary ``value``; None if it can.

    As that reader does: padded with "=" to a multiple of 4 characters, then
    base64-decoded (``base64.b64decode``'s own ``binascii.a2b_base64``),
    characters outside the alphabet skipped. Refused: non-ASCII text, and a
    text that is not base64 once padded (``"0"``, ``"abcde"``).
    """
    try:
        binascii.a2b_base64(value + BASE64_PADDING[len(value) & 3])
    except ValueError as exc:  # binascii.Error is one; so is non-ASCII text
        return f"a binary field holds base64; {value[:32]!r} is not: {exc}"
    return None
