"""Every heuristic fires on a hand-written message made for it, and not on a clean one."""

from __future__ import annotations

import pytest

from spamgate.model.heuristics import HEURISTIC_NAMES, HEURISTICS, heuristic_values
from spamgate.model.parse import parse_message
from tests.mail import BASE_BODY, attachment, html, make, multipart

CLEAN = make()
RCVD = "from {helo} ({rdns}[{ip}]) by mx.example.net with ESMTP id 1; Tue, 03 Jun 2025 10:00:05 +0000"

# name -> (message that fires it, message that doesn't)
CASES: dict[str, tuple[bytes, bytes]] = {
    "MISSING_MESSAGE_ID": (make({"Message-ID": None}), CLEAN),
    "MALFORMED_MESSAGE_ID": (make({"Message-ID": "12345-no-brackets"}), CLEAN),
    "MISSING_DATE": (make({"Date": None}), CLEAN),
    "MALFORMED_DATE": (make({"Date": "next tuesday-ish"}), CLEAN),
    "DATE_IN_FUTURE": (make({"Date": "Fri, 13 Jun 2025 10:00:00 +0000"}), CLEAN),
    "DATE_IN_PAST": (make({"Date": "Mon, 03 Mar 2025 10:00:00 +0000"}), CLEAN),
    "FROM_REPLYTO_MISMATCH": (
        make(extra=[("Reply-To", "claims@winner-office.example.ru")]),
        make(extra=[("Reply-To", "alice.private@lists.example.org")]),
    ),
    "DISPLAY_NAME_SPOOF": (
        make({"From": '"support@paypal.com" <x7@mailer.example.ru>'}),
        make({"From": '"alice@example.org" <alice@example.org>'}),
    ),
    "FROM_MISSING": (make({"From": None}), CLEAN),
    "SUBJECT_MISSING": (make({"Subject": None}), CLEAN),
    "SUBJECT_ALL_CAPS": (make({"Subject": "FREE MONEY WAITING FOR YOU"}), CLEAN),
    "SUBJECT_EXCESS_PUNCT": (make({"Subject": "Act now!!! Limited offer"}), make({"Subject": "Is this ok?"})),
    "BODY_CAPS_RATIO": (
        make(body="THIS IS AN AMAZING OFFER YOU CANNOT REFUSE, ORDER NOW AND SAVE BIG TODAY ONLY\n"),
        CLEAN,
    ),
    "OBFUSCATED_WORDS": (make(body="Get v-i-a-g-r-a and c.i.a.l.i.s at fr33 prices, v1agra\n"), CLEAN),
    "EMPTY_BODY": (make(body=""), CLEAN),
    "HTML_ONLY": (
        html("<html><body><p>Hello Bob, the meeting moved to Thursday.</p></body></html>"),
        multipart(
            [("text/plain; charset=utf-8", "", "Hello"), ("text/html; charset=utf-8", "", "<p>Hello</p>")],
            subtype="alternative",
        ),
    ),
    "HTML_HIDDEN_TEXT": (
        html(
            '<p>Buy now</p><div style="display:none">meeting budget report thursday agenda</div>'
            '<font color="#ffffff">kernel patch review lunch</font>'
        ),
        html("<p>Buy now</p><div>meeting budget report thursday agenda</div>"),
    ),
    "HTML_SCRIPT_OR_FORM": (
        html('<p>Verify your account</p><form action="http://x.example.ru/"><input name="pw"></form>'),
        html("<p>Verify your account in the settings page.</p>"),
    ),
    "IMAGE_ONLY": (
        html('<html><body><img src="http://img.example.biz/offer.gif"></body></html>'),
        html(
            "<p>Photos from the trip are below, the lake was lovely and the weather held all weekend."
            ' We walked twenty kilometres on Saturday and rested on Sunday.</p><img src="cid:1">'
        ),
    ),
    "URL_COUNT": (
        make(body="see http://a.example.com/ http://b.example.com/ http://c.example.com/\n"),
        CLEAN,
    ),
    "URL_SHORTENER": (
        make(body="click https://bit.ly/3xYz now\n"),
        make(body="docs at https://docs.python.org/3/\n"),
    ),
    "URL_IP_LITERAL": (
        make(body="login at http://192.0.2.77/bank/login\n"),
        make(body="login at https://bank.example.com/\n"),
    ),
    "LINK_TEXT_HOST_MISMATCH": (
        html('<a href="http://phish.example.ru/login">https://www.paypal.com/login</a>'),
        html('<a href="https://www.paypal.com/login">https://www.paypal.com/login</a>'),
    ),
    "EXECUTABLE_ATTACHMENT": (
        attachment("setup.exe", b"MZ\x90\x00" + b"\x00" * 60),
        attachment("report.pdf", b"%PDF-1.4 fake", "application/pdf"),
    ),
    "DOUBLE_EXTENSION_ATTACHMENT": (
        attachment("invoice.pdf.exe", b"MZ\x90\x00"),
        attachment("invoice.pdf", b"%PDF-1.4"),
    ),
    "ATTACHMENT_TYPE_MISMATCH": (
        attachment("photo.jpg", b"MZ\x90\x00" * 4, "image/jpeg"),
        attachment("photo.jpg", b"\xff\xd8\xff\xe0JFIF", "image/jpeg"),
    ),
    "ARCHIVE_ATTACHMENT": (
        attachment("docs.zip", b"PK\x03\x04" + b"\x00" * 30),
        attachment("notes.txt", b"plain notes\n"),
    ),
    "BASE64_TEXT_BODY": (
        make({"Content-Transfer-Encoding": "base64"}, body="SGVsbG8gQm9iLCBidXkgbm93IQ==\n"),
        make({"Content-Transfer-Encoding": "7bit"}),
    ),
    "MIXED_CHARSETS": (
        multipart(
            [("text/plain; charset=iso-8859-1", "", "Hallo"), ("text/plain; charset=koi8-r", "", "privet")]
        ),
        multipart([("text/plain; charset=utf-8", "", "Hallo"), ("text/plain; charset=utf-8", "", "again")]),
    ),
    "MANY_RECIPIENTS": (
        make({"To": ", ".join(f"user{i}@example.net" for i in range(40))}),
        make({"To": "a@example.net, b@example.net"}),
    ),
    "TO_MISSING": (make({"To": None}), CLEAN),
    "RCVD_HOP_COUNT": (CLEAN, make({"Received": None})),
    "RCVD_NO_HOPS": (make({"Received": None}), CLEAN),
    "RCVD_NUMERIC_HELO": (
        make({"Received": RCVD.format(helo="[10.1.2.3]", rdns="dyn-93-1.example.net ", ip="93.184.216.9")}),
        CLEAN,
    ),
    "RCVD_HELO_NOT_FQDN": (
        make({"Received": RCVD.format(helo="mypc", rdns="dyn.example.net ", ip="93.184.216.9")}),
        CLEAN,
    ),
    "RCVD_HELO_PRIVATE_FROM_PUBLIC": (
        make({"Received": RCVD.format(helo="192.168.1.20", rdns="dyn.example.net ", ip="93.184.216.9")}),
        make({"Received": RCVD.format(helo="93.184.216.9", rdns="dyn.example.net ", ip="93.184.216.9")}),
    ),
    "RCVD_RESERVED_IP": (
        make({"Received": RCVD.format(helo="mail.example.org", rdns="", ip="0.1.2.3")}),
        CLEAN,
    ),
    "RCVD_NO_RDNS": (
        make({"Received": RCVD.format(helo="mail.example.org", rdns="", ip="93.184.216.34")}),
        CLEAN,
    ),
    "BULK_MAILER": (
        make(extra=[("X-Mailer", "Advanced Mass Sender 4.2")]),
        make(extra=[("X-Mailer", "Mozilla Thunderbird 115")]),
    ),
    "LIST_HEADERS": (make(extra=[("List-Id", "<dev.lists.example.org>")]), CLEAN),
    "MIME_DEFECTS": (
        make({"Content-Type": 'multipart/mixed; boundary="never-used"'}, body="no boundary anywhere here\n"),
        CLEAN,
    ),
}


