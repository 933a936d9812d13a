"""Allow and block lists: addresses, domains (with subdomains), IPs and CIDR blocks.

Lookups are O(1) in the list size: addresses and domains are hash sets (a
domain lookup walks the host's parent labels, at most ~10 set probes); CIDR
blocks are sets of network numbers per prefix length, so an IP is checked
with one probe per prefix length in use (at most 33 for IPv4, 129 for IPv6).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

KINDS = ("senders", "sender_domains", "client_ips", "recipients", "from_header_domains")


def normalize_address(addr: str) -> str:
    """Lower-cased address without angle brackets or surrounding space."""
    return addr.strip().strip("<>").strip().lower()


def address_domain(addr: str) -> str:
    _, at, dom = normalize_address(addr).rpartition("@")
    return dom.rstrip(".") if at else ""


@dataclass
class DomainSet:
    """Domains matching themselves and all their subdomains."""

    domains: set[str] = field(default_factory=set)

    def add(self, domain: str) -> None:
        self.domains.add(domain.strip().lower().lstrip("*.").rstrip("."))

    def match(self, host: str) -> str | None:
        labels = host.strip().lower().rstrip(".").split(".")
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
        net = ipaddress.ip_network(entry.strip(), strict=False)
        self.by_prefix.setdefault((net.version, net.prefixlen), set()).add(int(net.network_address))

    def match(self, ip: str) -> str | None:
        try:
            addr = ipaddress.ip_address(ip.strip().strip("[]"))
        except ValueError:
            return None
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
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
        if kind in ("senders", "recipients"):
            if "@" not in e:
                raise ValueError(f"{e!r} is not a mail address (use sender_domains for domains)")
            getattr(self, kind).add(normalize_address(e))
        elif kind in ("sender_domains", "from_header_domains"):
            if "@" in e or " " in e or "." not in e.strip("."):
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
