"""The MTA hooks against a hostile sender: headers the sender wrote under the names the hooks add, and
the mbox "From " line a pipe filter is handed (adversarial review of service/mta, seventh session).

A sender writes every byte of the message, so it can write ``X-Spam-Flag: NO``,
``X-Spam-Status: No, …`` or ``X-Spam-Original-Recipients: attacker@…`` itself. Through a real Postfix
the milter's own headers were appended below the sender's (``smfi_addheader`` appends), so a reader of
the first occurrence (Python's ``email``, a quarantine release script) took the sender's, and
``formail -x X-Spam-Reroute-To`` printed the sender's address beside the quarantine one.
"""

from __future__ import annotations

import email
import email.policy
from typing import Any

import pytest

from spamgate.service.api.proto_gen import spamgate_pb2 as pb
from spamgate.service.mta.plan import Plan, rewrite_message

FORGED = (
    b"X-Spam-Flag: NO\r\n"
    b"x-spam-status: No, p=0.0001,\r\n action=DELIVER\r\n"  # another case, folded
    b"X-Spam-Reroute-To: attacker@evil.example\r\n"
    b"X-Other-Filter: kept\r\n"
    b"Subject: hi\r\n"
    b"\r\n"
    b"X-Spam-Flag: NO in the body is the body's\r\n"
)
TAG = Plan("TAG", (("X-Spam-Flag", "YES"), ("X-Spam-Status", "Yes, p=0.99")), "[SPAM] ", "", "", "", "")


def _parsed(raw: bytes) -> email.message.EmailMessage:
    m = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(m, email.message.EmailMessage)
    return m


def test_pipe_removes_what_the_sender_wrote_under_the_names_it_adds() -> None:
    out = rewrite_message(FORGED, TAG)
    m = _parsed(out)
    assert m.get_all("X-Spam-Flag") == ["YES"] and m.get_all("X-Spam-Status") == ["Yes, p=0.99"]
    assert m["Subject"] == "[SPAM] hi" and m["X-Other-Filter"] == "kept"
    assert b"attacker" not in out  # not on a TAG either: a script reading it on exit 2 must find ours only
    assert out.endswith(b"\r\n\r\nX-Spam-Flag: NO in the body is the body's\r\n")


def test_pipe_reroute_header_is_the_policys_address_only() -> None:
    rr = Plan("REROUTE", (("X-Spam-Flag", "YES"),), "", "q@example.net", "", "", "")
    m = _parsed(rewrite_message(FORGED, rr))
    assert m.get_all("X-Spam-Reroute-To") == ["q@example.net"]


def test_pipe_keeps_the_mbox_from_line_first() -> None:
    """procmail hands a ``:0 f`` filter the message with its "From " line; headers written above it
    made procmail escape it as ">From" and two messages ran together in the mbox (formail -s found 1)."""
    raw = b"From a@example.org  Mon Jan  1 00:00:00 2024\nSubject: hi\nFrom: a@example.org\n\nbody\n"
    out = rewrite_message(raw, TAG)
    assert out.startswith(b"From a@example.org  Mon Jan  1 00:00:00 2024\nX-Spam-Flag: YES\n")
    assert b"Subject: [SPAM] hi\n" in out and out.endswith(b"\n\nbody\n")
    m = _parsed(out)
    assert not m.defects and m.get_unixfrom() and m["Subject"] == "[SPAM] hi"
    # a header field named From is no From_ line
    assert rewrite_message(b"From: a@b\n\nx\n", TAG).startswith(b"X-Spam-Flag: YES\n")


Milter = pytest.importorskip("Milter")

from spamgate.service.mta import milter as m  # noqa: E402


class _Client:
    def __init__(self, answer: pb.ClassifyResponse) -> None:
        self.answer = answer

    def classify(self, raw: bytes, env: Any, correlation_id: str = "", timeout: float = 0.0) -> Any:
        return self.answer


class _Down(_Client):
    def classify(self, raw: bytes, env: Any, correlation_id: str = "", timeout: float = 0.0) -> Any:
        raise ConnectionError("down")


class _Recorded(m.SpamgateMilter):
    def __init__(self) -> None:
        super().__init__()
        self._protocol = 0
        self.calls: list[tuple[Any, ...]] = []

    def addheader(self, *args: Any) -> None:
        self.calls.append(("addheader", *args))

    def chgheader(self, *args: Any) -> None:
        self.calls.append(("chgheader", *args))

    def delrcpt(self, *args: Any) -> None:
        self.calls.append(("delrcpt", *args))

    def addrcpt(self, *args: Any) -> None:
        self.calls.append(("addrcpt", *args))

    def setreply(self, *args: Any) -> None:
        self.calls.append(("setreply", *args))

    def getsymval(self, name: str) -> str:
        return "QID1"