def test_every_heuristic_has_a_case() -> None:
    assert set(CASES) == set(HEURISTIC_NAMES)
    assert len(HEURISTICS) >= 25


def test_every_heuristic_has_name_and_description() -> None:
    for h in HEURISTICS:
        assert h.name.isupper() and h.description and len(h.description.splitlines()) == 1


@pytest.mark.parametrize("name", sorted(CASES))
def test_heuristic_fires_and_does_not(name: str) -> None:
    fires, quiet = CASES[name]
    i = HEURISTIC_NAMES.index(name)
    assert heuristic_values(parse_message(fires))[i] > 0, f"{name} did not fire"
    assert heuristic_values(parse_message(quiet))[i] < heuristic_values(parse_message(fires))[i]
    if name != "RCVD_HOP_COUNT":  # the quiet case of a count is "fewer", not "zero"
        assert heuristic_values(parse_message(quiet))[i] == 0, f"{name} fired on its quiet message"


def test_values_are_in_unit_interval() -> None:
    for fires, quiet in CASES.values():
        for raw in (fires, quiet):
            assert all(0.0 <= v <= 1.0 for v in heuristic_values(parse_message(raw)))


def test_clean_message_is_quiet() -> None:
    values = dict(zip(HEURISTIC_NAMES, heuristic_values(parse_message(CLEAN)), strict=True))
    fired = {k for k, v in values.items() if v > 0} - {"RCVD_HOP_COUNT"}
    assert not fired, fired
    assert BASE_BODY.split()[0] in parse_message(CLEAN).text


