"""Admin policy: lists and precedence, FPR thresholds, domain groups, validation, reload, gRPC actions."""

from __future__ import annotations

import ipaddress
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict, Unpack

import grpc
import pytest

from spamgate.model.artifact import Artifact
from spamgate.model.manifest import OperatingPoint
from spamgate.service.api.client import SpamGateClient, envelope
from spamgate.service.api.proto_gen import spamgate_pb2 as pb
from spamgate.service.policy.decide import authenticated_from_domains, from_domain_of
from spamgate.service.policy.lists import AddressList
from spamgate.service.policy.policy_file import PolicyHolder, parse_policy
from spamgate.service.policy.settings import Action, Policy, PolicyError, threshold_for_fpr
from spamgate.service.runtime.config import load_config
from spamgate.service.scoring.model_holder import ModelHolder
from spamgate.service.scoring.verdict import Envelope, Request, Verdict, build_verdict
from tests.conftest import serve_with_policy
from tests.mail import make

POINTS = [
    OperatingPoint("fpr_1%", target_fpr=0.01, threshold=0.90, fpr=0.01, catch=0.99),
    OperatingPoint("fpr_0.1%", target_fpr=0.001, threshold=0.97, fpr=0.001, catch=0.98),
    OperatingPoint("fpr_0.01%", target_fpr=0.0001, threshold=0.995, fpr=0.0001, catch=0.9),
]


def write(tmp: Path, text: str, name: str = "policy.toml") -> Path:
    p = tmp / name
    p.write_text(text)
    return p


@pytest.fixture()
def holder(small_model: Artifact) -> ModelHolder:
    h = ModelHolder()
    assert small_model.path is not None
    h.load(small_model.path)
    return h


class Env(TypedDict, total=False):
    """The envelope fields a case may set; typed so a misspelt key or a bare-string rcpt fails mypy."""

    ip: str
    sender: str
    rcpt: list[str]


def verdict(holder: ModelHolder, policy: Policy, raw: bytes = b"", **env: Unpack[Env]) -> Verdict:
    e = Envelope(
        client_ip=env.get("ip", ""),
        mail_from=env.get("sender", ""),
        rcpt_to=tuple(env.get("rcpt", ())),
    )
    return build_verdict(Request(message=raw or make(), envelope=e), holder, policy, 10_000_000)


# ---- thresholds


def test_fpr_threshold_translation() -> None:
    assert threshold_for_fpr(POINTS, 0.01) == (0.90, 0.01)
    assert threshold_for_fpr(POINTS, 0.005) == (0.97, 0.001)  # conservative: the next stricter point
    assert threshold_for_fpr(POINTS, 0.00001) == (0.995, 0.0001)  # below the smallest: the smallest
    assert threshold_for_fpr([], 0.01) is None


def test_fpr_thresholds_follow_the_model(tmp_path: Path) -> None:
    pol = parse_policy(write(tmp_path, "[thresholds]\ntag_at_fpr = 0.01\nreroute = 0.99\nreject = 'off'\n"))
    s = pol.settings
    # The label names the action, the target FPR, the probability it became and the point used.
    assert s.decide(0.95, POINTS) == (Action.TAG, "tag: at FPR 1% → p >= 0.9 (model point FPR 1%)")
    assert s.decide(0.999, POINTS) == (Action.REROUTE, "reroute: p >= 0.99")
    other_model = [OperatingPoint("fpr_1%", target_fpr=0.01, threshold=0.5, fpr=0.01, catch=0.9)]
    assert s.decide(0.6, other_model)[0] == Action.TAG and s.decide(0.6, POINTS)[0] == Action.DELIVER
    assert s.decide(0.995, POINTS)[0] == Action.REROUTE  # probability threshold, most severe wins
    assert s.decide(0.1, POINTS) == (Action.DELIVER, "")


def test_sensitivity_presets(tmp_path: Path) -> None:
    for name in ("lenient", "balanced", "aggressive"):
        pol = parse_policy(write(tmp_path, f'sensitivity = "{name}"\n'))
        assert pol.settings.resolve(POINTS)
    lenient = parse_policy(write(tmp_path, 'sensitivity = "lenient"\n')).settings
    aggressive = parse_policy(write(tmp_path, 'sensitivity = "aggressive"\n')).settings
    assert (
        lenient.decide(0.92, POINTS)[0] == Action.DELIVER
        and aggressive.decide(0.92, POINTS)[0] != Action.DELIVER
    )


# ---- lists and precedence


