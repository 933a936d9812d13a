"""Hostile or careless policy files (attack review): each is refused with a PolicyError, never a
traceback, a hang, an injected header or an answer too large to send."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from spamgate.model.artifact import Artifact
from spamgate.model.exit_codes import EX_CONFIG
from spamgate.service.api import redact
from spamgate.service.api.proto_gen import spamgate_pb2 as pb
from spamgate.service.policy import policy_file
from spamgate.service.policy.policy_file import PolicyHolder, parse_policy
from spamgate.service.policy.settings import PolicyError
from spamgate.service.runtime.toml_lines import KeyLines
from tests.growth import assert_linear
from tests.mail import make

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "spamgate.service.cli"]

# Growth checks in the style of tests/test_pathological.py: time(2n) / time(n), the minimum of
# interleaved repeats, against a generous bound; the quadratic scan they guard took 2.7 s for a
# 2,000-line array and grew 4x a doubling.


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


# --- F2: a policy tomllib cannot take (nesting past its recursion) or values of an unexpected type ----

DEEP = "version = " + "[" * 3000 + "]" * 3000 + "\n"
DEEP_TABLE = "[actions]\nsubject_tag = " + "{ a = " * 3000 + "1" + " }" * 3000 + "\n"


@pytest.mark.parametrize("text", [DEEP, DEEP_TABLE], ids=["array", "inline_table"])
def test_a_deeply_nested_policy_is_a_policy_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "deep.toml"
    path.write_text(text)
    with pytest.raises(PolicyError) as exc:
        parse_policy(path)
    assert exc.value.errors == [f"{path}: nested too deeply (arrays or inline tables): refused"]


def test_a_deeply_nested_policy_on_reload_keeps_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('sensitivity = "lenient"\n')
    holder = PolicyHolder(path)
    path.write_text(DEEP)
    result = holder.reload()
    assert not result.reloaded and "nested too deeply" in result.errors[0]
    assert holder.last_errors == result.errors and holder.current().version == result.version


@pytest.mark.parametrize(
    "text",
    [
        "sensitivity = [1]\n",
        "[[domain]]\nname = 'd'\nrecipient_domains = ['example.org']\nsensitivity = { a = 1 }\n",
    ],
)
def test_a_value_of_an_unexpected_type_is_a_policy_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(PolicyError, match="sensitivity: unknown preset"):
        parse_policy(path)


def test_any_other_failure_reading_the_policy_is_a_policy_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever else tomllib or the checks raise is refused as a policy error, never a traceback."""
    path = tmp_path / "policy.toml"
    path.write_text('sensitivity = "lenient"\n')

    def broken(text: str) -> dict[str, object]:
        raise ValueError("something tomllib never said before")

    monkeypatch.setattr(policy_file.tomllib, "loads", broken)
    with pytest.raises(PolicyError, match="cannot be read as a policy: ValueError: something tomllib"):
        parse_policy(path)


