"""Admin policy matching against an attacker who writes every byte of a message and of its envelope.

The allow lists pass mail without scanning, so what an allow entry matches on must be something the
attacker cannot write; a block entry must not be missed by a respelling; a recipient cannot pull the
other recipients under a laxer section. Each case below is one such attempt (adversarial review).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from spamgate.service.policy.decide import authenticated_from_domains, from_header_allowed, recipient_groups
from spamgate.service.policy.lists import AddressList
from spamgate.service.policy.policy_file import parse_policy
from spamgate.service.policy.settings import Action, Policy
from spamgate.service.scoring.model_holder import ModelHolder
from spamgate.service.scoring.verdict import Envelope, Request, Verdict, build_verdict
from tests.mail import make

TRUSTED = frozenset({"mx1.example.net"})


def verified(ar: str) -> set[str]:
    return authenticated_from_domains([("Authentication-Results", ar)], TRUSTED)


# --- Q1: the authenticated-From allow list believes only what the trusted host verified -------------
#
# A trusted border host copies attacker-chosen text into its own Authentication-Results header: the
# envelope sender (smtp.mailfrom, and "domain of <sender> designates …" in the SPF comment, as Google
# and rspamd write it), the HELO name (smtp.helo), reason strings. The results were read with a regex
# over the whole text, so "dkim=pass header.d=bank.example" anywhere in it counted as a DKIM pass for
# the bank: all four cases below were verified as bank.example, and a From: of the bank with such a
# header was delivered unscanned.
FORGED_IN_TRUSTED_HEADER = [
    'mx1.example.net; spf=fail smtp.mailfrom="x dkim=pass header.d=bank.example x"@evil.example; dkim=none',
    "mx1.example.net; spf=softfail (mx1.example.net: domain of "
    '"a dkim=pass header.d=bank.example b"@evil.example does not designate 203.0.113.9 as permitted '
    'sender) smtp.mailfrom="a dkim=pass header.d=bank.example b"@evil.example',
    "mx1.example.net; spf=none smtp.helo=dkim=pass.header.d=bank.example; dkim=none",
    'mx1.example.net; dkim=fail reason="dkim=pass header.d=bank.example" header.d=evil.example',
    "mx1.example.net; dkim=pass header.d=evil.example header.i=header.d=bank.example",
    "mx1.example.net; dkim=pass (header.d=bank.example) header.d=evil.example",
    "mx1.example.net; x-dkim=pass header.d=bank.example; dkim=none",
    "mx1.example.net; dkim=passed header.d=bank.example",
    "mx1.example.net; dkim=pass smtp.mailfrom=x@evil.example; header.d=bank.example",
]


@pytest.mark.parametrize("ar", FORGED_IN_TRUSTED_HEADER)
def test_attacker_text_in_a_trusted_header_is_no_pass(ar: str) -> None:
    assert "bank.example" not in verified(ar), ar


@pytest.mark.parametrize(
    ("ar", "domains"),
    [
        ("mx1.example.net; dmarc=pass (p=none dis=none) header.from=bank.example", {"bank.example"}),
        # OpenDKIM's own form: a ";" inside the comment ended the result before header.d was read,
        # so a genuine DKIM pass was not seen (the allow list failed closed).
        (
            "mx1.example.net; dkim=pass (2048-bit key; unprotected) header.d=bank.example "
            'header.i=@bank.example header.b="AbCd+/12"',
            {"bank.example"},
        ),
        ('mx1.example.net; dkim=pass reason="2048-bit key; secure" header.d=bank.example', {"bank.example"}),
        ("mx1.example.net 1; DKIM = Pass header.D = Bank.Example.", {"bank.example"}),
        ('mx1.example.net; dkim=pass header.d="bank.example"', {"bank.example"}),
        (
            "mx1.example.net;\r\n\tspf=pass (mx1.example.net: domain of x@evil.example designates "
            "203.0.113.9 as permitted sender) smtp.mailfrom=x@evil.example;\r\n\t"
            "dkim=pass header.d=other.example header.s=s1;\r\n\t"
            "dmarc=pass (p=reject) header.from=bank.example",
            {"other.example", "bank.example"},
        ),
        ("mx1.example.net; dkim=fail header.d=bank.example", set()),
        ("evil.example; dmarc=pass header.from=bank.example", set()),
    ],
)
def test_genuine_results_are_read(ar: str, domains: set[str]) -> None:
    assert verified(ar) == domains


def _policy(tmp_path: Path, text: str) -> Policy:
    (tmp_path / "policy.toml").write_text(text)
    return parse_policy(tmp_path / "policy.toml")


def _verdict(policy: Policy, raw: bytes, sender: str = "", rcpt: tuple[str, ...] = ()) -> Verdict:
    """A verdict that must come from the lists alone: the holder has no model to score with."""
    req = Request(message=raw, envelope=Envelope(client_ip="", mail_from=sender, rcpt_to=rcpt))
    return build_verdict(req, ModelHolder(), policy, 10_000_000)


ALLOW_BANK = 'trusted_authserv_ids = ["mx1.example.net"]\n[allow]\nfrom_header_domains = ["bank.example"]\n'


def test_a_forged_pass_in_the_envelope_sender_does_not_allow(tmp_path: Path) -> None:
    """End to end: a From: of the bank, the trusted host's header quoting the attacker's MAIL FROM."""
    pol = _policy(tmp_path, ALLOW_BANK)
    sender = '"a dkim=pass header.d=bank.example b"@evil.example'
    ar = (
        f"mx1.example.net; spf=softfail (mx1.example.net: domain of {sender} does not designate "
        f"203.0.113.9 as permitted sender) smtp.mailfrom={sender}; dkim=none; "
        "dmarc=fail header.from=bank.example"
    )
    headers = [("Authentication-Results", ar), ("From", "Bank <alerts@bank.example>")]
    assert from_header_allowed(pol, headers, "bank.example") is None
    groups = recipient_groups(
        pol, "", sender, ("bob@example.net",), lambda: from_header_allowed(pol, headers, "bank.example")
    )
    assert [g.list_decision for g in groups] == [""]  # the model decides


def test_envelope_sender_allow_is_forgeable_by_design(tmp_path: Path) -> None:
    """``senders`` / ``sender_domains`` match MAIL FROM, which the sender writes: a forged one passes.

    Pinned so a change of meaning is seen: this is SpamAssassin's ``whitelist_from`` (which its
    manual warns against), not ``whitelist_auth``; only ``from_header_domains`` asks for authentication.
    """
    pol = _policy(tmp_path, '[allow]\nsender_domains = ["partner.example"]\n')
    raw = make({"From": "Partner <ceo@partner.example>"})
    v = _verdict(pol, raw, sender="ceo@partner.example", rcpt=("bob@example.net",))
    assert v.action == Action.DELIVER and not v.scanned
    # The From header and its display name alone never allow: only the envelope sender was listed.
    pol2 = _policy(tmp_path, '[allow]\nsenders = ["ceo@partner.example"]\n')
    groups = recipient_groups(pol2, "", "x@evil.example", ("bob@example.net",), lambda: None)
    assert [g.list_decision for g in groups] == [""]


# --- [block] from_header_domains: accepted by the parser ("same keys" as [allow]), never matched ----


def test_block_by_from_header_domain_blocks(tmp_path: Path) -> None:
    """A From-header domain on the block list blocks: without authentication, since a forged From
    only gets the forger's own message blocked. It was parsed and then never looked at."""
    pol = _policy(tmp_path, '[block]\nfrom_header_domains = ["Evil.Example."]\n')
    for from_ in ("x@evil.example", "X <x@MAIL.EVIL.example.>", "bank@bank.example <x@evil.example>"):
        v = _verdict(pol, make({"From": from_}), sender="bounce@elsewhere.example", rcpt=("bob@example.net",))
        assert v.action == Action.DELETE and not v.scanned, from_
        assert v.list_decision == "block: from_header_domain evil.example", from_
    # allow-recipient still comes first, as for every block
    pol = _policy(
        tmp_path,
        '[allow]\nrecipients = ["abuse@example.net"]\n[block]\nfrom_header_domains = ["evil.example"]\n',
    )
    v = _verdict(pol, make({"From": "x@evil.example"}), rcpt=("abuse@example.net",))
    assert v.action == Action.DELIVER and v.list_decision == "allow: recipient abuse@example.net"


