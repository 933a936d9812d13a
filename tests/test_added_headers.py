"""Headers we add to mail carry no line breaks or control characters, whatever the message held."""

from __future__ import annotations

from spamgate.model.scoring import Reason
from spamgate.service.mta.plan import Plan, rewrite_message
from spamgate.service.policy.settings import Action, HeaderNames, Settings
from spamgate.service.scoring.verdict import _headers


def test_a_reason_name_cannot_break_a_header_line() -> None:
    """An attack review put "cs:a\\rx-ok: 61cc" (a crafted charset, bare CR kept by the parser) among
    the top reasons; it reached X-Spam-Reasons verbatim, and from there the milter and the pipe filter."""
    crafted = Reason("cs:a\rx-ok: 61cc", "token", 0.16)
    others = (Reason("b:x\ny", "token", 0.1), Reason("u:\x00\x7f\u2028.example", "token", 0.05))
    settings = Settings(thresholds={}, headers=HeaderNames(threshold="X-Spam-Threshold"))
    added = _headers(settings, Action.TAG, 0.97, (crafted, *others), "v1", "tag: p >= 0.97", "")
    assert added and all(not any(c in v for c in "\r\n\x00\x7f\u2028") for _, v in added)
    reasons = dict(added)["X-Spam-Reasons"]
    assert reasons.startswith("cs:a?x-ok: 61cc=+0.16")
    rewritten = rewrite_message(b"Subject: hi\r\n\r\nbody\r\n", Plan("TAG", added, "", "", "", "", ""))
    head = rewritten.split(b"\r\n\r\n", 1)[0]
    assert b"\r" not in head.replace(b"\r\n", b"") and b"\nx-ok" not in head.lower()