def _caps(raw: bytes) -> tuple[float, float]:
    v = heuristic_values(parse_message(raw))
    return v[HEURISTIC_NAMES.index("SUBJECT_ALL_CAPS")], v[HEURISTIC_NAMES.index("BODY_CAPS_RATIO")]


@pytest.mark.parametrize(
    ("charset", "text"),
    [
        ("utf-8", "안녕하세요, 다음 주 회의 일정을 보내 드립니다."),
        ("utf-8", "เรียนคุณสมชาย ขอส่งใบเสนอราคาตามที่ตกลงกันไว้"),
        ("koi8-r", "Добрый день, высылаю счёт за октябрь."),
    ],
)
def test_base64_text_in_another_script_is_not_evidence(charset: str, text: str) -> None:
    """Base64 is how many mail programs send non-Latin text: it says which script, not spam (issue 14)."""
    import base64

    body = base64.encodebytes(text.encode(charset)).decode()
    headers = {"Content-Type": f"text/plain; charset={charset}", "Content-Transfer-Encoding": "base64"}
    values = dict(
        zip(HEURISTIC_NAMES, heuristic_values(parse_message(make(headers, body=body))), strict=True)
    )
    assert values["BASE64_TEXT_BODY"] == 0.0
    ascii_body = base64.encodebytes(b"Dear Bob, the meeting moved to Monday.").decode()
    values = dict(
        zip(HEURISTIC_NAMES, heuristic_values(parse_message(make(headers, body=ascii_body))), strict=True)
    )
    assert values["BASE64_TEXT_BODY"] == 1.0


def test_caps_rules_count_letters_of_every_script() -> None:
    # sg-features-8 (issue 14): only ASCII letters were counted, so a subject whose only Latin
    # letters are an acronym was "all capitals" and CJK text with a few acronyms "shouting".
    cjk_body = "请查收附件中的ABC ORDER报价单和PDF文件，交货期为两周，如有问题请随时联系我们。" * 3
    assert _caps(make({"Subject": "ABC ORDER 项目进度确认"}, body=cjk_body)) == (0.0, 0.0)
    assert _caps(make({"Subject": "RE: ВАШ ЗАКАЗ ABC ORDER подтверждён"})) == (0.0, 0.0)
    # shouting in a cased script other than Latin fires as it does in Latin
    shouting = "СРОЧНО! ВЫ ВЫИГРАЛИ ПРИЗ, ОТВЕТЬТЕ СЕГОДНЯ И ПОЛУЧИТЕ ДЕНЬГИ НА СВОЙ СЧЁТ\n"
    assert _caps(make({"Subject": "СРОЧНО ВАШ ВЫИГРЫШ"}, body=shouting)) == (1.0, 1.0)


# sg-features-9 (issue 14): an authenticated submission hop (RFC 3848 "with ESMTPSA", Postfix's
# "(Authenticated sender: …)") is a mail program, not a relay: its HELO and missing rDNS say nothing.
AUTH_RCVD = (
    "from {helo} ({rdns}[{ip}]) by mail.example.org (Postfix) with ESMTPSA id 4B2C1;"
    " Mon, 3 Mar 2025 10:00:00 +0000"
)
POSTFIX_AUTH_RCVD = (
    "from {helo} ({rdns}[{ip}]) (Authenticated sender: bob@example.org) by mail.example.org"
    " (Postfix) with ESMTP id 4B2C1; Mon, 3 Mar 2025 10:00:00 +0000"
)