def test_every_list_kind(holder: ModelHolder, tmp_path: Path) -> None:
    pol = parse_policy(
        write(
            tmp_path,
            """
[allow]
senders = ["Boss@Example.com"]
sender_domains = ["partner.example"]
client_ips = ["192.0.2.0/24", "2001:db8::/32"]
recipients = ["abuse@example.net"]
[block]
senders = ["spammer@bad.example"]
sender_domains = ["bad2.example"]
client_ips = ["198.51.100.7"]
recipients = ["trap@example.net"]
""",
        )
    )
    cases: list[tuple[Env, Action, str]] = [
        ({"sender": "boss@example.com"}, Action.DELIVER, "allow: sender boss@example.com"),
        ({"sender": "x@mail.partner.example"}, Action.DELIVER, "allow: sender_domain partner.example"),
        ({"ip": "192.0.2.77"}, Action.DELIVER, "allow: client_ip 192.0.2.0/24"),
        ({"ip": "2001:db8::5"}, Action.DELIVER, "allow: client_ip 2001:db8::/32"),
        ({"rcpt": ["abuse@example.net"]}, Action.DELIVER, "allow: recipient abuse@example.net"),
        ({"sender": "<spammer@bad.example>"}, Action.DELETE, "block: sender spammer@bad.example"),
        ({"sender": "a@x.bad2.example"}, Action.DELETE, "block: sender_domain bad2.example"),
        ({"ip": "198.51.100.7"}, Action.DELETE, "block: client_ip 198.51.100.7/32"),
        ({"rcpt": ["trap@example.net"]}, Action.DELETE, "block: recipient trap@example.net"),
    ]
    for env, action, decision in cases:
        v = verdict(holder, pol, **env)
        assert (v.action, v.list_decision) == (action, decision), env
        assert not v.scanned and v.model_version == ""
    v = verdict(holder, pol, sender="someone@else.example")
    assert v.scanned and v.list_decision == "" and v.model_version


def test_precedence(holder: ModelHolder, tmp_path: Path) -> None:
    pol = parse_policy(
        write(
            tmp_path,
            """
block_action = "REJECT"
[allow]
recipients = ["postmaster@example.net"]
senders = ["friend@bad.example"]
[block]
sender_domains = ["bad.example"]
""",
        )
    )
    # allow-recipient beats block
    v = verdict(holder, pol, sender="friend@bad.example", rcpt=["postmaster@example.net"])
    assert v.action == Action.DELIVER and "recipient" in v.list_decision
    # block beats allow-sender
    v = verdict(holder, pol, sender="friend@bad.example", rcpt=["bob@example.net"])
    assert v.action == Action.REJECT and v.list_decision.startswith("block:") and v.reject_text
    # mixed recipients: groups, strictest on top
    v = verdict(holder, pol, sender="friend@bad.example", rcpt=["postmaster@example.net", "bob@example.net"])
    assert v.action == Action.REJECT and len(v.groups) == 2
    assert {g.action for g in v.groups} == {Action.DELIVER, Action.REJECT}


def test_spoofed_from_is_not_allowed(holder: ModelHolder, tmp_path: Path) -> None:
    pol = parse_policy(
        write(
            tmp_path,
            """
trusted_authserv_ids = ["mx.example.net"]
[allow]
from_header_domains = ["bank.example"]
""",
        )
    )
    base = {"From": "Bank <alerts@bank.example>"}
    spoofed = make(base)
    fake_ar = make(
        base, extra=[("Authentication-Results", "evil.example; dmarc=pass header.from=bank.example")]
    )
    good = make(
        base,
        extra=[
            (
                "Authentication-Results",
                "mx.example.net; dkim=pass header.d=bank.example; dmarc=pass header.from=bank.example",
            )
        ],
    )
    failed = make(
        base, extra=[("Authentication-Results", "mx.example.net; dmarc=fail header.from=bank.example")]
    )
    assert verdict(holder, pol, spoofed).scanned
    assert verdict(holder, pol, fake_ar).scanned  # untrusted authserv-id
    assert verdict(holder, pol, failed).scanned
    v = verdict(holder, pol, good)
    assert not v.scanned and "authenticated" in v.list_decision
    assert authenticated_from_domains(
        [("Authentication-Results", "mx.example.net; dmarc=pass header.from=a.example")],
        frozenset({"mx.example.net"}),
    ) == {"a.example"}


