"""Untrusted text made safe for a terminal: every control character shown, none obeyed.

Strings from a registry or an archive (error messages, labels, ``Env``, platform
names, ...) may hold ``ESC`` sequences that set the window title or clear the
screen, ``BEL``, carriage returns and newlines that forge output lines, C1 controls
(``U+009B`` is a one-character ``CSI``), bidirectional overrides and other
invisible characters. :func:`escape` replaces each character Python does not call
printable with a visible escape (``\\x1b``, ``\\n``, ``\\u202e``), so what reaches the
terminal is one line of plain characters. Escaped text is left as it is by a
second :func:`escape`, so text may be escaped where it is made and again where it
is printed. JSON output needs none of this: ``json.dumps`` escapes every control
character (and, with its default ``ensure_ascii``, every non-ASCII one).
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """``text`` with every non-printable character replaced by a visible escape."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
