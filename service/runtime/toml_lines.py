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
        value = _OpenValue()  # the value of the last key, read line by line
        open_value = False  # it continues on the next line (an open quote or bracket)
        for n, line in enumerate(text.splitlines(), 1):
            if open_value:
                open_value = value.read(line)
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
            value = _OpenValue()
            open_value = value.read(key.group(2))

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


# In a value: what opens a string, a comment or a bracket. In a string: what ends it. An escape
# is matched whole and ends nothing (\" in "…", \""" in """…"""); a multi-line string ends with a
# run of 3-5 quotes, the extra ones its own ("""a""""). A one-line string still open at the end
# of its line is not TOML: it ends with the line.
_IN_VALUE = re.compile(r"\"\"\"|'''|[\"'#\[\]{}]")
_STRING_END = {
    '"': re.compile(r'\\.|"'),
    "'": re.compile("'"),
    '"""': re.compile(r'\\.|"{3,5}'),
    "'''": re.compile("'{3,5}"),
}


class _OpenValue:
    """Whether a value continues on the next line: an open multi-line string or bracket.

    Each line is read once and the state (the open quote, the bracket depth) carried forward. The
    check it replaced re-read the whole value so far at each new line: quadratic, a multi-line array
    of 2,000 entries took 3.3 s to map, 8,000 took 56.8 s (attack review; tomllib: 0.027 s).
    """

    def __init__(self) -> None:
        self.quote = ""  # the open string's quote; "" outside strings
        self.depth = 0  # [ and { opened minus ] and } closed

    def read(self, line: str) -> bool:
        """Read the value's next line (its first: the text after ``=``); True if it is still open."""
        pos = 0
        while True:
            if self.quote:
                ends = (m.end() for m in _STRING_END[self.quote].finditer(line, pos) if m[0][0] != "\\")
                end = next(ends, -1)
                if end < 0:
                    if len(self.quote) == 1:
                        self.quote = ""
                    break
                pos, self.quote = end, ""
            m = _IN_VALUE.search(line, pos)
            if m is None or m[0] == "#":
                break
            pos = m.end()
            if m[0] in ("[", "{"):
                self.depth += 1
            elif m[0] in ("]", "}"):
                self.depth -= 1
            else:
                self.quote = m[0]
        return bool(self.quote) or self.depth > 0