def test_from_allow_reads_the_mailbox_the_features_read(holder: ModelHolder, tmp_path: Path) -> None:
    pol = parse_policy(
        write(
            tmp_path,
            'trusted_authserv_ids = ["mx.example.net"]\n[allow]\nfrom_header_domains = ["bank.example"]\n',
        )
    )
    ar = ("Authentication-Results", "mx.example.net; dmarc=pass header.from=bank.example")
    # The display text names the bank, the mailbox is the attacker's: never allowed as the bank.
    assert from_domain_of([("From", "alerts@bank.example <x@evil.example>")]) == "evil.example"
    assert verdict(holder, pol, make({"From": "alerts@bank.example <x@evil.example>"}, extra=[ar])).scanned
    assert not verdict(holder, pol, make({"From": "Bank <alerts@bank.example>"}, extra=[ar])).scanned
    # From headers that broke the stdlib parser (RecursionError → no verdict) get one.
    for hostile in ("(" * 1000, "a:" * 1000, "@" * 60000):
        assert verdict(holder, pol, make({"From": hostile}, extra=[ar])).scanned


def test_from_header_allow_requires_trusted_hosts(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="spoofable"):
        parse_policy(write(tmp_path, '[allow]\nfrom_header_domains = ["bank.example"]\n'))


def test_domain_sections_make_groups(holder: ModelHolder, tmp_path: Path) -> None:
    pol = parse_policy(
        write(
            tmp_path,
            """
[thresholds]
tag = 0.999999
reroute = "off"
reject = "off"
[[domain]]
name = "strict"
recipient_domains = ["strict.example"]
[domain.thresholds]
tag = 0.000001
[domain.actions]
subject_tag = "[STRICT] "
""",
        )
    )
    v = verdict(holder, pol, rcpt=["a@strict.example", "b@sub.strict.example", "c@example.net"])
    groups = {g.policy: g for g in v.groups}
    assert groups["strict"].recipients == ("a@strict.example", "b@sub.strict.example")
    assert groups["strict"].action == Action.TAG and groups["strict"].subject_tag == "[STRICT] "
    assert groups["default"].action == Action.DELIVER and groups["default"].recipients == ("c@example.net",)
    assert v.action == Action.TAG and v.scanned


def test_large_lists_are_fast(tmp_path: Path) -> None:
    rng = random.Random(1)
    nets = {
        f"{ipaddress.IPv4Address(rng.getrandbits(32))}/{rng.choice([24, 28, 32])}" for _ in range(100_000)
    }
    senders = [f"user{i}@domain{i % 5000}.example" for i in range(100_000)]
    (tmp_path / "ips.txt").write_text("# blocked networks\n" + "\n".join(nets) + "\n")
    (tmp_path / "senders.txt").write_text("\n".join(senders) + "\n")
    pol = parse_policy(
        write(tmp_path, '[block]\nclient_ips_file = "ips.txt"\nsenders_file = "senders.txt"\n')
    )
    assert pol.block.sizes()["senders"] == 100_000 and pol.block.sizes()["client_ips"] >= 99_000
    some_net = next(iter(nets))
    inside = str(ipaddress.ip_network(some_net, strict=False).network_address)
    t = time.perf_counter()
    for _ in range(10_000):
        assert pol.block.match_ip(inside)
        assert pol.block.match_sender("user99999@domain4999.example")
        pol.block.match_ip("203.0.113.9")
    assert time.perf_counter() - t < 5.0  # ~µs per lookup; generous bound for slow CI machines


def test_list_file_errors_name_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "ips.txt").write_text("192.0.2.1\n# ok comment\nnot-an-ip\n10.0.0.0/8\n")
    with pytest.raises(PolicyError) as e:
        parse_policy(write(tmp_path, '[allow]\nclient_ips_file = "ips.txt"\n'))
    assert any("ips.txt:3: client_ips" in x for x in e.value.errors)


# ---- validation and reload


BAD = """
sensitivity = "paranoid"
colour = "blue"
[thresholds]
tag = 1.5
reroute_at_fpr = 2
[actions]
reroute_to = "not-an-address"
[allow]
senders = ["no-at-sign"]
"""


