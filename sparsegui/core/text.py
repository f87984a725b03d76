"""Text from files made safe to print: names cannot move the cursor, clear the screen or fake an extra line.

Tensor names, module names, dictionary keys and file names come from files a user may have downloaded. Printed
raw, ``"\\x1b[2J"`` clears the terminal, ``"\\r"`` overwrites the start of a line, ``"\\nerror: …"`` fakes a second
error line and U+202E (right-to-left override) reverses what follows. :func:`printable` writes every such character
as a Python-style escape (``\\x1b``, ``\\r``, ``\\n``, ``\\u202e``) and leaves all other text, backslashes included,
as it is.
"""

from __future__ import annotations

import unicodedata

# Unicode categories that must not reach a terminal: control characters (C0, DEL, C1), format characters (bidi
# overrides and isolates, zero-width characters, the BOM), lone surrogates (undecodable bytes of a file name) and
# the line and paragraph separators.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _escape(char: str) -> str:
    code = ord(char)
    if char in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def is_unsafe(char: str) -> bool:
    """Whether ``char`` could act on a terminal (or change how the text around it reads) instead of showing."""
    return unicodedata.category(char) in UNSAFE_CATEGORIES


def printable(text: object) -> str:
    """``str(text)`` with every control, format, surrogate and line-separator character escaped.

    The result holds no character that a terminal interprets: one line of input stays one line of output.
    """
    value = str(text)
    if value.isprintable():  # the common case: nothing to escape (isprintable is False for every unsafe character)
        return value
    return "".join(_escape(c) if is_unsafe(c) else c for c in value)