@pytest.mark.parametrize(
    ("rule", "helo", "rdns", "ip"),
    [
        ("RCVD_NUMERIC_HELO", "[192.0.2.40]", "unknown ", "93.184.216.9"),
        ("RCVD_HELO_NOT_FQDN", "DESKTOP-4F2K", "dyn.example.net ", "93.184.216.9"),
        ("RCVD_HELO_PRIVATE_FROM_PUBLIC", "[192.168.1.20]", "dyn.example.net ", "93.184.216.9"),
        ("RCVD_NO_RDNS", "[192.168.1.20]", "", "93.184.216.34"),
    ],
)
def test_helo_rules_skip_authenticated_submission(rule: str, helo: str, rdns: str, ip: str) -> None:
    i = HEURISTIC_NAMES.index(rule)
    relayed = RCVD.format(helo=helo, rdns=rdns, ip=ip)
    assert heuristic_values(parse_message(make({"Received": relayed})))[i] > 0, "fires on a relay"
    for template in (AUTH_RCVD, POSTFIX_AUTH_RCVD):
        submitted = template.format(helo=helo, rdns=rdns, ip=ip)
        assert heuristic_values(parse_message(make({"Received": submitted})))[i] == 0, template


def test_authenticated_hop_token_replaces_its_helo() -> None:
    from spamgate.model.tokens import TokenConfig, message_tokens

    submitted = AUTH_RCVD.format(helo="[192.0.2.40]", rdns="unknown ", ip="93.184.216.9")
    toks = message_tokens(parse_message(make({"Received": submitted})), TokenConfig())
    assert toks["rh:<auth>"] == 1 and "rh:<ip>" not in toks
    relayed = RCVD.format(helo="[192.0.2.40]", rdns="unknown ", ip="93.184.216.9")
    assert "rh:<ip>" in message_tokens(parse_message(make({"Received": relayed})), TokenConfig())


# sg-features-10 (issue 14): text given with no header field at all is not mail that omitted its
# headers, so the header-presence rules stay silent on it; one header field is enough to make them speak.
PRESENCE_RULES = (
    "MISSING_MESSAGE_ID",
    "MISSING_DATE",
    "FROM_MISSING",
    "SUBJECT_MISSING",
    "TO_MISSING",
    "RCVD_NO_HOPS",
)
BODY_ONLY = [
    "Merhaba Ayşe,\n\nyarınki toplantı saat 10:00'da, küçük salonda.\n\nSaygılarımla,\nMehmet\n",
    "Здравствуйте, Анна!\n\nОтчёт за квартал во вложении не нужен, пришлю ссылку.\n",
    "会议改到周四下午三点，请带上预算表。\n",
    "Hallo zusammen, die Unterlagen liegen im Teamordner.",
    # sg-features-11: a first line that looks like a header field is still text (model.mime.is_mail_field).
    "Not: toplantı yarın saat 10:00'da.\nSaygılarımla,\nMehmet\n",
    "Konu: Toplantı\n\nMerhaba Ayşe, yarın görüşürüz.\n",
    "https://example.org/r/abc is the link you asked for\n",
]


@pytest.mark.parametrize("text", BODY_ONLY)
def test_header_presence_rules_are_silent_on_text_with_no_header(text: str) -> None:
    values = dict(zip(HEURISTIC_NAMES, heuristic_values(parse_message(text.encode())), strict=True))
    assert {n: values[n] for n in PRESENCE_RULES} == dict.fromkeys(PRESENCE_RULES, 0.0)


def test_header_presence_rules_speak_once_there_is_a_header_block() -> None:
    raw = ("Subject: toplantı\n\n" + BODY_ONLY[0]).encode()
    values = dict(zip(HEURISTIC_NAMES, heuristic_values(parse_message(raw)), strict=True))
    assert {n: values[n] for n in PRESENCE_RULES} == {
        **dict.fromkeys(PRESENCE_RULES, 1.0),
        "SUBJECT_MISSING": 0.0,
    }


@pytest.mark.parametrize("blank", ["\n", "\r\n"])
def test_header_presence_rules_speak_on_an_empty_header_block(blank: str) -> None:
    """Mail that omitted every header still has the blank line ending its header block (the milter
    writes it): that is headers left out, not text given without any, and the rules fire."""
    raw = (blank + BODY_ONLY[0]).encode()
    values = dict(zip(HEURISTIC_NAMES, heuristic_values(parse_message(raw)), strict=True))
    assert {n: values[n] for n in PRESENCE_RULES} == dict.fromkeys(PRESENCE_RULES, 1.0)
