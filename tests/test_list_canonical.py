"""Lists canonicalise entries and looked-up values alike, so a listed address cannot be respelled past them.

Each form below names the same IP, address or domain; every entry form must
match every lookup form, in allow lists as in block lists, whether the entry
came from the policy file, a list file, or the value from the envelope or a
header.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from spamgate.service.policy.decide import from_domain_of, from_header_allowed, recipient_groups
from spamgate.service.policy.lists import AddressList, canonical_ip, canonical_network
from spamgate.service.policy.policy_file import parse_policy
from spamgate.service.policy.settings import Action, Policy

IP = "203.0.113.5"
IP_FORMS = [
    "203.0.113.5",
    "203.000.113.005",  # zero-padded octets: decimal, never octal
    "203.0.113.005",
    "::ffff:203.0.113.5",  # IPv4-mapped IPv6
    "::FFFF:203.0.113.5",
    "::ffff:cb00:7105",  # the same, all hex
    "IPv6:::ffff:203.0.113.5",  # the SMTP address-literal form MTAs pass on
    "ipv6:::ffff:203.000.113.005",
    "[IPv6:::ffff:203.0.113.5]",
    "[203.0.113.5]",
    " 203.0.113.5 ",
]
NET_FORMS = [
    "203.0.113.0/24",
    "203.000.113.000/24",
    "::ffff:203.0.113.0/120",  # an IPv4-mapped network is the IPv4 network
    "IPv6:::ffff:203.0.113.0/120",
    "::ffff:cb00:7100/120",
    "203.0.113.0/255.255.255.0",
]
ADDRESS_FORMS = [
    "spammer@evil.example",
    "Spammer@Evil.Example",
    "SPAMMER@EVIL.EXAMPLE",
    "spammer@evil.example.",  # trailing dot: the root, the same domain
    "spammer@EVIL.example..",
    "<spammer@evil.example>",
    " <Spammer@Evil.Example.> ",
    "<@relay.example:spammer@evil.example>",  # obsolete source route
    "spammer@evil.example\u3002",  # ideographic full stop: a label separator (IDNA), so a trailing dot
    "spammer@evil\uff0eexample\uff0e",  # fullwidth full stops
    "spammer@evil.example\uff61",  # halfwidth ideographic full stop
    '"spammer"@evil.example',  # a quoted local part that needs no quotes is the same mailbox
    '"spam\\mer"@evil.example',
]
DOMAIN_ENTRY_FORMS = ["evil.example", "EVIL.Example", "evil.example.", ".evil.example", "*.evil.example"]
SUBDOMAIN_SENDER_FORMS = ["x@mail.evil.example", "X@Mail.EVIL.example.", "<x@MAIL.evil.example.>"]


@pytest.mark.parametrize("side", ["allow", "block"])
def test_ip_entries_match_every_spelling(side: str) -> None:
    for entry in [*IP_FORMS, *NET_FORMS]:
        lst = AddressList()
        lst.add("client_ips", entry)
        for ip in IP_FORMS:
            assert lst.match_ip(ip), (side, entry, ip)
        assert not lst.match_ip("203.0.114.5") and not lst.match_ip("::ffff:203.0.114.5"), entry
        assert not lst.match_ip("2001:db8::cb00:7105"), entry  # not a mapped address
    single = AddressList()
    single.add("client_ips", "IPv6:::ffff:203.000.113.005")
    assert not single.match_ip("203.0.113.6") and not single.match_ip("::ffff:203.0.113.6")


def test_native_ipv6_entries_still_match() -> None:
    lst = AddressList()
    lst.add("client_ips", "IPv6:2001:DB8::/32")
    for ip in ("2001:db8::5", "IPv6:2001:DB8::5", "[IPv6:2001:db8:0:0::5]", "2001:0db8::5"):
        assert lst.match_ip(ip), ip
    assert not lst.match_ip("2001:db9::5")


def test_canonical_forms() -> None:
    assert {str(canonical_ip(x)) for x in IP_FORMS} == {IP}
    assert {str(canonical_network(x)) for x in NET_FORMS} == {"203.0.113.0/24"}
    assert str(canonical_network("::ffff:203.0.113.5")) == "203.0.113.5/32"
    for bad in ("203.0.113.256", "203.0113.5", "IPv6:", "::ffff:203.0.113.5.1", "0x cb.0.113.5"):
        with pytest.raises(ValueError):
            canonical_ip(bad)


@pytest.mark.parametrize("kind", ["senders", "recipients"])
def test_address_entries_match_every_spelling(kind: str) -> None:
    for entry in ADDRESS_FORMS:
        lst = AddressList()
        lst.add(kind, entry)
        match = lst.match_sender if kind == "senders" else lst.match_recipient
        for addr in ADDRESS_FORMS:
            assert match(addr), (kind, entry, addr)
        assert not match("spammer@evil.example.org") and not match("spammer2@evil.example")


def test_domain_entries_match_every_spelling() -> None:
    for entry in DOMAIN_ENTRY_FORMS:
        lst = AddressList()
        lst.add("sender_domains", entry)
        for addr in ADDRESS_FORMS + SUBDOMAIN_SENDER_FORMS:
            assert lst.match_sender(addr) == "sender_domain evil.example", (entry, addr)
        assert not lst.match_sender("x@notevil.example") and not lst.match_sender("x@evil.example.org")


def test_internationalised_domains_match_in_either_form() -> None:
    for entry, sender in (
        ("bücher.example", "x@XN--BCHER-KVA.example."),
        ("xn--bcher-kva.example", "x@Bücher.Example"),
    ):
        lst = AddressList()
        lst.add("sender_domains", entry)
        assert lst.match_sender(sender) == "sender_domain xn--bcher-kva.example", entry
        # one label that is not a valid IDN does not keep the parent from matching
        assert lst.match_sender(f"x@{'ü' * 70}.bücher.example"), entry


POLICY = """\
trusted_authserv_ids = ["mx1.example.net"]
[allow]
senders = ["Friend@Partner.Example."]
client_ips = ["IPv6:::ffff:192.0.2.000/120"]
recipients = ["<Abuse@Example.NET.>"]
from_header_domains = ["BANK.example."]
[block]
client_ips_file = "blocked-ips.txt"
senders_file = "blocked-senders.txt"
sender_domains = ["*.Evil.Example."]
recipients = ["Trap@Example.Net."]
[[domain]]
name = "executives"
recipient_domains = ["Exec.Example.NET."]
"""


def decision(pol: Policy, ip: str = "", sender: str = "", rcpt: str = "") -> str:
    groups = recipient_groups(pol, ip, sender, (rcpt,) if rcpt else (), lambda: None)
    assert len(groups) == 1
    return groups[0].list_decision


def test_policy_files_canonicalise_at_load_and_at_match(tmp_path: Path) -> None:
    (tmp_path / "blocked-ips.txt").write_text(
        "# padded and mapped\n198.051.100.007\n::FFFF:198.51.100.128/121\n"
    )
    (tmp_path / "blocked-senders.txt").write_text("<Spammer@Bad.Example.>\n")
    (tmp_path / "policy.toml").write_text(POLICY)
    pol = parse_policy(tmp_path / "policy.toml")
    assert pol.block_action == Action.DELETE
    cases = [
        ({"ip": "IPv6:::ffff:198.51.100.7"}, "block: client_ip 198.51.100.7/32"),
        ({"ip": "198.51.100.200"}, "block: client_ip 198.51.100.128/25"),
        ({"ip": "[IPv6:::FFFF:198.51.100.130]"}, "block: client_ip 198.51.100.128/25"),
        ({"sender": "spammer@bad.example."}, "block: sender spammer@bad.example"),
        ({"sender": "<SPAMMER@BAD.EXAMPLE>"}, "block: sender spammer@bad.example"),
        ({"sender": "x@Mail.Evil.Example."}, "block: sender_domain evil.example"),
        ({"rcpt": "<trap@EXAMPLE.net.>"}, "block: recipient trap@example.net"),
        ({"sender": "friend@partner.example"}, "allow: sender friend@partner.example"),
        ({"sender": "<FRIEND@PARTNER.EXAMPLE.>"}, "allow: sender friend@partner.example"),
        ({"ip": "192.000.002.077"}, "allow: client_ip 192.0.2.0/24"),
        ({"ip": "IPv6:::ffff:192.0.2.77"}, "allow: client_ip 192.0.2.0/24"),
        ({"rcpt": "abuse@example.net."}, "allow: recipient abuse@example.net"),
    ]
    for env, expected in cases:
        assert decision(pol, **env) == expected, env
    assert decision(pol, ip="198.51.100.8", sender="x@good.example", rcpt="y@example.net") == ""
    assert pol.section_for("<Boss@EXEC.example.net.>")[0] == "executives"
    assert pol.section_for("boss@sub.exec.example.net")[0] == "executives"


def _policy(tmp_path: Path) -> Policy:
    """POLICY with its two list files, parsed."""
    (tmp_path / "blocked-ips.txt").write_text("198.51.100.7\n")
    (tmp_path / "blocked-senders.txt").write_text("spammer@bad.example\n")
    (tmp_path / "policy.toml").write_text(POLICY)
    return parse_policy(tmp_path / "policy.toml")


def test_authenticated_from_domain_is_canonical(tmp_path: Path) -> None:
    pol = _policy(tmp_path)
    headers = [
        ("Authentication-Results", "mx1.example.net; dmarc=pass header.from=Bank.Example."),
        ("From", "Bank <Info@BANK.example.>"),
    ]
    dom = from_domain_of(headers)
    assert dom == "bank.example"
    assert from_header_allowed(pol, headers, dom) == "from_header_domain bank.example (authenticated)"


def test_from_spoof_with_an_address_as_display_name(tmp_path: Path) -> None:
    """Issue 18: ``alerts@bank.example <x@evil.example>`` is from evil.example, for features and lists alike.

    email.utils.parseaddr said bank.example, so an allow list on bank.example passed the spoof.
    """
    from spamgate.model.parse import parse_address

    spoof = "alerts@bank.example <x@evil.example>"
    assert from_domain_of([("From", spoof)]) == "evil.example"
    parsed = parse_address(spoof)
    assert parsed is not None and parsed.address == "x@evil.example"
    pol = _policy(tmp_path)
    headers = [
        ("Authentication-Results", "mx1.example.net; dmarc=pass header.from=bank.example"),
        ("From", spoof),
    ]
    assert not from_header_allowed(pol, headers, from_domain_of(headers))
