"""Text from a bucket or a queue, shown on a terminal as text: nothing in it acts on the terminal.

A job's id and a dead letter's task name are whatever their producer sent, and a worker registry
entry or an S3 key is any text in the bucket: an escape sequence in one would clear the screen,
retitle the window or move the cursor of whoever runs `galley status` or `galley top`, and a line
break would split a row. Each such character is written as its Python escape (``\\x1b``,
``\\n``, ``\\u2028``), so the text is still there to read.
"""

from __future__ import annotations

import unicodedata

#: Unicode categories escaped: controls, format characters (bidi overrides among them), lone
#: surrogates, line and paragraph separators.
_ESCAPED = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def shown(text: str) -> str:
    """``text`` with every character a terminal would act on written as its escape."""
    if text.isprintable():  # the common case: nothing to escape
        return text
    return "".join(
        ascii(char)[1:-1] if unicodedata.category(char) in _ESCAPED else char for char in text
    )