@pytest.mark.parametrize("command", ["check", "serve"])
def test_a_deeply_nested_policy_exits_78(tmp_path: Path, small_model: Artifact, command: str) -> None:
    """``check`` exited 1 (a pipe filter reads that as TAG) and ``serve`` 1 with a traceback."""
    path = tmp_path / "deep.toml"
    path.write_text(DEEP)
    argv = {
        "check": ["check", "--fail-mode", "open"],
        "serve": ["serve", "--port", "0", "--metrics-port", "0"],
    }[command]
    r = subprocess.run(
        [*CLI, *argv, "--model", str(small_model.path), "--policy", str(path)],
        cwd=REPO,
        input=make(),
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == EX_CONFIG and r.stdout == b"", (r.returncode, r.stderr[-2000:])
    assert b"nested too deeply" in r.stderr and b"Traceback" not in r.stderr


# --- F3: errors are bounded, and a caller without the admin role sees no list entry -------------------


def _bad_list(tmp_path: Path, lines: list[str]) -> Path:
    (tmp_path / "senders.txt").write_text("".join(f"{line}\n" for line in lines))
    path = tmp_path / "policy.toml"
    path.write_text('[block]\nsenders_file = "senders.txt"\n')
    return path


def test_errors_are_capped_in_number(tmp_path: Path) -> None:
    """300,000 bad lines gave 300,000 errors: a 38.9 MB ReloadPolicy / GetPolicy answer, over gRPC's limit."""
    path = _bad_list(tmp_path, [f"not-an-address-{i}" for i in range(5000)])
    with pytest.raises(PolicyError) as exc:
        parse_policy(path)
    errors = exc.value.errors
    assert len(errors) == 21  # the first 20, and how many more
    assert errors[0].startswith(f"{tmp_path / 'senders.txt'}:1: senders: 'not-an-address-0'")
    assert errors[-1] == "… and 4980 more errors (the first 20 are shown)"
    holder = PolicyHolder()
    holder.path = path
    assert holder.reload().errors == errors and holder.last_errors == errors


def test_errors_are_capped_in_length(tmp_path: Path) -> None:
    path = _bad_list(tmp_path, ["x" * 100_000])
    with pytest.raises(PolicyError) as exc:
        parse_policy(path)
    (error,) = exc.value.errors
    assert len(error) == 1000 and re.search(r"x… \(100,\d{3} characters in all\)$", error), error[-100:]
    deep = tmp_path / "big.toml"
    deep.write_text("thresholds = { tag = [" + "1, " * 100_000 + "] }\n")
    with pytest.raises(PolicyError) as exc:
        parse_policy(deep)
    assert exc.value.errors and all(len(e) <= 1000 for e in exc.value.errors)


def test_the_public_view_of_errors_quotes_no_entry(tmp_path: Path) -> None:
    """GetPolicy is open to any Classify caller: it showed list-file lines verbatim."""
    path = _bad_list(tmp_path, ["friend@example.org", "secret-partner-list-entry"])
    path.write_text('[actions]\nreroute_to = "nobody-here"\n' + path.read_text())
    with pytest.raises(PolicyError) as exc:
        parse_policy(path)
    info = redact.public_policy_info(pb.PolicyInfo(source=str(path), errors=exc.value.errors))
    assert "secret-partner" in "".join(exc.value.errors) and "nobody-here" in "".join(exc.value.errors)
    assert list(info.errors) == [
        "policy.toml:2: actions.reroute_to: (details shown to admin callers only)",
        "senders.txt:2: senders: (details shown to admin callers only)",
    ]
    assert redact.public_policy_info(pb.PolicyInfo(errors=["a reload is already running"])).errors == [
        "a reload is already running"
    ]


# --- F4: what a policy puts into mail and SMTP replies holds no line break or other control --------------

INJECTION = "[SPAM]\r\nBcc: victim@example.com\r\nX-Injected: "
CONTROL = "must not hold control characters"
ONE_ADDRESS = "must be one mail address"


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("subject_tag", INJECTION, CONTROL),
        ("subject_tag", "[SPAM]\n", CONTROL),
        ("subject_tag", "[SPAM]\x00", CONTROL),
        ("subject_tag", "[SPAM]\t", CONTROL),
        ("subject_tag", "[SPAM]\x7f", CONTROL),
        ("subject_tag", "[SPAM]\x85", CONTROL),
        ("subject_tag", "[SPAM]\u2028", CONTROL),
        ("subject_tag", "[SPAM]\u2029", CONTROL),
        ("reroute_to", "q@x\r\nBcc: victim@example.com", CONTROL),
        ("reroute_to", "q@x\u2028", CONTROL),
        ("reroute_to", "q @x", ONE_ADDRESS),
        ("reroute_to", "<q@x>", ONE_ADDRESS),
        ("reroute_to", "q@x,r@y", ONE_ADDRESS),
        ("reroute_to", "q@x r@y", ONE_ADDRESS),
        ("reroute_to", "q@@x", ONE_ADDRESS),
        ("reroute_to", "q@x@y", ONE_ADDRESS),
        ("reroute_to", "@x", ONE_ADDRESS),
        ("reroute_to", "q@", ONE_ADDRESS),
        ("reroute_to", "quarantine", ONE_ADDRESS),
        ("reroute_to", "q" * 250 + "@x.example", ONE_ADDRESS),
        ("reject_text", "5.7.1 Rejected\r\n250 2.0.0 Ok", CONTROL),
        ("reject_text", "5.7.1 Rejected\n", CONTROL),
        ("reject_text", "4.7.1 Try again later", "must start with a 5.x.x status code"),
        ("reject_text", " 2.0.0 Ok", "must start with a 5.x.x status code"),
        ("reject_text", "4.7.1", "must start with a 5.x.x status code"),
        ("reject_text", "5.7.1 " + "x" * 500, "must be at most 500 characters"),
    ],
)
def test_action_texts_are_refused_when_they_could_break_a_header_or_reply(
    tmp_path: Path, key: str, value: str, why: str
) -> None:
    for table, where in (("[actions]", "actions"), (DOMAIN + "[domain.actions]", "domain[0].actions")):
        path = tmp_path / "policy.toml"
        path.write_text(f"{table}\n{key} = {_toml_string(value)}\n")
        with pytest.raises(PolicyError) as exc:
            parse_policy(path)
        (error,) = exc.value.errors
        assert f": {where}.{key}: {why}" in error, error
        assert "\n" not in error and "\r" not in error and "\u2028" not in error


