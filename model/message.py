"""The parsed view of one message that features are computed from.

Only plain data lives here; the parser (``model.parse``) fills it and the
feature code (``model.tokens``, ``model.heuristics``) reads it. Keeping the
view free of ``email.message.Message`` objects means features cannot reach
back into the raw MIME tree and do unbounded work.
"""

from __future__ import annotations

from collections.abc import KeysView
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property


@dataclass(frozen=True)
class Address:
    """A parsed address header: display name and addr-spec."""

    display: str
    address: str

    @property
    def domain(self) -> str:
        """Lower-cased domain part, empty when there is none."""
        _, at, dom = self.address.rpartition("@")
        return dom.strip().strip(">").lower() if at else ""


@dataclass(frozen=True)
class ReceivedHop:
    """One ``Received:`` header, most recent first in ``MessageView.received``."""

    raw: str
    helo: str
    rdns: str
    ip: str
    by: str
    date: datetime | None  # parsed only up to the newest hop that has one (the only one rules read)
    # The client authenticated (SMTP AUTH, RFC 3848 "with ESMTPA/ESMTPSA", or Postfix's
    # "(Authenticated sender: …)"): a mail program submitting for its user, not a relay. Its HELO
    # is whatever the laptop calls itself ("[192.168.1.5]", "DESKTOP-4F2K") and says nothing.
    authenticated: bool = False


@dataclass(frozen=True)
class Link:
    """An HTML anchor: the visible text and where it really points."""

    text: str
    href: str


@dataclass(frozen=True)
class Attachment:
    """A non-text MIME part (or a part with a file name)."""

    filename: str
    declared_type: str
    sniffed_type: str
    size: int


@dataclass
class MessageView:
    """Everything features may look at, extracted once within ``ParseLimits``."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    subject: str = ""
    from_addr: Address | None = None
    reply_to: Address | None = None
    return_path: str = ""
    to_count: int = 0
    cc_count: int = 0
    message_id: str | None = None
    date_raw: str | None = None
    date: datetime | None = None
    received: list[ReceivedHop] = field(default_factory=list)
    text: str = ""
    html_text: str = ""
    hidden_text_chars: int = 0
    html_has_script: bool = False
    html_has_form: bool = False
    links: list[Link] = field(default_factory=list)
    image_count: int = 0
    urls: list[str] = field(default_factory=list)
    url_hosts: list[str] = field(default_factory=list)  # host of each URL ('' when none), same order
    attachments: list[Attachment] = field(default_factory=list)
    text_plain_parts: int = 0
    text_html_parts: int = 0
    charsets: list[str] = field(default_factory=list)
    text_transfer_encodings: list[str] = field(default_factory=list)
    # Text parts sent base64 whose decoded bytes are all ASCII (BASE64_TEXT_BODY: model.heuristics).
    ascii_base64_text_parts: int = 0
    content_types: list[str] = field(default_factory=list)
    raw_size: int = 0
    raw_prefix: bytes = b""
    defects: int = 0
    cut: list[str] = field(default_factory=list)

    @cached_property
    def _by_name(self) -> dict[str, list[str]]:
        # Built on first lookup: rules and tokens ask for ~10 headers a message, and a linear scan
        # lower-casing every name each time cost ~300 str.lower calls a message.
        index: dict[str, list[str]] = {}
        for key, value in self.headers:
            index.setdefault(key.lower(), []).append(value)
        return index

    @property
    def header_names(self) -> KeysView[str]:
        """Lower-cased names of the headers present."""
        return self._by_name.keys()

    def header(self, name: str) -> str | None:
        """First value of a header (case-insensitive), decoded; None if absent."""
        values = self._by_name.get(name.lower())
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        """Every value of a header, in message order."""
        return list(self._by_name.get(name.lower(), ()))

    @property
    def has_header_block(self) -> bool:
        """A header field, or an empty header block: a first line that is blank.

        Mail whose sender omitted every header still arrives with the blank line that ends the header
        block (the milter writes one after the MTA's header callbacks; SMTP DATA ends its header block
        the same way). Text with no header block at all starts with its first line of text: it is a
        message's text handed over alone, not mail as a gateway receives it (issue 14's Turkish day-0
        set was "body text only"). The header-presence rules (``model.heuristics``) and the
        out-of-distribution flag (``model.familiarity``) read this.
        """
        return bool(self.headers) or self.raw_prefix.startswith((b"\n", b"\r\n"))

    @cached_property
    def all_text(self) -> str:
        """Plain text and HTML visible text together: what a reader sees (computed once: several
        rules and the tokenizer read it)."""
        if self.text and self.html_text:
            return self.text + "\n" + self.html_text
        return self.text or self.html_text
