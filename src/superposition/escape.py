"""Untrusted text made safe where it is shown: a terminal, an HTML page, a Markdown table.

Weight files, downloads and environment values are untrusted: a weight file's `hardware`
could hold `<img onerror=...>` or an ANSI escape sequence. Everything they contribute to a
page or a terminal goes through one of these.

    escape.terminal("\\x1b[31mred")   # '\\\\x1b[31mred': the escape is shown, not obeyed
    escape.html("<b>")               # '&lt;b&gt;'
    escape.markdown("a_b [x](y)")    # shown as typed, never as markup
"""

from __future__ import annotations

import html as _html
import re
import unicodedata
from urllib.parse import urlsplit

# CommonMark lets a backslash escape any ASCII punctuation; &, <, > and quotes become entities.
_MARKDOWN_PUNCTUATION = frozenset("!#$%()*+,-./:;=?@[\\]^_`{|}~")


def terminal(text: object) -> str:
    """`text` with every character a terminal would not print as itself (control characters
    such as ESC, bidi overrides, line separators) written as a visible escape like \\x1b."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in str(text)
    )


def html(text: object) -> str:
    """`text` as HTML text or an attribute value: &, <, >, " and ' as entities."""
    return _html.escape(str(text), quote=True)


def markdown(text: object) -> str:
    """`text` as literal Markdown (MyST) inline text: no emphasis, link, role, maths or HTML."""
    out = []
    for ch in str(text):
        if unicodedata.category(ch) == "Cc" or ch in "\u2028\u2029":  # would end the line
            out.append(ch.encode("unicode_escape").decode("ascii").replace("\\", "\\\\"))
        elif ch in "&<>\"'":
            out.append(_html.escape(ch, quote=True))
        elif ch in _MARKDOWN_PUNCTUATION:
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def web_address(value: str, what: str) -> str:
    """`value` if it is an absolute http(s) address with a host and nothing that could
    break out of an attribute or a line; else a ValueError that names `what`."""
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or not re.fullmatch(r"[A-Za-z0-9\-._~:/?#\[\]@!$&()*+,;=%]+", value)
        or any(ch in value for ch in "\"'<>`\\")
    ):
        raise ValueError(f"{what} is not an http(s) address: {terminal(value)!s}")
    return value