# --- Q2: address and domain respellings ---------------------------------------------------------

ALLOW_PARTNER = AddressList()
ALLOW_PARTNER.add("senders", "ceo@partner.example")
ALLOW_PARTNER.add("sender_domains", "partner.example")


@pytest.mark.parametrize(
    "sender",
    [
        "ceo@evil-partner.example",  # a suffix that is not a label boundary
        "ceo@partner.example.evil.net",  # the listed domain as a prefix
        "ceo@partnerXexample",
        "ceo@partner.example@evil.example",  # the last "@" names the domain, as MTAs route it
        '"ceo@partner.example"@evil.example',  # quoted local part holding the listed address
        "<@partner.example:ceo@evil.example>",  # a source route through the listed domain
        "ceo%partner.example@evil.example",  # percent hack: routed to evil.example first
        "partner.example!ceo@evil.example",  # bang path
        "ceo@[partner.example]",  # not a domain name
        "ceo@partner.example\x00.evil.example",
        "",  # the null sender <>
        "<>",
    ],
)
def test_lookalike_senders_do_not_match_an_allow_entry(sender: str) -> None:
    assert ALLOW_PARTNER.match_sender(sender) is None, sender


BLOCK_EVIL = AddressList()
BLOCK_EVIL.add("senders", "spammer@evil.example")
BLOCK_EVIL.add("sender_domains", "evil.example")