def _feed(mil: _Recorded, rcpts: list[str]) -> int:
    mil.connect("client.example", 2, ("192.0.2.7", 25))
    mil.hello("helo.example")
    mil.envfrom("<s@example.org>")
    for r in rcpts:
        mil.envrcpt(f"<{r}>")
    for name, value in [
        ("X-Spam-Flag", b"NO"),
        ("From", b"s@example.org"),
        ("x-spam-flag", b"NO"),
        ("X-Spam-Status", b"No, p=0.0001"),
        ("X-Spam-Original-Recipients", b"attacker@evil.example"),
        ("Subject", b"hi"),
    ]:
        mil.header(name, value)
    mil.eoh()
    mil.body(b"body\r\n")
    return int(mil.eom())


def _deleted(mil: _Recorded) -> list[tuple[str, int]]:
    return [(c[1].lower(), c[2]) for c in mil.calls if c[0] == "chgheader" and c[3] is None]


def test_milter_deletes_the_senders_headers_of_the_names_it_adds(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = pb.ClassifyResponse(
        action=pb.ACTION_REROUTE, reroute_to="q@example.net", scanned=True, spam_probability=0.999
    )
    answer.add_headers.add(name="X-Spam-Flag", value="YES")
    monkeypatch.setattr(m._Shared, "client", _Client(answer))
    monkeypatch.setattr(m._Shared, "config", m.MilterConfig(timeout=1.0))
    mil = _Recorded()
    assert _feed(mil, ["a@example.net", "b@example.net"]) == Milter.ACCEPT
    # every occurrence, whatever its case, from the last down (a deletion never shifts a lower index)
    assert _deleted(mil) == [
        ("x-spam-flag", 2),
        ("x-spam-flag", 1),
        ("x-spam-status", 1),
        ("x-spam-original-recipients", 1),
    ]
    first_add = next(i for i, c in enumerate(mil.calls) if c[0] == "addheader")
    assert all(i < first_add for i, c in enumerate(mil.calls) if c[0] == "chgheader" and c[3] is None)
    added = [c[1:3] for c in mil.calls if c[0] == "addheader"]
    assert ("X-Spam-Original-Recipients", "a@example.net, b@example.net") in added
    assert [c for c in mil.calls if c[0] in ("delrcpt", "addrcpt")] == [
        ("delrcpt", "<a@example.net>"),
        ("delrcpt", "<b@example.net>"),
        ("addrcpt", "<q@example.net>"),
    ]


def test_milter_headers_not_added_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """DELIVER with no headers added and no status header: nothing of the sender's is deleted but a
    forged X-Spam-Original-Recipients (a quarantine release tool reads it)."""
    monkeypatch.setattr(m._Shared, "client", _Client(pb.ClassifyResponse(action=pb.ACTION_DELIVER)))
    monkeypatch.setattr(m._Shared, "config", m.MilterConfig(timeout=1.0, status_header=False))
    mil = _Recorded()
    assert _feed(mil, ["a@example.net"]) == Milter.ACCEPT
    assert _deleted(mil) == [("x-spam-original-recipients", 1)]


def test_milter_fail_open_deletes_a_forged_status(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(m._Shared, "client", _Down(pb.ClassifyResponse()))
    monkeypatch.setattr(m._Shared, "config", m.MilterConfig(timeout=1.0, fail_mode="open"))
    mil = _Recorded()
    assert _feed(mil, ["a@example.net"]) == Milter.ACCEPT
    assert ("x-spam-status", 1) in _deleted(mil)
    assert ("addheader", "X-Spam-Status", "Unknown, not scanned (spam filter unavailable)") in mil.calls


def test_milter_refuses_more_fields_than_it_can_delete(monkeypatch: pytest.MonkeyPatch) -> None:
    """20,000 forged fields deleted one by one crossed Postfix's limit on queue-file edits: its cleanup
    process panicked. Past ``MAX_DELETED_FIELDS`` the milter deletes nothing and answers 550."""
    answer = pb.ClassifyResponse(action=pb.ACTION_TAG, subject_tag="[SPAM] ", scanned=True)
    answer.add_headers.add(name="X-Spam-Flag", value="YES")
    monkeypatch.setattr(m._Shared, "client", _Client(answer))
    monkeypatch.setattr(m._Shared, "config", m.MilterConfig(timeout=1.0))
    mil = _Recorded()
    mil.envfrom("<s@example.org>")
    mil.envrcpt("<a@example.net>")
    for _ in range(m.MAX_DELETED_FIELDS + 1):
        mil.header("X-Spam-Flag", b"NO")
    mil.eoh()
    mil.body(b"x\r\n")
    assert mil.eom() == Milter.REJECT
    assert mil.calls == [("setreply", "550", "5.7.1", "Too many spam-filter header fields in the message")]


def test_through_postfix_the_senders_fields_are_gone(tmp_path: Any) -> None:
    """The same through a real Postfix: deletion by name in any case, ours the only ones left."""
    import shutil
    import smtplib

    from tests.test_postfix_integration import SPAM, Stack, _why_skip

    if _why_skip():
        pytest.skip(_why_skip())
    st = Stack(tmp_path)
    try:
        st.start_serve()
        st.start_milter("open")
        st.pf.start()
        forged = (
            b"X-Spam-Flag: NO\r\nx-spam-status: No, p=0.0001,\r\n action=DELIVER\r\nX-SPAM-FLAG: NO\r\n"
            b"X-Spam-Original-Recipients: attacker@evil.example\r\n" + SPAM
        )
        st.send("deals@pills-online.example.biz", ["user@example.test"], forged)
        got = _parsed(st.pf.wait_delivered("user@example.test", 1)[-1])
        assert got.get_all("X-Spam-Flag") == ["YES"] and got["Subject"].startswith("[SPAM] ")
        status = got.get_all("X-Spam-Status") or []
        assert (
            len(status) == 1 and status[0].startswith("Yes, p=") and "X-Spam-Original-Recipients" not in got
        )
        st.send("deals@pills-online.example.biz", ["vip@q.example.test", "user@example.test"], forged)
        got = _parsed(st.pf.wait_delivered("quarantine@example.test", 1)[-1])
        assert got.get_all("X-Spam-Original-Recipients") == ["vip@q.example.test, user@example.test"]
        with pytest.raises(smtplib.SMTPDataError) as e:
            many = b"X-Spam-Flag: NO\r\n" * 150 + SPAM
            st.send("deals@pills-online.example.biz", ["user@example.test"], many)
        assert e.value.smtp_code == 550
    finally:
        st.stop_milter()
        st.stop_serve()
        st.pf.stop()
        shutil.rmtree(st.pf_root, ignore_errors=True)


def test_milter_counts_a_bounded_number_of_field_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counting fields per name must not grow with the message: distinct names past MAX_FIELD_NAMES
    are not kept, and such a message (a forged field may be among them) is refused."""
    monkeypatch.setattr(m._Shared, "client", _Client(pb.ClassifyResponse(action=pb.ACTION_DELIVER)))
    monkeypatch.setattr(m._Shared, "config", m.MilterConfig(timeout=1.0))
    mil = _Recorded()
    mil.envfrom("<s@example.org>")
    mil.envrcpt("<a@example.net>")
    for i in range(m.MAX_FIELD_NAMES * 3):
        mil.header(f"X-{i}", b"v")
    mil.header("X-Spam-Status", b"No")
    mil.eoh()
    mil.body(b"x\r\n")
    assert len(mil.fields) == m.MAX_FIELD_NAMES
    assert mil.eom() == Milter.REJECT


def test_every_subject_field_is_tagged() -> None:
    """Two Subject fields: only the first was tagged, and a client showing the second showed no tag."""
    raw = b"Subject: first\r\nFrom: s@example.org\r\nSubject: second\r\n\r\nSubject: in the body\r\n"
    out = rewrite_message(raw, TAG)
    assert b"Subject: [SPAM] first\r\n" in out and b"Subject: [SPAM] second\r\n" in out
    assert out.endswith(b"\r\n\r\nSubject: in the body\r\n")


def test_milter_tags_every_subject_field(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = pb.ClassifyResponse(action=pb.ACTION_TAG, subject_tag="[SPAM] ", spam_probability=0.9)
    monkeypatch.setattr(m._Shared, "client", _Client(answer))
    monkeypatch.setattr(m._Shared, "config", m.MilterConfig(timeout=1.0))
    mil = _Recorded()
    mil.connect("client.example", 2, ("192.0.2.7", 25))
    mil.envfrom("<s@example.org>")
    mil.envrcpt("<a@example.net>")
    for name, value in [("Subject", b"first"), ("From", b"s@example.org"), ("subject", b"second")]:
        mil.header(name, value)
    mil.eoh()
    mil.body(b"body\r\n")
    assert int(mil.eom()) == Milter.ACCEPT
    changed = [c[1:] for c in mil.calls if c[0] == "chgheader" and c[3] is not None]
    assert changed == [("Subject", 1, "[SPAM] first"), ("Subject", 2, "[SPAM] second")]


def test_many_subject_fields_are_tagged_in_linear_time() -> None:
    """Each Subject was spliced into the whole header block in turn: 0.8 s for 40,000 Subject lines and
    minutes for a 10 MB block of them. A growth ratio, not a time: four times the lines, at most eight
    times the time (quadratic gave sixteen)."""
    import time

    def cost(n: int) -> float:
        raw = b"From: a@example.org\n" + b"Subject: x\n" * n + b"\nbody\n"
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            out = rewrite_message(raw, TAG)
            best = min(best, time.perf_counter() - start)
        assert out.count(b"Subject: [SPAM] x\n") == n
        return best

    small, large = cost(20_000), cost(80_000)
    assert large < 8 * small + 0.05, (small, large)
