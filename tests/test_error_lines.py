"""Policy and configuration errors name the line of the key in its own table (issue 18).

The old locator matched the first ``key =`` anywhere in the file, so an invalid
``[domain.thresholds] tag`` was reported at the global ``[thresholds] tag`` line,
list-file errors said ``:0:`` and configuration errors named no line at all.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from spamgate.service.policy.policy_file import parse_policy
from spamgate.service.policy.settings import PolicyError
from spamgate.service.runtime.config import ConfigError, load_config
from spamgate.service.runtime.toml_lines import KeyLines

NESTED = """\
[thresholds]
tag = 0.5
[[domain]]
name = "one"
recipient_domains = ["one.example"]
[domain.thresholds]
tag = 2
[[domain]]
name = "two"
recipient_domains = [
  "two.example",
  ["a nested array: no header"]
]
thresholds = { tag = 3 }
actions.subject_tag = 5
[domain.headers]
flag = "not a name"
"""


def policy_errors(path: Path) -> list[str]:
    with pytest.raises(PolicyError) as e:
        parse_policy(path)
    return e.value.errors


def test_key_lines_resolve_tables_arrays_and_inline_values() -> None:
    lines = KeyLines(NESTED + 'note = """\nflag = 1\n"""\n')
    assert lines.line_of("thresholds.tag") == 2
    assert lines.line_of("domain[0].thresholds.tag") == 7  # its own table, not the global tag at 2
    assert lines.line_of("domain[1].recipient_domains") == 10
    assert lines.line_of("domain[1].thresholds.tag") == 14  # inside an inline table: the table's line
    assert lines.line_of("domain[1].actions.subject_tag") == 15  # a dotted key
    assert lines.line_of("domain[1].headers.flag") == 17
    assert lines.line_of("domain[1].headers.note") == 18  # "flag = 1" inside the string is not a key
    assert lines.line_of("domain[1].sensitivity") == 8  # not written: the table that would hold it
    assert lines.line_of("nowhere") == 0


def test_policy_errors_in_nested_tables_name_their_own_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(NESTED)
    errors = policy_errors(path)
    assert sorted(errors) == sorted(
        [
            f"{path}:7: domain[0].thresholds.tag: a probability threshold must be in (0, 1], got 2",
            f"{path}:10: domain[1].recipient_domains: must be a non-empty list of domain names",
            f"{path}:14: domain[1].thresholds.tag: a probability threshold must be in (0, 1], got 3",
            f"{path}:15: domain[1].actions.subject_tag: must be str, got 5",
            f"{path}:17: domain[1].headers.flag: must be a header field name or \"\", got 'not a name'",
        ]
    ), errors


def test_list_file_errors_name_a_line(tmp_path: Path) -> None:
    (tmp_path / "ips.txt").write_text("192.0.2.1\n# a comment\nnot-an-ip\n")
    (tmp_path / "empty.txt").write_text("# nothing blocked this week\n")
    path = tmp_path / "policy.toml"
    path.write_text(
        '[allow]\nsenders = ["a@b.example"]\n'
        '[block]\nclient_ips_file = "ips.txt"\nsenders_file = "empty.txt"\n'
        'sender_domains_file = ["missing.txt"]\n'
    )
    errors = policy_errors(path)
    assert len(errors) == 3, errors
    assert f"{tmp_path / 'ips.txt'}:3: client_ips: 'not-an-ip' is not an IP address or CIDR block" in errors
    # A file as a whole has no line of its own: the policy line naming it.
    assert any(
        e.startswith(f"{path}:5: block.senders_file: the list file {tmp_path / 'empty.txt'} has no entries")
        for e in errors
    ), errors
    assert (
        f"{path}:6: block.sender_domains_file: cannot read list file {tmp_path / 'missing.txt'}: "
        "No such file or directory"
    ) in errors
    assert not [e for e in errors if ":0:" in e]


def test_configuration_errors_name_their_line(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(NESTED.replace("tag = 2", "tag = 0.9"))  # errors left: domain[1]'s
    config = tmp_path / "spamgate.toml"
    config.write_text(
        "# spamgate\n"
        "[server]\n"
        "workers = 4\n"
        "wokers = 3\n"
        "[metrics]\n"
        "port = 70000\n"
        "[logging]\n"
        'format = "xml"\n'
        "[policy]\n"
        f'file = "{policy}"\n'
        "[surprise]\n"
    )
    with pytest.raises(ConfigError) as e:
        load_config(config)
    errors = e.value.errors
    for expected in (
        f"{config}:4: [server] unknown key 'wokers'",
        f"{config}:6: [metrics] port must be in 0..65535, got 70000",
        f"{config}:8: [logging] format must be 'json' or 'text'",
        f"{config}:10: [policy] file: {policy}:10: domain[1].recipient_domains:",
        f"{config}:11: unknown section [surprise]",
    ):
        assert any(x.startswith(expected) for x in errors), (expected, errors)
    # A value from the command line is not the file's: its error names no line of the file.
    with pytest.raises(ConfigError) as e:
        load_config(config, {"metrics": {"port": 80000}})
    assert "[metrics] port must be in 0..65535, got 80000" in e.value.errors
