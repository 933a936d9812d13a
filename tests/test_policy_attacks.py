"""Hostile or careless policy files (attack review): each is refused with a PolicyError, never a
traceback, a hang, an injected header or an answer too large to send."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from spamgate.service.policy.policy_file import parse_policy
from spamgate.service.runtime.toml_lines import KeyLines

# Growth checks in the style of tests/test_pathological.py: time(2n) / time(n), the minimum of
# interleaved repeats, against a generous bound; the quadratic scan they guard took 2.7 s for a
# 2,000-line array and grew 4x a doubling.
MAX_GROWTH = 3.0
NOISE_S = 0.005


def _seconds(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def assert_linear(run: Callable[[int], object], n: int, rounds: int = 3) -> None:
    """time(2n) / time(n) <= MAX_GROWTH: the minimum of interleaved runs, tried twice (load spikes)."""
    for _attempt in range(2):
        small, large = [], []
        for _ in range(rounds):
            small.append(_seconds(lambda: run(n)))
            large.append(_seconds(lambda: run(2 * n)))
        ratio = min(large) / max(min(small), NOISE_S)
        if ratio <= MAX_GROWTH:
            return
    pytest.fail(
        f"time({2 * n}) / time({n}) = {min(large):.4f} / {min(small):.4f} s = {ratio:.1f} > {MAX_GROWTH}"
    )


def _senders(n: int) -> str:
    return "[block]\nsenders = [\n" + "".join(f'  "u{i}@s{i}.example",\n' for i in range(n)) + "]\n"


def _long_string(n: int) -> str:
    return 'name = """\n' + "".join(f"line {i} [ with ' and \" quotes\n" for i in range(n)) + '"""\n'


@pytest.mark.parametrize(
    ("make", "n"), [(_senders, 1000), (_long_string, 4000)], ids=["array", "multiline_string"]
)
def test_key_lines_grow_linearly_with_a_value_spanning_lines(make: Callable[[int], str], n: int) -> None:
    texts = {k: make(k) for k in (n, 2 * n)}
    assert_linear(lambda k: KeyLines(texts[k]), n)


def test_parse_policy_grows_linearly_with_a_long_list(tmp_path: Path) -> None:
    for k in (1000, 2000):
        (tmp_path / f"p{k}.toml").write_text(_senders(k))
    assert len(parse_policy(tmp_path / "p2000.toml").block.sizes()) > 0
    assert_linear(lambda k: parse_policy(tmp_path / f"p{k}.toml"), 1000)


KEY_LINES_CASES = [
    # (text, path, line): values spanning lines skip their inner lines, whatever they hold.
    ('a = [\n  "x]",  # ] [\n  "y",\n]\nb = 1\n', "b", 5),
    ('a = """\nb = 2\n[t]\n"""\nb = 1\n', "b", 5),
    ("a = '''\n[t]\nc = 3'''\nc = 1\n", "c", 4),
    ('a = """x \\""" [\n"""\nd = 1\n', "d", 3),
    ('a = """x""""\nd = 1\n', "d", 2),
    ("a = { b = [\n1,\n], c = '[' }\ne = 1\n", "e", 4),
    ('a = "x" # """ [ {\nf = 1\n', "f", 2),
    ('a = """\n\\\n"""\ng = 1\n', "g", 4),
    ("a = [ '''x\n]''', ]\nh = 1\n", "h", 3),
    ('[[d]]\nname = """\n[[d]]\n"""\n[d.t]\nk = [\n]\n[[d]]\n[d.t]\nk = 1\n', "d[1].t.k", 10),
]


@pytest.mark.parametrize(("text", "path", "line"), KEY_LINES_CASES)
def test_key_lines_skip_values_spanning_lines(text: str, path: str, line: int) -> None:
    import tomllib

    tomllib.loads(text)  # each case is valid TOML
    assert KeyLines(text).line_of(path) == line
