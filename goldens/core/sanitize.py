"""Text from hostile places (artifact names from a CI API, approval reasons, paths in a pull
request) made safe for where it is shown: a terminal, a CI log, GitHub's workflow commands, Markdown.

- escape sequences (ANSI CSI, OSC such as a terminal title or hyperlink, any other ESC) and
  control characters — C0, DEL, C1, and the Unicode line separators and direction overrides —
  are removed; in a one-line message a line break is shown as ``⏎``;
- ``::`` is broken (``:\u200b:``) so no line can become a GitHub workflow command (``::error::``,
  ``::add-mask::``, ``::stop-commands::``);
- in Markdown, ``@name`` cannot ping anyone and markup characters are escaped.
"""
from __future__ import annotations

import re

_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]"          # CSI: colours, cursor moves
                      r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\|$)"  # OSC: title, hyperlink, clipboard
                      r"|\x1b[PX^_][^\x1b]*(?:\x1b\\|$)"       # DCS, SOS, PM, APC strings
                      r"|\x1b.?"                               # any other escape
                      r"|\x9b[0-?]*[ -/]*[@-~]|\x9d[^\x07\x9c]*[\x07\x9c]?")  # 8-bit CSI and OSC
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")
_BREAK = "\u2060"  # word joiner: invisible, and not a character any of the rules above removes
_WORKFLOW = re.compile(r":(?=:)")  # every colon followed by a colon: ':::' has two pairs
_MARKDOWN = re.compile(r"([\\`*_{}\[\]<>()#+!|~&])")
_MENTION = re.compile(r"@(?=\w)")  # any word character: broken whether or not a host would link it


def text(value: object) -> str:
    """Lines safe for a terminal or a CI log: no escapes, no controls but line breaks and tabs, no
    workflow command."""
    cleaned = _ESCAPES.sub("", str(value)).replace("\r\n", "\n")
    cleaned = _CONTROLS.sub("", cleaned.replace("\r", "\n"))
    return _WORKFLOW.sub(":" + _BREAK, cleaned)


def line(value: object) -> str:
    """One line safe for a terminal or a CI log (a line break inside shows as ``⏎``)."""
    return text(value).replace("\n", "⏎").replace("\t", " ")


def markdown(value: object) -> str:
    """Inline Markdown text: one line, markup escaped, ``@mentions`` broken."""
    return unmention(_MARKDOWN.sub(r"\\\1", line(value)))


def unmention(value: str) -> str:
    """``@name`` that GitHub and GitLab cannot turn into a mention (the ``@`` as an HTML entity)."""
    return _MENTION.sub("&#64;", value)


def markdown_code(value: object) -> str:
    """Inline code for a path or a name: a backtick fence longer than any run inside it."""
    shown = line(value)
    longest = max((len(run) for run in re.findall(r"`+", shown)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if shown.startswith("`") or shown.endswith("`") else ""
    return f"{fence}{pad}{shown}{pad}{fence}"
