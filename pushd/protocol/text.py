# -*- test-case-name: tests.test_protocol_cdata -*-
"""
Decoding device text: one helper, one rule.

Spec 1.2: Chinese devices (language 83) send GB2312, all others UTF-8.  We
decode GB2312 with its superset GB18030 so that GBK names decode too.  Bytes
that do not decode are replaced in the text and reported as ``lossy`` so the
caller keeps the original bytes.
"""

from __future__ import annotations

from typing import Tuple

__all__ = ["CHINESE", "codec_for", "decode"]

#: Appendix 2: the language number of Simplified Chinese.
CHINESE = "83"


def codec_for(language: str) -> str:
    """:returns: the codec for a device that reported ``language`` at the handshake."""
    return "gb18030" if language.strip() == CHINESE else "utf-8"


def decode(data: bytes, codec: str) -> Tuple[str, bool]:
    """
    Decode ``data``.

    :returns: ``(text, lossy)``; ``lossy`` is true when some bytes did not
        decode and were replaced.
    """
    try:
        return data.decode(codec), False
    except UnicodeDecodeError:
        return data.decode(codec, errors="replace"), True