DOMAIN = '[[domain]]\nname = "d"\nrecipient_domains = ["example.org"]\n'


def _toml_string(value: str) -> str:
    return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in value) + '"'


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("subject_tag", "[SPAM] "),
        ("subject_tag", "***SPAM*** "),
        ("subject_tag", "[Pourriel] ¿spam? "),
        ("subject_tag", ""),
        ("reroute_to", "quarantine@localhost"),
        ("reroute_to", "spam+q.box@mail.example.net"),
        ("reject_text", "5.7.1 Message rejected as spam"),
        ("reject_text", " 5.7.26 Rejected: 100% spam"),
        ("reject_text", "Message rejected as spam"),
        ("reject_text", "5.7.1"),
    ],
)
def test_ordinary_action_texts_are_kept(tmp_path: Path, key: str, value: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(f"[actions]\n{key} = {_toml_string(value)}\n")
    assert getattr(parse_policy(path).settings, key) == value


# --- Thresholds out of order: a less severe action that can never apply is a configuration error ------


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "[thresholds]\ntag = 0.99\ndelete = 0.5\n",
            "policy.toml:2: thresholds.tag: TAG (p >= 0.99) never applies: DELETE (p >= 0.5) is reached",
        ),
        (
            "[thresholds]\ntag_at_fpr = 0.0001\n",  # the preset's REROUTE at 0.1%, REJECT at 0.01%
            "policy.toml:2: thresholds.tag_at_fpr: TAG (at FPR 0.01%) never applies: REROUTE (at FPR 0.1%)",
        ),
        (
            "[thresholds]\ntag = 0.5\n" + DOMAIN + "[domain.thresholds]\ntag = 0.9\nreroute = 0.8\n",
            "policy.toml:7: domain[0].thresholds.tag: TAG (p >= 0.9) never applies: REROUTE (p >= 0.8)",
        ),
        (
            DOMAIN + "sensitivity = 'balanced'\n[domain.thresholds]\nreject_at_fpr = 0.01\n",
            "policy.toml:6: domain[0].thresholds.reject_at_fpr: REROUTE (at FPR 0.1%) never applies: REJECT",
        ),
    ],
)
def test_thresholds_out_of_order_are_refused(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(PolicyError) as exc:
        parse_policy(path)
    assert len(exc.value.errors) == 1 and exc.value.errors[0].startswith(f"{tmp_path}/{error}"), exc.value


@pytest.mark.parametrize(
    "text",
    [
        "[thresholds]\ntag = 0.5\nreroute = 0.9\nreject = 'off'\ndelete = 0.99\n",
        "[thresholds]\ntag = 0.999\n",  # against the preset's FPR targets: only a model can tell
        "sensitivity = 'aggressive'\n" + DOMAIN + "sensitivity = 'lenient'\n",
        "[thresholds]\ntag = 'off'\nreroute = 0.5\n",
        "[thresholds]\ntag = 1e-9\nreroute = 1e-9\nreject = 1e-9\n",  # equal: "reject everything"
        # a [[domain]] overriding one threshold it inherits says what it wants: reroute from 0.8
        "[thresholds]\ntag = 0.9\n" + DOMAIN + "[domain.thresholds]\nreroute = 0.8\n",
    ],
)
def test_thresholds_in_order_are_kept(tmp_path: Path, text: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    parse_policy(path)