@pytest.mark.parametrize(
    "sender",
    [
        "SPAMMER@EVIL.EXAMPLE",
        "spammer@evil.example.",
        "<spammer@evil.example>",
        " spammer@evil.example\r\n",
        "\tspammer@evil.example ",
        "<@relay.example:spammer@evil.example>",
        "<@a.example,@b.example:spammer@evil.example>",
        '"spammer"@evil.example',
        '"a@b"@evil.example',
        "x@mail.evil.example",
        "x@MAIL.Evil.Example..",
        "x@.evil.example",
        "x@evil.example\u3002",
        "x@" + "a." * 120 + "evil.example",
    ],
)
def test_respelled_senders_still_hit_a_block_entry(sender: str) -> None:
    assert BLOCK_EVIL.match_sender(sender) is not None, sender


@pytest.mark.parametrize(
    ("entry", "same", "other"),
    [
        # IDNA2008 deviation characters: straße is xn--strae-oqa, its own domain, not strasse.
        (
            "xn--strae-oqa.example",
            ["x@straße.example", "x@STRAßE.Example.", "x@ｓｔｒａßｅ.example"],
            ["x@strasse.example"],
        ),
        ("straße.example", ["x@xn--strae-oqa.example", "x@Straße.example"], ["x@strasse.example"]),
        ("strasse.example", ["x@STRASSE.example"], ["x@straße.example", "x@xn--strae-oqa.example"]),
        ("xn--kxa6akbbkh.example", ["x@σίσυφοσ.example", "x@ΣΊΣΥΦΟΣ.example"], ["x@σίσυφος.example"]),
        ("ｂａｎｋ.example", ["x@bank.example", "x@BANK.example"], []),
    ],
)
def test_internationalised_domains_are_read_as_idna2008(
    entry: str, same: list[str], other: list[str]
) -> None:
    """Python's idna codec is IDNA2003 (ß → ss): the A-label block entry missed the U-label sender."""
    lst = AddressList()
    lst.add("sender_domains", entry)
    for addr in same:
        assert lst.match_sender(addr), (entry, addr)
    for addr in other:
        assert lst.match_sender(addr) is None, (entry, addr)


