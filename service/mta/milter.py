"""A milter (Postfix/Sendmail content filter protocol) that asks spamgate and applies its verdict.

One ``SpamgateMilter`` instance per SMTP connection (pymilter's model);
each message's envelope, headers and body (up to ``max_bytes``) are
collected, sent to ``Classify`` with a deadline, and the verdict applied at
end of message: headers added, subject tagged, recipients replaced by the
quarantine address (originals kept in a header), 550 reject, or discard.
When the service fails, the configured fail mode decides (see service.mta.plan).
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import grpc
import Milter

from spamgate.model.mime import is_mail_field
from spamgate.service.api.client import SpamGateClient, envelope
from spamgate.service.api.proto_convert import verdict_from_proto
from spamgate.service.mta.plan import (
    FAIL_MODES,
    ORIGINAL_RCPT_HEADER,
    STATUS_HEADER,
    is_configuration_refusal,
    plan,
    tagged_subject,
    unscanned_status,
)

log = logging.getLogger("spamgate.milter")
# Most fields of the sender's the milter deletes (``SpamgateMilter._delete_senders``) before it refuses
# the message instead. Each deletion is a Postfix queue-file edit: 2,000 took 0.3 s, 20,000 crossed
# Postfix's REVERSE_JUMP_LIMIT (10,000, shared with other milters' edits) and its cleanup process
# panicked (signal 6) with "451 queue file write error". No mail carries more than a few.
MAX_DELETED_FIELDS = 100
# Most distinct field names counted per message: past it a message of 10 MB in 1-byte names would hold
# a million dict entries. One with more names than this is refused like one with too many fields.
MAX_FIELD_NAMES = 1000
# Subject fields tagged per message: each is one queue-file edit, and mail has one.
MAX_SUBJECTS = 20


@dataclass(frozen=True)
class MilterConfig:
    """How the milter talks to spamgate and what it does when spamgate is not there.

    server: host:port of ``spamgate serve``. timeout: seconds per verdict; the
    MTA is never held longer. fail_mode: ``open`` or ``tempfail``.
    max_bytes: message bytes sent for scanning (the rest is passed through
    unscanned-but-delivered, as the service scans a prefix anyway).
    status_header: add X-Spam-Status to every message. tls, tls_ca_file, tls_cert_file,
    tls_key_file, token_file: how to reach a server with TLS, mTLS or a bearer token
    (``SpamGateClient``'s parameters of the same names).
    """

    server: str = "127.0.0.1:50051"
    timeout: float = 5.0
    fail_mode: str = "tempfail"
    max_bytes: int = 10 * 1024 * 1024
    status_header: bool = True
    tls: bool = False
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    token_file: str | None = None

    def client(self) -> SpamGateClient:
        """A client for ``server`` (``ValueError`` for an unusable TLS or token file)."""
        return SpamGateClient(
            self.server,
            timeout=self.timeout,
            tls=self.tls,
            tls_ca_file=self.tls_ca_file,
            tls_cert_file=self.tls_cert_file,
            tls_key_file=self.tls_key_file,
            token_file=self.token_file,
        )

    def __post_init__(self) -> None:
        if self.fail_mode not in FAIL_MODES:
            raise ValueError(f"fail_mode must be one of {FAIL_MODES}, got {self.fail_mode!r}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {self.timeout}")
        if self.max_bytes < 1024:
            raise ValueError(f"max_bytes must be >= 1024, got {self.max_bytes}")


class _Shared:
    config = MilterConfig()
    client: SpamGateClient | None = None
    lock = threading.Lock()
    # gRPC calls run on Python-created worker threads, not on libmilter's
    # threads: a blocking call made directly from a libmilter callback thread
    # never returned (seen with pymilter 1.0.5 + grpcio 1.85), and a future
    # with a timeout is a hard bound on how long the MTA can be held anyway.
    pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="spamgate-call")
    # Calls submitted and not yet finished (running or queued), each holding its message bytes. The
    # pool's own queue is unbounded and a timed-out call used to stay queued: against a server that
    # hangs, 200 messages of 1 MB left 64 MB queued after every MTA had had its TEMPFAIL, all sent to
    # the server later for nobody (attack review). Past this many the milter answers at once, as for
    # an outage.
    inflight = threading.BoundedSemaphore(32)

    @classmethod
    def get_client(cls) -> SpamGateClient:
        # One channel for all connections; gRPC reconnects on its own after an outage.
        with cls.lock:
            if cls.client is None:
                cls.client = cls.config.client()
            return cls.client


def _text(value: Any) -> str:
    return value if isinstance(value, str) else bytes(value).decode("utf-8", "surrogateescape")


def _utf8(value: str) -> str:
    """``value`` as pymilter can send it: its C calls encode strict UTF-8, and headers and SMTP
    arguments arrive with 8-bit bytes as surrogates (a review found a Latin-1 Subject on a TAG
    verdict raised UnicodeEncodeError in ``chgheader``, outside any handler)."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class SpamgateMilter(Milter.Base):
    """Per-connection milter state machine."""

    def __init__(self) -> None:
        self.client_ip = ""
        self.helo = ""
        self._reset()

    def _reset(self) -> None:
        self.mail_from = ""
        self.rcpts: list[str] = []
        self.buf = BytesIO()
        self.size = 0
        self.truncated = False
        self.subject: str | None = None
        self.subjects: list[str] = []  # every Subject field, in order (at most MAX_SUBJECTS)
        self.queue_id = ""
        self.mail_field_seen = False
        self.fields: dict[str, int] = {}  # occurrences per field name (lower case), as the MTA counts
        self.fields_uncounted = False  # a name past MAX_FIELD_NAMES went uncounted

    def _write(self, data: bytes) -> None:
        room = _Shared.config.max_bytes - self.size
        if room <= 0:
            self.truncated = True
            return
        if len(data) > room:
            data, self.truncated = data[:room], True
        self.buf.write(data)
        self.size += len(data)

    @Milter.noreply
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        self.client_ip = hostaddr[0] if family in (socket.AF_INET, socket.AF_INET6) and hostaddr else ""
        return Milter.CONTINUE

    @Milter.noreply
    def hello(self, heloname: str) -> int:
        self.helo = heloname
        return Milter.CONTINUE

    def envfrom(self, mailfrom: str, *params: str) -> int:
        self._reset()
        self.mail_from = mailfrom.strip().strip("<>")
        return Milter.CONTINUE

    @Milter.noreply
    def envrcpt(self, to: str, *params: str) -> int:
        self.rcpts.append(to.strip().strip("<>"))
        return Milter.CONTINUE

    @Milter.noreply
    def header(self, name: str, value: Any) -> int:
        text = _text(value)
        key = name.lower()
        if key in self.fields or len(self.fields) < MAX_FIELD_NAMES:
            self.fields[key] = self.fields.get(key, 0) + 1
        else:
            self.fields_uncounted = True
        if key == "subject":
            if self.subject is None:
                self.subject = text
            if len(self.subjects) < MAX_SUBJECTS:
                self.subjects.append(text)
        self.mail_field_seen = self.mail_field_seen or is_mail_field(name)
        self._write(f"{name}: {text}\r\n".encode("utf-8", "surrogateescape"))
        return Milter.CONTINUE

    @Milter.noreply
    def eoh(self) -> int:
        self.queue_id = self.getsymval("i") or ""
        self._write(b"\r\n")
        return Milter.CONTINUE

    @Milter.noreply
    def body(self, chunk: bytes) -> int:
        self._write(bytes(chunk))
        return Milter.CONTINUE

    def eom(self) -> int:
        cfg = _Shared.config
        raw = self.buf.getvalue()
        if not self.mail_field_seen and not raw.startswith(b"\r\n"):
            # What the MTA passed holds no mail header field ("Foo: bar" only): as written, the model
            # would read it as text handed over alone (model.mime.is_mail_field), capped at TAG and
            # judged by the text-only points. It is mail whose sender wrote no header: an empty header
            # block, those lines starting its body.
            raw = b"\r\n" + raw
        qid = self.queue_id
        try:
            env = envelope(
                _utf8(self.client_ip), _utf8(self.helo), _utf8(self.mail_from), [_utf8(r) for r in self.rcpts]
            )
            if not _Shared.inflight.acquire(blocking=False):
                return self._failed("too many calls in flight")
            try:
                future = _Shared.pool.submit(
                    lambda: _Shared.get_client().classify(raw, env, correlation_id=qid, timeout=cfg.timeout)
                )
            except BaseException:
                _Shared.inflight.release()
                raise
            # Released when the call ends, fails or is cancelled still queued.
            future.add_done_callback(lambda _: _Shared.inflight.release())
            try:
                resp = verdict_from_proto(future.result(timeout=cfg.timeout + 1.0))
            except FutureTimeout:
                future.cancel()  # still queued: never sent; running: gRPC's own deadline ends it
                raise
        except FutureTimeout:
            return self._failed("timed out")
        except grpc.RpcError as exc:
            code = exc.code()
            if code is not None and is_configuration_refusal(code.name, str(exc.details())):
                return self._misconfigured(f"{code.name}: {exc.details()}")
            return self._failed(f"{code.name if code is not None else 'UNKNOWN'}: {exc.details()}")
        except Exception as exc:  # never let a milter error bounce or block mail
            return self._failed(type(exc).__name__)
        p = plan(resp, cfg.status_header)
        log.info(
            "verdict",
            extra={
                "queue_id": self.queue_id,
                "action": p.action,
                "p": round(resp.spam_probability, 5),
                "rcpts": len(self.rcpts),
                "truncated": self.truncated,
            },
        )
        if p.action == "REJECT":
            try:
                # libmilter reads the text as a format: a policy's "100% spam" made setreply raise, and
                # the exception turned every REJECT into the MTA's TEMPFAIL (attack review).
                self.setreply(p.reply_code, p.reply_xcode, _utf8(p.reply_text).replace("%", "%%"))
            except Exception as exc:  # the MTA's own 5xx text still rejects
                log.warning("reject text refused", extra={"queue_id": self.queue_id, "why": str(exc)})
            return Milter.REJECT
        if p.action == "DELETE":
            return Milter.DISCARD
        if not self._delete_senders([n for n, _ in p.add_headers] + [ORIGINAL_RCPT_HEADER]):
            return self._too_many_fields()
        for name, value in p.add_headers:
            self.addheader(name, _utf8(value))
        if p.subject_tag:
            if self.subject is None:
                self.addheader("Subject", _utf8(p.subject_tag.strip()))
            else:
                # Every Subject field: with two, a mail client that shows the second showed no tag
                # (MTA attack review, seen through Postfix).
                for i, subject in enumerate(self.subjects, 1):
                    self.chgheader("Subject", i, _utf8(tagged_subject(subject, p.subject_tag)))
        if p.action == "REROUTE" and p.reroute_to:
            self.addheader(ORIGINAL_RCPT_HEADER, _utf8(", ".join(self.rcpts)))
            for r in self.rcpts:
                self.delrcpt(f"<{r}>")
            self.addrcpt(f"<{p.reroute_to}>")
        return Milter.ACCEPT

    def _delete_senders(self, names: list[str]) -> bool:
        """Delete every field of the message named one of ``names``: the sender wrote them.

        ``smfi_addheader`` appends, and through a real Postfix a sender's ``X-Spam-Flag: NO``,
        ``X-Spam-Status: No, …`` and ``X-Spam-Original-Recipients: attacker@…`` stayed above the
        milter's own, where a reader of the first occurrence (Python's ``email``, a quarantine release
        script) took the sender's (review of the MTA hooks, seventh session). From the last occurrence
        down: deleting one never moves a lower index. The MTA matches names in any case. False, and
        nothing deleted, for more than ``MAX_DELETED_FIELDS`` or a name left uncounted.
        """
        spelled: dict[str, str] = {}
        for n in names:
            spelled.setdefault(n.lower(), n)
        if self.fields_uncounted or sum(self.fields.get(key, 0) for key in spelled) > MAX_DELETED_FIELDS:
            return False
        for key, name in spelled.items():
            for idx in range(self.fields.get(key, 0), 0, -1):
                self.chgheader(name, idx, None)
        return True

    def _too_many_fields(self) -> int:
        """550: a message that writes more spam-filter fields than can be deleted is never marked
        honestly, and a retry would not change it."""
        log.warning("too many spam-filter header fields", extra={"queue_id": self.queue_id})
        self.setreply("550", "5.7.1", "Too many spam-filter header fields in the message")
        return Milter.REJECT

    def _misconfigured(self, why: str) -> int:
        """The server refused the call as set up wrong (``is_configuration_refusal``): 451 in either fail
        mode. In open mode such a refusal had passed every message unscanned, the way an outage does;
        a configuration error is not an outage (``spamgate check`` exits 78 on the same refusals)."""
        log.error("spamgate refused the call: configuration", extra={"queue_id": self.queue_id, "why": why})
        self.setreply("451", "4.7.1", "Spam filter misconfigured, try again later")
        return Milter.TEMPFAIL

    def _failed(self, why: str) -> int:
        cfg = _Shared.config
        log.warning(
            "spamgate unavailable", extra={"queue_id": self.queue_id, "why": why, "mode": cfg.fail_mode}
        )
        if cfg.fail_mode == "tempfail":
            self.setreply("451", "4.7.1", "Spam filter temporarily unavailable, try again later")
            return Milter.TEMPFAIL
        name, value = unscanned_status("spam filter unavailable")
        if not self._delete_senders([STATUS_HEADER, ORIGINAL_RCPT_HEADER]):
            return self._too_many_fields()
        self.addheader(name, value)
        return Milter.ACCEPT

    def close(self) -> int:
        return Milter.CONTINUE

    def abort(self) -> int:
        self._reset()
        return Milter.CONTINUE


def run(socket_spec: str, config: MilterConfig, timeout: int = 600) -> None:
    """Serve milter connections on ``socket_spec`` (``inet:PORT@HOST`` or ``unix:/path``) until stopped."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1` dumps stacks to stderr
    _Shared.config = config
    _Shared.client = None
    Milter.factory = SpamgateMilter
    Milter.set_flags(Milter.ADDHDRS + Milter.CHGHDRS + Milter.ADDRCPT + Milter.DELRCPT)
    Milter.runmilter("spamgate", socket_spec, timeout)
