"""Allow and block lists: addresses, domains (with subdomains), IPs and CIDR blocks.

Lookups are O(1) in the list size: addresses and domains are hash sets (a
domain lookup walks the host's parent labels, at most ~10 set probes); CIDR
blocks are sets of network numbers per prefix length, so an IP is checked
with one probe per prefix length in use (at most 33 for IPv4, 129 for IPv6).

Entries and the values matched against them go through the same
canonicalisation, so a block entry cannot be slipped past by spelling the
same address differently (the README states the rules):

- IPs: an ``IPv6:`` prefix (the SMTP address-literal form MTAs pass on) and
  brackets are dropped; an IPv4-mapped IPv6 address (``::ffff:203.0.113.5``)
  is the IPv4 address, and a mapped network (``::ffff:203.0.113.0/120``) the
  IPv4 network; zero-padded octets are decimal (``203.000.113.005`` is
  ``203.0.113.5``, never octal).
- Domains: lower case, no trailing dot, internationalised names as their
  ASCII (``xn--``) form.
- Addresses: no angle brackets or obsolete source route (``@relay:``), the
  local part lower-cased, the domain canonical as above.
"""

from __future__ import annotations

import encodings.idna
import ipaddress
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

KINDS = ("senders", "sender_domains", "client_ips", "recipients", "from_header_domains")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_DOTS = re.compile("[\u3002\uff0e\uff61]")
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOTTED_QUAD = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})", re.ASCII)
# What no address or domain entry can hold, so an entry holding it could never match: C0 (tab
# too), DEL, C1, a byte-order mark, U+2028/U+2029. A NUL inside "spam@ev\x00il.example" and
# the BOM of a file saved as "UTF-8 with BOM" ("\ufeffspam@evil.example") were kept as part of
# the entry: dead entries, accepted silently (adversarial review, tests/test_reload_adversarial.py).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ufeff\u2028\u2029]")
# Separators: "a@evil.example, b@evil.example" (two entries on one line) was one address
# matching nobody. Whitespace, commas and semicolons only ever occur in a quoted local part.
_SEPARATOR = re.compile(r"[\s,;]")


# IDNA2008's deviation characters: Python's codec is IDNA2003, which maps them away (ß → ss, ς → σ,
# the joiners to nothing), yet under IDNA2008 (registries, browsers, UTS 46 nontransitional) straße is
# its own domain, xn--strae-oqa. So the A-label entry "xn--strae-oqa.example" missed the sender
# "x@straße.example" (read as strasse.example), and "strasse.example" matched a look-alike owned by
# someone else (adversarial review).
_DEVIATIONS = frozenset("\u00df\u03c2\u200c\u200d")


def _ascii_label(label: str) -> str:
    mapped = unicodedata.normalize("NFKC", label).lower()
    if _DEVIATIONS.intersection(mapped):
        return "xn--" + unicodedata.normalize("NFC", mapped).encode("punycode").decode("ascii")
    try:
        return encodings.idna.ToASCII(label).decode("ascii").lower()
    except UnicodeError:
        return label  # not a valid IDN label: kept as written (its parents are still canonical)


def canonical_domain(domain: str) -> str:
    """Lower case, without surrounding space or trailing dots, IDN labels in their ``xn--`` form.

    Label by label, so one label that is not a valid IDN cannot keep its parent
    domain (the part a list entry matches) from being canonical.
    """
    # The ideographic and fullwidth full stops are label separators too (IDNA): "evil.example。"
    # kept its trailing dot when the dots were stripped before they were read as dots.
    # A capital sigma is a small sigma (UTS 46); str.lower makes a final one the final sigma ς, which
    # IDNA2008 keeps apart (_DEVIATIONS), so "ΣΊΣΥΦΟΣ" would stop matching "σίσυφοσ".
    d = _DOTS.sub(".", domain.strip()).rstrip(".").replace("\u03a3", "\u03c3").lower()
    if d.isascii():
        return d
    return ".".join(_ascii_label(x) if not x.isascii() else x for x in d.split("."))


def normalize_address(addr: str) -> str:
    """The canonical form of a mail address (see the module docstring)."""
    a = addr.strip().strip("<>").strip()
    if a.startswith("@") and ":" in a:
        a = a.split(":", 1)[1]  # RFC 5321 source route: <@relay.example:user@host>
    local, at, dom = a.rpartition("@")
    if not at:
        return a.lower()
    return f"{_unquoted_local(local).lower()}@{canonical_domain(dom)}"


def _unquoted_local(local: str) -> str:
    """``"user"`` → ``user`` when the quotes add nothing (RFC 5321 4.1.2: the same mailbox)."""
    if len(local) >= 2 and local[0] == local[-1] == '"':
        inner = re.sub(r"\\(.)", r"\1", local[1:-1])
        if _DOT_ATOM.fullmatch(inner):
            return inner
    return local


def address_domain(addr: str) -> str:
    _, at, dom = normalize_address(addr).rpartition("@")
    return dom if at else ""


def _strip_ip(text: str) -> str:
    t = text.strip().strip("[]").strip()
    if t[:5].lower() == "ipv6:":
        t = t[5:].strip("[]")
    return t


def _v4_unpadded(text: str) -> str:
    """``203.000.113.005`` → ``203.0.113.5``, also as the tail of an IPv6 address; else unchanged."""
    head, sep, tail = text.rpartition(":")
    m = _DOTTED_QUAD.fullmatch(tail)
    if m is None:
        return text
    return head + sep + ".".join(str(int(o)) for o in m.groups())


