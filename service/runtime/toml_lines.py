"""Where a key of a TOML file is written, so an error found after parsing can name its line.

``tomllib`` returns values without positions, and the policy and configuration
checks run on those values. They name what is wrong by its key path
(``domain[1].thresholds.tag``, ``server.port``); ``KeyLines`` scans the text once
and maps each path to the line that writes it. The table headers resolve the
paths: ``[[domain]]`` opens the next element of the ``domain`` array, and a later
``[domain.thresholds]`` belongs to that element. Matching a bare key name instead
put an invalid ``[domain.thresholds] tag`` at the global ``[thresholds] tag`` line
(issue 18).

A path the file does not write itself (a key inside an inline table, a default
the checks read) gets the line of its deepest ancestor that it does write, so an
error still points into the right table; 0 when none is written at all.

Only the layout the parsed file already passed is read: headers, ``key =`` lines
(dotted and quoted keys too), and values spanning lines (arrays, multi-line
strings), whose inner lines are skipped.

``service.policy.policy_file`` names each error's line this way; ``with_lines`` prefixes the
configuration file's errors (``[section] key …``) with the line of their key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# One key: bare, "basic" (with escapes) or 'literal'.
_ONE_KEY = r"""(?:"(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_-]+)"""
_SEGMENT = re.compile(rf"\s*({_ONE_KEY})\s*")
_HEADER = re.compile(r"""^\s*(\[\[?)([^\[\]]+?)(\]\]?)\s*(?:#.*)?$""")
_KEY = re.compile(rf"^\s*({_ONE_KEY}(?:\s*\.\s*{_ONE_KEY})*)\s*=(.*)$")
_STRINGS = re.compile(r"""'''[\s\S]*?'''|\"\"\"(?:[^\\]|\\[\s\S])*?\"\"\"|"(?:[^"\\]|\\.)*"|'[^']*'""")
_INDEX = re.compile(r"\[\d+\]$")


def _segments(dotted: str) -> list[str] | None:
    """``a."b.c".d`` → ``["a", "b.c", "d"]``; None if it is not a dotted key."""
    out, pos = [], 0
    while True:
        m = _SEGMENT.match(dotted, pos)
        if m is None:
            return None
        seg = m.group(1)
        out.append(seg[1:-1] if seg[0] in "\"'" else seg)
        pos = m.end()
        if pos == len(dotted):
            return out
        if dotted[pos] != ".":
            return None
        pos += 1


def parent_path(path: str) -> str:
    """``domain[0].thresholds`` → ``domain[0]`` → ``domain`` → ``""``."""
    if _INDEX.search(path):
        return _INDEX.sub("", path)
    return path.rpartition(".")[0]


class KeyLines:
    """Line numbers (from 1) of the tables and keys a TOML text writes, by key path."""

    def __init__(self, text: str) -> None:
        self._lines: dict[str, int] = {}
        self._arrays: dict[str, int] = {}  # array-of-tables path → elements so far
        table = ""
        open_value = ""  # the part of a value still open at the end of the last line (quote or brackets)
        for n, line in enumerate(text.splitlines(), 1):
            if open_value:
                open_value = _still_open(open_value + "\n" + line)
                continue
            header = _HEADER.match(line)
            if header and len(header.group(1)) == len(header.group(3)):
                segs = _segments(header.group(2))
                if segs is not None:
                    table = self._open_table(segs, array=header.group(1) == "[[", line=n)
                continue
            key = _KEY.match(line)
            if key is None:
                continue
            segs = _segments(key.group(1))
            if segs is None:
                continue
            path = table
            for seg in segs:
                path = f"{path}.{seg}" if path else seg
                self._lines.setdefault(path, n)
            open_value = _still_open(key.group(2))

    def _resolve(self, segs: list[str]) -> str:
        """The path of a header's key: each array of tables on the way is its latest element."""
        path = ""
        for seg in segs:
            path = f"{path}.{seg}" if path else seg
            if path in self._arrays:
                path = f"{path}[{self._arrays[path] - 1}]"
        return path

    def _open_table(self, segs: list[str], array: bool, line: int) -> str:
        path = self._resolve(segs[:-1])
        path = f"{path}.{segs[-1]}" if path else segs[-1]
        self._lines.setdefault(path, line)
        if array:
            index = self._arrays.get(path, 0)
            self._arrays[path] = index + 1
            path = f"{path}[{index}]"
        self._lines.setdefault(path, line)
        ancestor = parent_path(path)
        while ancestor:  # [a.b] without [a] writes a too
            self._lines.setdefault(ancestor, line)
            ancestor = parent_path(ancestor)
        return path

    def line_of(self, path: str) -> int:
        """The line that writes ``path``, else its deepest written ancestor; 0 if none is written."""
        while path:
            if path in self._lines:
                return self._lines[path]
            path = parent_path(path)
        return 0


# What a configuration error is about: "[section] key …", "[section] unknown key 'key' …"
# ("[limits] ParseLimits.max_parts …" names max_parts), or "unknown section [section] …".
_ERROR_KEY = re.compile(r"^\[(\w+)\] (?:unknown key '([^']+)'|(?:\w+\.)?(\w+))|^unknown section \[([^\]]+)\]")


def with_lines(path: Path, text: str, errors: list[str], not_in_file: dict[str, dict[str, Any]]) -> list[str]:
    """``errors`` of a configuration file, each about a key the file writes prefixed ``PATH:LINE:``.

    ``not_in_file`` (section → key → value) holds values that did not come from the file (the
    command line's): an error about one of those names no line. So does an error about a key
    in a table the file does not write (a default found wrong).
    """
    lines = KeyLines(text)
    out = []
    for error in errors:
        m = _ERROR_KEY.match(error)
        if m is None:
            out.append(error)
            continue
        section, key = m.group(1) or m.group(4), m.group(2) or m.group(3)
        if not_in_file.get(section, {}).get(key) is not None:
            out.append(error)  # a value given on the command line
            continue
        n = lines.line_of(f"{section}.{key}" if key else section)
        out.append(f"{path}:{n}: {error}" if n else error)
    return out


def _still_open(value: str) -> str:
    """``value`` if it continues on the next line (an open multi-line string or bracket), else ""."""
    text = value
    for quote in ('"""', "'''"):
        if text.count(quote) % 2:  # a multi-line string opened and not closed
            return value
    text = "\n".join(line.split("#", 1)[0] for line in _STRINGS.sub("", text).splitlines())
    depth = text.count("[") + text.count("{") - text.count("]") - text.count("}")
    return value if depth > 0 else ""