def test_bad_file_lists_every_error(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    with pytest.raises(PolicyError) as e:
        parse_policy(path)
    text = "\n".join(e.value.errors)
    for expected in (
        "sensitivity: unknown preset 'paranoid'",
        "colour: unknown key",
        "thresholds.tag: a probability",
        "thresholds.reroute_at_fpr",
        "actions.reroute_to",
        "allow.senders",
    ):
        assert expected in text, expected
    assert f"{path}:2: sensitivity" in text and f"{path}:3: colour" in text


def test_bad_file_at_start_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    from spamgate.service.runtime.config import ConfigError

    with pytest.raises(ConfigError, match="paranoid"):
        load_config(None, {"policy": {"file": str(path)}})


def test_reload_keeps_old_policy_on_bad_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[allow]\nsenders = ["a@example.org"]\n')
    holder = PolicyHolder(path)
    v1 = holder.current().version
    write(tmp_path, BAD)
    result = holder.reload()
    assert not result.reloaded and result.errors and holder.current().version == v1
    assert holder.current().allow.match_sender("a@example.org")
    write(tmp_path, '[allow]\nsenders = ["b@example.org"]\n')
    result = holder.reload()
    assert result.reloaded and holder.current().version != v1
    assert holder.current().allow.match_sender("b@example.org") and not holder.current().allow.match_sender(
        "a@example.org"
    )


def test_address_list_rejects_garbage() -> None:
    lst = AddressList()
    for kind, entry in (
        ("senders", "x"),
        ("client_ips", "300.1.1.1"),
        ("sender_domains", "a b"),
        ("nope", "x"),
    ):
        with pytest.raises(ValueError):
            lst.add(kind, entry)


# ---- over gRPC


@pytest.fixture()
def policy_server(small_model: Artifact, tmp_path: Path) -> Iterator[tuple[SpamGateClient, Path]]:
    path = write(
        tmp_path,
        """
block_action = "DELETE"
[thresholds]
tag = 0.000001
reroute = "off"
reject = "off"
[actions]
subject_tag = "[SPAM] "
[allow]
senders = ["friend@example.org"]
[block]
senders = ["rejectme@bad.example"]
[[domain]]
name = "quarantine"
recipient_domains = ["q.example"]
[domain.thresholds]
reroute = 0.000001
[domain.actions]
reroute_to = "quarantine@example.net"
[[domain]]
name = "rejecting"
recipient_domains = ["r.example"]
[domain.thresholds]
reject = 0.000001
""",
    )
    with serve_with_policy(small_model, path, tmp_path / "admin.sock") as client:
        yield client, path


def test_grpc_round_trip_for_each_action(policy_server: tuple[SpamGateClient, Path]) -> None:
    c, _ = policy_server
    cases = [
        (envelope(mail_from="friend@example.org", rcpt_to=["x@example.net"]), pb.ACTION_DELIVER),
        (envelope(mail_from="a@b.example", rcpt_to=["x@example.net"]), pb.ACTION_TAG),
        (envelope(mail_from="a@b.example", rcpt_to=["x@q.example"]), pb.ACTION_REROUTE),
        (envelope(mail_from="a@b.example", rcpt_to=["x@r.example"]), pb.ACTION_REJECT),
        (envelope(mail_from="rejectme@bad.example", rcpt_to=["x@example.net"]), pb.ACTION_DELETE),
    ]
    for env, action in cases:
        r = c.classify(make(), env)
        assert r.action == action, (env, r)
        assert r.policy_version and len(r.groups) == 1
    r = c.classify(make(), cases[1][0])
    assert r.subject_tag == "[SPAM] " and r.scanned and "tag:" in r.threshold
    r = c.classify(make(), cases[2][0])
    assert r.reroute_to == "quarantine@example.net"
    r = c.classify(make(), cases[3][0])
    assert r.reject_text.startswith("5.7.1")
    r = c.classify(make(), cases[0][0])
    assert not r.scanned and r.list_decision == "allow: sender friend@example.org"


def test_grpc_reload_and_get_policy(policy_server: tuple[SpamGateClient, Path], tmp_path: Path) -> None:
    c, path = policy_server
    admin = SpamGateClient(f"unix:{tmp_path / 'admin.sock'}")  # ReloadPolicy is refused on TCP
    info = admin.stub.GetPolicy(pb.GetPolicyRequest())
    assert info.version and info.source == str(path) and info.thresholds
    assert c.stub.GetPolicy(pb.GetPolicyRequest()).source == ""  # no path for a caller without admin
    good = path.read_text()
    path.write_text("this is [not toml")
    bad = admin.stub.ReloadPolicy(pb.ReloadPolicyRequest())
    assert not bad.reloaded and bad.errors and bad.version == info.version
    assert str(path) in bad.errors[0]
    assert str(path.parent) not in "".join(c.stub.GetPolicy(pb.GetPolicyRequest()).errors)
    r = c.classify(make(), envelope(mail_from="friend@example.org"))
    assert r.action == pb.ACTION_DELIVER  # old policy still in force
    path.write_text(good.replace('senders = ["friend@example.org"]', 'senders = ["other@example.org"]'))
    ok = admin.stub.ReloadPolicy(pb.ReloadPolicyRequest())
    admin.close()
    assert ok.reloaded and ok.version != info.version
    r = c.classify(make(), envelope(mail_from="friend@example.org"))
    assert r.scanned and c.model_info().policy_version == ok.version


def test_unknown_policy_name(policy_server: tuple[SpamGateClient, Path]) -> None:
    c, _ = policy_server
    with pytest.raises(grpc.RpcError) as e:
        c.classify(make(), policy="other")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