def canonical_ip(text: str) -> IPAddress:
    """The address ``text`` names (IPv4 for an IPv4-mapped IPv6 address); raises ValueError."""
    addr = ipaddress.ip_address(_v4_unpadded(_strip_ip(text)))
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def canonical_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The network ``text`` names (an IP is a /32 or /128); an IPv4-mapped one as IPv4; raises ValueError."""
    t = _strip_ip(text)
    addr_text, slash, prefix = t.partition("/")
    net = ipaddress.ip_network(_v4_unpadded(_strip_ip(addr_text)) + slash + prefix.strip(), strict=False)
    mapped_space = ipaddress.IPv6Network("::ffff:0:0/96")
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96 and net.subnet_of(mapped_space):
        return ipaddress.IPv4Network((int(net.network_address) & 0xFFFFFFFF, net.prefixlen - 96))
    return net


def entry_problem(entry: str) -> None:
    """Raise ValueError when an address or domain entry holds what no address or domain can.

    A quoted local part (``"john doe"@example.org``, RFC 5321) may hold spaces and commas; the
    rest of an entry may not.
    """
    if bad := _CONTROL.search(entry):
        raise ValueError(f"{entry!r} holds a control character ({bad[0]!r}): it could never match")
    local, at, domain = entry.rpartition("@")
    rest = domain if at and len(local) >= 2 and local.lstrip("<")[:1] == local[-1:] == '"' else entry
    if _SEPARATOR.search(rest):
        raise ValueError(
            f"{entry!r} holds a space, comma or semicolon: one entry a line (as written it could never match)"
        )


@dataclass
class DomainSet:
    """Domains matching themselves and all their subdomains."""

    domains: set[str] = field(default_factory=set)

    def add(self, domain: str) -> None:
        self.domains.add(canonical_domain(domain.strip().lstrip("*.")))

    def match(self, host: str) -> str | None:
        labels = canonical_domain(host).split(".")
        for i in range(len(labels)):
            candidate = ".".join(labels[i:])
            if candidate in self.domains:
                return candidate
        return None

    def __len__(self) -> int:
        return len(self.domains)


@dataclass
class NetworkSet:
    """IP addresses and CIDR blocks, IPv4 and IPv6."""

    by_prefix: dict[tuple[int, int], set[int]] = field(
        default_factory=dict
    )  # (version, prefixlen) → networks

    def add(self, entry: str) -> None:
        """Add ``192.0.2.7`` or ``192.0.2.0/24``; raises ValueError on a malformed entry."""
        net = canonical_network(entry)
        self.by_prefix.setdefault((net.version, net.prefixlen), set()).add(int(net.network_address))

    def match(self, ip: str) -> str | None:
        try:
            addr = canonical_ip(ip)
        except ValueError:
            return None
        value, bits = int(addr), addr.max_prefixlen
        for (version, plen), nets in self.by_prefix.items():
            if version != addr.version:
                continue
            masked = (value >> (bits - plen)) << (bits - plen) if plen else 0
            if masked in nets:
                return f"{ipaddress.ip_address(masked)}/{plen}"
        return None

    def __len__(self) -> int:
        return sum(len(s) for s in self.by_prefix.values())


@dataclass
class AddressList:
    """One allow or block list: each kind of key in its own index."""

    senders: set[str] = field(default_factory=set)
    sender_domains: DomainSet = field(default_factory=DomainSet)
    client_ips: NetworkSet = field(default_factory=NetworkSet)
    recipients: set[str] = field(default_factory=set)
    from_header_domains: DomainSet = field(default_factory=DomainSet)

    def add(self, kind: str, entry: str) -> None:
        """Add one entry of ``kind``; raises ValueError with the reason when malformed."""
        e = entry.strip()
        if not e:
            raise ValueError("empty entry")
        if kind in ("senders", "recipients", "sender_domains", "from_header_domains"):
            entry_problem(e)
        if kind in ("senders", "recipients"):
            if "@" not in e:
                raise ValueError(f"{e!r} is not a mail address (use sender_domains for domains)")
            getattr(self, kind).add(normalize_address(e))
        elif kind in ("sender_domains", "from_header_domains"):
            if "@" in e or "." not in e.strip("."):
                raise ValueError(f"{e!r} is not a domain name")
            getattr(self, kind).add(e)
        elif kind == "client_ips":
            try:
                self.client_ips.add(e)
            except ValueError as exc:
                raise ValueError(f"{e!r} is not an IP address or CIDR block") from exc
        else:
            raise ValueError(f"unknown list kind {kind!r}")

    def extend(self, kind: str, entries: Iterable[str]) -> None:
        for e in entries:
            self.add(kind, e)

    def match_sender(self, mail_from: str) -> str | None:
        """Envelope sender by address, then by domain (with subdomains)."""
        addr = normalize_address(mail_from)
        if addr and addr in self.senders:
            return f"sender {addr}"
        dom = address_domain(addr)
        hit = self.sender_domains.match(dom) if dom else None
        return f"sender_domain {hit}" if hit else None

    def match_ip(self, ip: str) -> str | None:
        hit = self.client_ips.match(ip) if ip else None
        return f"client_ip {hit}" if hit else None

    def match_recipient(self, rcpt: str) -> str | None:
        addr = normalize_address(rcpt)
        return f"recipient {addr}" if addr in self.recipients else None

    def sizes(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in KINDS}
