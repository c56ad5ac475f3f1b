"""What every SVG picture needs: text escaped for XML, and text widths estimated
without a font engine (pictures are drawn offline, in pure Python)."""

from __future__ import annotations

import re
import unicodedata

# Characters XML 1.0 does not allow at all (most C0 controls, lone surrogates, U+FFFE/F):
# an agent's name may hold any of them, and one would make the whole picture unreadable.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                          "'": "&#39;"})

# Average advance of characters in a sans-serif font, in ems, by kind: wide enough that
# labels fit in the boxes drawn for them in common fonts (DejaVu Sans, Arial, Helvetica).
_NARROW = frozenset("iljtfrI!|.,:;'`()[]{} ")
_WIDE = frozenset("mwMW@%")
_NARROW_EM, _WIDE_EM, _UPPER_EM, _OTHER_EM, _FULL_EM = 0.34, 0.9, 0.7, 0.6, 1.0


def escape(text: str) -> str:
    """``text`` safe in XML character data and in double- or single-quoted attributes
    (characters XML cannot hold become U+FFFD)."""
    return _NOT_XML.sub("\ufffd", text).translate(_ESCAPES)


def _ems(char: str) -> float:
    if unicodedata.east_asian_width(char) in ("W", "F"):
        return _FULL_EM
    if char in _NARROW:
        return _NARROW_EM
    if char in _WIDE:
        return _WIDE_EM
    return _UPPER_EM if char.isupper() else _OTHER_EM


def text_width(text: str, size: float) -> float:
    """The width in pixels ``text`` takes at font size ``size`` (an estimate that errs
    on the wide side)."""
    return sum(map(_ems, text)) * size


def clip(text: str, size: float, width: float) -> str:
    """``text``, cut short with "…" so that it fits in ``width`` pixels at ``size``."""
    if text_width(text, size) <= width:
        return text
    room = width / size - _ems("…")
    for end, char in enumerate(text):
        room -= _ems(char)
        if room < 0:
            return text[:end] + "…"
    return text