def test_an_authenticated_lookalike_is_not_the_listed_domain(tmp_path: Path) -> None:
    """The owner of straße.example passes DMARC for it; the allow entry is strasse.example."""
    pol = _policy(tmp_path, ALLOW_BANK.replace("bank.example", "strasse.example"))
    headers = [("Authentication-Results", "mx1.example.net; dmarc=pass header.from=straße.example")]
    assert from_header_allowed(pol, headers, "xn--strae-oqa.example") is None
    from spamgate.service.policy.decide import from_domain_of

    headers.append(("From", "Bank <alerts@straße.example>"))
    assert from_header_allowed(pol, headers, from_domain_of(headers)) is None


# --- Q3: several recipients, several sections ---------------------------------------------------

# Every scanned message is tagged, nothing rerouted or rejected: the section decides the rest.
TAG_ALL = """\
[thresholds]
tag = 0.000001
reroute = "off"
reject = "off"
"""
SECTIONS = """\
[allow]
recipients = ["abuse@example.net"]
""" + TAG_ALL + """\
[[domain]]
name = "lax"
recipient_domains = ["lax.example.net"]
[domain.thresholds]
tag = "off"
"""


def test_a_lax_recipient_does_not_relax_the_others(tmp_path: Path) -> None:
    """Each recipient gets its own section; the message gets the strictest group's action.

    An attacker who adds a recipient under a lax section, or an allow-listed mailbox, in first
    place or last, gets that recipient its own group and leaves every other recipient's action
    as it was; the top-level action a milter applies is never lowered by it.
    """
    pol = _policy(tmp_path, SECTIONS)
    assert pol.section_for("<Boss@LAX.example.net.>")[0] == "lax"
    assert pol.section_for("boss@lax.example.net.evil.example")[0] == "default"
    assert pol.section_for("boss@notlax.example.net")[0] == "default"
    assert pol.section_for('"boss@lax.example.net"@example.net')[0] == "default"
    for rcpts in (
        ("bob@example.net", "x@lax.example.net", "abuse@example.net"),
        ("abuse@example.net", "x@lax.example.net", "bob@example.net"),
    ):
        groups = recipient_groups(pol, "", "", rcpts, lambda: None)
        by_rcpt = {r: g for g in groups for r in g.recipients}
        assert (
            by_rcpt["bob@example.net"].policy == "default" and by_rcpt["bob@example.net"].list_action is None
        )
        assert by_rcpt["x@lax.example.net"].policy == "lax"
        assert by_rcpt["abuse@example.net"].list_action == Action.DELIVER


MARKED_SECTIONS = TAG_ALL + """\
[actions]
subject_tag = "[SPAM] "
[[domain]]
name = "lab"
recipient_domains = ["lab.example.net"]
[domain.actions]
subject_tag = ""
[domain.headers]
flag = "X-Lab-Flag"
"""


def test_recipient_order_does_not_choose_how_the_message_is_marked(tmp_path: Path) -> None:
    """Groups tied on the strictest action: the policy's section order decides, not RCPT TO order.

    The first recipient's group used to speak, so a sender who put a recipient of a section with no
    subject tag first took "[SPAM] " and X-Spam-Flag off bob's copy.
    """
    from spamgate.model.bundled import bundled_model_path

    pol = _policy(tmp_path, MARKED_SECTIONS)
    holder = ModelHolder()
    holder.load(bundled_model_path())
    seen = set()
    for rcpts in (("bob@example.net", "x@lab.example.net"), ("x@lab.example.net", "bob@example.net")):
        req = Request(message=make(), envelope=Envelope(client_ip="", mail_from="", rcpt_to=rcpts))
        v = build_verdict(req, holder, pol, 10_000_000)
        assert v.action == Action.TAG and {g.policy for g in v.groups} == {"default", "lab"}
        seen.add((v.policy, v.subject_tag, tuple(n for n, _ in v.add_headers)))
    assert len(seen) == 1
    policy, subject_tag, headers = seen.pop()
    assert policy == "default" and subject_tag == "[SPAM] " and "X-Lab-Flag" not in headers
