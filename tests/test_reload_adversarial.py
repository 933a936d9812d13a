"""Configuration reading and reloading under admin mistakes and broken deploy tools (adversarial review).

Policy and list files, the service configuration and the bearer-tokens file, each read at start
and again while serving: what a file caught mid-write, saved by another editor (a BOM, Latin-1,
CRLF) or holding an entry nobody can match does. The rule throughout: a file is either used
whole or refused with its file and line named (exit 78 at start, the previous one kept at a
reload), never used with entries silently dead.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from spamgate.service.api.bearer_tokens import TokensError, TokenTable, parse_tokens
from spamgate.service.policy.policy_file import PolicyHolder, parse_policy
from spamgate.service.policy.settings import PolicyError
from spamgate.service.runtime.config import ConfigError, load_config

BLOCK = '[block]\nsenders_file = "senders.txt"\n'


def _policy(tmp_path: Path, list_bytes: bytes, policy: str = BLOCK) -> Path:
    (tmp_path / "senders.txt").write_bytes(list_bytes)
    path = tmp_path / "policy.toml"
    path.write_text(policy)
    return path


def _errors(path: Path) -> list[str]:
    with pytest.raises(PolicyError) as exc:
        parse_policy(path)
    return exc.value.errors


# ---- list entries that could never match were taken silently


@pytest.mark.parametrize(
    ("content", "line", "why"),
    [
        # Two entries on one line: one address "a@evil.example, b@evil.example" that matches nobody.
        (b"x@ok.example\na@evil.example, b@evil.example\n", 2, "one entry a line"),
        (b"x@ok.example\na@evil.example b@evil.example\n", 2, "one entry a line"),
        (b"x@ok.example\na@evil.example\tb@evil.example\n", 2, "control character"),  # a tab
        # A NUL (a file preallocated by a crash, a binary pasted in) inside an entry.
        (b"x@ok.example\nspam@ev\x00il.example\n", 2, "control character"),
        # A form feed or U+2028 was a line break to str.splitlines, so errors named the wrong line.
        (b"x@ok.example\nspam@evil.example\x0cmore@evil.example\n", 2, "control character"),
    ],
)
def test_a_list_entry_that_can_never_match_is_refused_at_its_line(
    tmp_path: Path, content: bytes, line: int, why: str
) -> None:
    path = _policy(tmp_path, content)
    errors = _errors(path)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{tmp_path / 'senders.txt'}:{line}: senders: "), errors
    assert why in errors[0]


def test_inline_list_entries_are_checked_the_same_way(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        '[block]\nsenders = ["a@evil.example, b@evil.example"]\nsender_domains = ["x.example y.example"]\n'
    )
    errors = _errors(path)
    assert [e.split(": ")[1] for e in errors] == ["block.senders", "block.sender_domains"], errors


def test_a_quoted_local_part_may_still_hold_a_space(tmp_path: Path) -> None:
    """RFC 5321 quoted strings: ``"john doe"@example.org`` is one legitimate mailbox."""
    policy = parse_policy(_policy(tmp_path, b'"john doe"@example.org\n'))
    assert policy.block.match_sender('"john doe"@example.org')


def test_a_list_file_not_in_utf8_is_refused_at_its_line(tmp_path: Path) -> None:
    """Latin-1 ``müller@…`` was read as ``m\\ufffdller@…``: an entry matching nobody, accepted."""
    errors = _errors(_policy(tmp_path, b"x@ok.example\nm\xfcller@evil.example\n"))
    assert errors == [f"{tmp_path / 'senders.txt'}:2: not UTF-8 (byte 14): refused"]


@pytest.mark.parametrize("which", ["list", "policy"])
def test_a_byte_order_mark_is_refused_by_name(tmp_path: Path, which: str) -> None:
    """Saved "UTF-8 with BOM": in a list file its first entry was ``\\ufeffspam@…`` (dead, accepted);
    in the policy file the error was ``Invalid statement (at line 1, column 1)``."""
    bom = b"\xef\xbb\xbf"
    path = _policy(tmp_path, (bom if which == "list" else b"") + b"spam@evil.example\n")
    if which == "policy":
        path.write_bytes(bom + BLOCK.encode())
    errors = _errors(path)
    name = "senders.txt" if which == "list" else "policy.toml"
    assert len(errors) == 1 and errors[0].startswith(f"{tmp_path / name}:1: "), errors
    assert "byte-order mark" in errors[0]


def test_crlf_line_ends_are_read_as_line_ends(tmp_path: Path) -> None:
    policy = parse_policy(
        _policy(tmp_path, b"a@evil.example\r\nb@evil.example\r\n", BLOCK.replace("\n", "\r\n"))
    )
    assert policy.block.senders == {"a@evil.example", "b@evil.example"}


# ---- [[domain]] sections that can never apply


@pytest.mark.parametrize(
    ("first", "second", "shadowed"),
    [
        ("example.net", "example.net", "example.net"),  # the same domain twice
        ("example.net", "exec.example.net", "exec.example.net"),  # a parent listed first wins
    ],
)
def test_a_domain_section_shadowed_by_an_earlier_one_is_refused(
    tmp_path: Path, first: str, second: str, shadowed: str
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        f'[[domain]]\nname = "all"\nrecipient_domains = ["{first}"]\n'
        f'[[domain]]\nname = "exec"\nrecipient_domains = ["{second}"]\n'
    )
    errors = _errors(path)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{path}:6: domain[1].recipient_domains: {shadowed!r} ")
    assert "domain[0]" in errors[0]


def test_the_specific_domain_first_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        '[[domain]]\nname = "exec"\nrecipient_domains = ["exec.example.net"]\n'
        '[[domain]]\nname = "all"\nrecipient_domains = ["example.net"]\n'
    )
    policy = parse_policy(path)
    assert policy.section_for("ceo@exec.example.net")[0] == "exec"
    assert policy.section_for("bob@example.net")[0] == "all"


@pytest.mark.parametrize("entry", ["ceo@exec.example.net", "exec.example.net other.example.net"])
def test_a_recipient_domain_that_is_no_domain_is_refused(tmp_path: Path, entry: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(f'[[domain]]\nname = "exec"\nrecipient_domains = ["{entry}"]\n')
    errors = _errors(path)
    assert len(errors) == 1 and errors[0].startswith(f"{path}:3: domain[0].recipient_domains: "), errors


# ---- the service configuration file


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"[server]\nport = 50999\n# caf\xe9\n", "not UTF-8"),  # was a UnicodeDecodeError traceback, exit 1
        (b"[server]\nx = " + b"[" * 3000 + b"]" * 3000 + b"\n", "nested too deeply"),  # RecursionError
        (b"\xef\xbb\xbf[server]\nport = 50999\n", "byte-order mark"),
    ],
)
def test_a_config_file_that_cannot_be_read_is_a_configuration_error(
    tmp_path: Path, content: bytes, why: str
) -> None:
    path = tmp_path / "spamgate.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert len(exc.value.errors) == 1 and why in exc.value.errors[0], exc.value.errors


# ---- the bearer-tokens file

ADMIN = "A" * 24
CLIENT = "C" * 24


def _tokens(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    os.chmod(path, 0o600)
    return path


def test_an_emptied_tokens_file_keeps_the_tokens_in_force(tmp_path: Path) -> None:
    """``> tokens`` (an in-place rewrite caught between truncate and write, a full disk) revoked every
    token at the next call: every gateway UNAUTHENTICATED until the file was written again."""
    path = _tokens(tmp_path / "tokens", f"admin {ADMIN} ops\nclient {CLIENT} gw\n".encode())
    table = TokenTable(path)
    for emptied in (b"", b"\n  \n"):
        _tokens(path, emptied)
        assert table.lookup(CLIENT) is not None and table.lookup(ADMIN) is not None
        with pytest.raises(TokensError):
            parse_tokens(path)  # refused at start as well (exit 78 through load_config)


def test_a_tokens_file_cut_mid_line_is_refused(tmp_path: Path) -> None:
    """Cut inside a token, the first 18 of its 24 characters were taken as a valid token of its role."""
    path = _tokens(tmp_path / "tokens", f"admin {ADMIN} ops\nclient {CLIENT} gw\n".encode())
    table = TokenTable(path)
    _tokens(path, f"admin {ADMIN} ops\nclient {CLIENT[:18]}".encode())
    assert table.lookup(CLIENT[:18]) is None
    assert table.lookup(CLIENT) is not None
    with pytest.raises(TokensError, match="no newline"):
        parse_tokens(path)


def test_a_comment_only_tokens_file_still_revokes_every_token(tmp_path: Path) -> None:
    """Revoking the last token must stay possible without a restart: a comment says it is meant."""
    path = _tokens(tmp_path / "tokens", f"admin {ADMIN} ops\n".encode())
    table = TokenTable(path)
    _tokens(path, b"# no tokens: every one revoked\n")
    assert table.lookup(ADMIN) is None


# ---- reload races: what a reload sees while a deploy tool writes


def _entries(n: int, tag: str) -> bytes:
    return b"".join(f"{tag}{i}@evil.example\n".encode() for i in range(n))


def test_renamed_list_files_are_never_seen_half_written(tmp_path: Path) -> None:
    """Rename over the old file (as the README says): every accepted reload has one whole version."""
    old, new = _entries(3000, "old"), _entries(3000, "new")
    holder = PolicyHolder(_policy(tmp_path, old))
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            tmp = tmp_path / "senders.txt.new"
            tmp.write_bytes(new if i % 2 else old)
            os.replace(tmp, tmp_path / "senders.txt")
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(30):
            result = holder.reload()
            assert result.reloaded, result.errors
            senders = holder.current().block.senders
            assert len(senders) == 3000 and len({s[:3] for s in senders}) == 1
    finally:
        stop.set()
        t.join()


def test_a_kubernetes_style_symlink_flip_is_followed(tmp_path: Path) -> None:
    """A ConfigMap mount: policy.toml and senders.txt -> ..data/…, ..data -> a timestamped folder,
    swapped by renaming a new ..data link over it. The next reload reads the new version."""
    for version, tag in (("..v1", "old"), ("..v2", "new")):
        (tmp_path / version).mkdir()
        (tmp_path / version / "policy.toml").write_text(BLOCK)
        (tmp_path / version / "senders.txt").write_bytes(_entries(3, tag))
    (tmp_path / "..data").symlink_to("..v1")
    for name in ("policy.toml", "senders.txt"):
        (tmp_path / name).symlink_to(f"..data/{name}")
    holder = PolicyHolder(tmp_path / "policy.toml")
    assert "old0@evil.example" in holder.current().block.senders
    (tmp_path / "..data_tmp").symlink_to("..v2")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    assert holder.reload().reloaded
    assert holder.current().block.senders == {f"new{i}@evil.example" for i in range(3)}


def test_a_list_file_changed_alone_is_read_at_the_next_reload_even_with_the_same_mtime(
    tmp_path: Path,
) -> None:
    """No stat cache: a same-second, same-size edit of a list file (mtime put back, as cp -p does)
    is read at the next reload although the policy file itself did not change."""
    path = _policy(tmp_path, b"aaa@evil.example\n")
    holder = PolicyHolder(path)
    st = os.stat(tmp_path / "senders.txt")
    (tmp_path / "senders.txt").write_bytes(b"bbb@evil.example\n")
    os.utime(tmp_path / "senders.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert holder.reload().reloaded
    assert holder.current().block.senders == {"bbb@evil.example"}


def test_a_deleted_then_recreated_list_file_keeps_then_takes(tmp_path: Path) -> None:
    path = _policy(tmp_path, b"aaa@evil.example\n")
    holder = PolicyHolder(path)
    (tmp_path / "senders.txt").unlink()
    result = holder.reload()
    assert not result.reloaded and "cannot read list file" in result.errors[0]
    assert holder.current().block.senders == {"aaa@evil.example"}
    (tmp_path / "senders.txt").write_bytes(b"bbb@evil.example\n")
    assert holder.reload().reloaded  # one failure does not stop later reloads
    assert holder.current().block.senders == {"bbb@evil.example"}


def test_a_list_file_still_being_written_in_place_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rewritten in place and read when the writer stood at a line end, half a block list parsed
    and was taken (2 of 400 reloads in a probe of 4 KB writes). The writer goes on while the file
    is parsed: the change is seen, the reload refused, the previous list kept."""
    import spamgate.service.policy.policy_file as policy_file

    full = _entries(200, "x")
    path = _policy(tmp_path, full)
    holder = PolicyHolder(path)
    half = full[: full.index(b"x100@")]
    (tmp_path / "senders.txt").write_bytes(half)  # the writer truncated and wrote the first half
    real = policy_file.cut_short

    def writer_goes_on(p: Path, data: bytes) -> str | None:
        if p.name == "senders.txt":
            with open(p, "ab") as f:
                f.write(full[len(half) :])
        return real(p, data)

    monkeypatch.setattr(policy_file, "cut_short", writer_goes_on)
    result = holder.reload()
    assert not result.reloaded and "changed while it was being read" in result.errors[0], result.errors
    assert len(holder.current().block.senders) == 200
    monkeypatch.setattr(policy_file, "cut_short", real)
    assert holder.reload().reloaded and len(holder.current().block.senders) == 200
