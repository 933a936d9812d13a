"""Finding URLs in text and naming their hosts.

Hosts are the most durable spam signal in a URL (paths are randomised per
message, hosts are bought and reused), so features use hosts and their
parent domains, never full URLs.

The host helpers are memoised (bounded LRU caches): they are pure functions
of short strings that repeat across messages, and they were called ~40 times
a message from tokens and heuristics (``ipaddress`` parsing included).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from functools import lru_cache, wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

# URLs start at a word boundary with http://, https:// or www. (any case). Spelled so the pattern
# starts with a character class, the regex engine skips to candidate characters in C instead of
# trying "(?i)\b(?:https?://|www\.)" at every position: 25 µs instead of 85-100 µs a message on
# S1's test half, same URLs. The word boundary is checked by hand.
_URL_SCAN = re.compile(r"""[hHwW](?:[tT][tT][pP][sS]?://|[wW][wW]\.)[^\s<>"'()\[\]{}]{2,500}""")

# Well-known redirectors: a shortened link hides its destination from the reader.
SHORTENERS = frozenset(
    {
        "bit.ly",
        "tinyurl.com",
        "goo.gl",
        "t.co",
        "ow.ly",
        "is.gd",
        "buff.ly",
        "tiny.cc",
        "rebrand.ly",
        "cutt.ly",
        "shorturl.at",
        "rb.gy",
        "t.ly",
        "bl.ink",
        "lnkd.in",
        "s.id",
        "v.gd",
        "qr.ae",
        "adf.ly",
        "shorte.st",
        "x.co",
        "snip.ly",
        "tr.im",
        "cli.gs",
        "budurl.com",
        "su.pr",
        "url4.eu",
        "tinyurl.co.uk",
        "snipurl.com",
    }
)


def find_urls(text: str, limit: int) -> list[str]:
    """URLs in running text, in order, at most ``limit``."""
    out: list[str] = []
    pos = 0
    while len(out) < limit:
        m = _URL_SCAN.search(text, pos)
        if m is None:
            break
        start = m.start()
        if start and (text[start - 1].isalnum() or text[start - 1] == "_"):
            pos = start + 1  # not at a word boundary ("Ghttp://…"): a URL may still start inside
            continue
        out.append(m.group(0).rstrip(".,;:!?"))
        pos = m.end()
    return out


def _cached_if_short(max_key: int) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """An LRU cache (65,536 entries) for calls whose first argument is at most ``max_key`` long.

    Hosts and URLs repeat across mail, so caching pays; but a HELO or a URL can
    be 64 KB of attacker text, and 65,536 of those held gigabytes in a scoring
    worker. Longer arguments are computed every time (same result, no memory).
    """

    def wrap(fn: Callable[..., T]) -> Callable[..., T]:
        cached = lru_cache(maxsize=65536)(fn)

        @wraps(fn)
        def call(key: str, *args: Any) -> T:
            return cached(key, *args) if len(key) <= max_key else fn(key, *args)

        call.cache_info = cached.cache_info  # type: ignore[attr-defined]
        return call

    return wrap


@_cached_if_short(1024)
def url_host(url: str) -> str:
    """Lower-cased host of a URL (``www.x`` without scheme allowed); '' if none."""
    u = url.strip()
    if u.lower().startswith("www."):
        u = "http://" + u
    try:
        host = urlsplit(u).hostname or ""
    except ValueError:
        return ""
    return host.strip(".").lower()[:253]


# Linear time (issue 13): the middle branch was [0-9a-f:]*:[0-9a-f:.]*, which a run of colons (a HELO
# of "::::…g" in a Received header reaches is_ip_literal) made retry the tail from every colon:
# 8,000 colons 0.9 s, 16,000 4.4 s; now 0.1 ms. Splitting at the first colon matches the same strings
# (whatever precedes any colon that splits them holds no "."), and possessive repeats cannot retry.
_MAYBE_IP = re.compile(r"[\d.]++|[0-9a-f]*+:[0-9a-f:.]*+|0x[0-9a-f]++", re.IGNORECASE)


@_cached_if_short(255)
def is_ip_literal(host: str) -> bool:
    """True for dotted-quad, IPv6 or the decimal/hex integer forms spammers use."""
    if not host or not _MAYBE_IP.fullmatch(host):
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return bool(re.fullmatch(r"(?:0x[0-9a-f]+|\d{8,10})", host))


@_cached_if_short(255)
def parent_domains(host: str, max_labels: int = 3) -> tuple[str, ...]:
    """``a.b.example.com`` → ``example.com``, ``b.example.com`` (shortest first).

    Registered domains are approximated by the last two labels (three when the
    second-level label is short, e.g. ``co.uk``); a public-suffix list would be
    more exact but this is what lets ``x1.spamhost.com`` and ``x2.spamhost.com``
    share a feature.
    """
    if is_ip_literal(host):
        return (host,)
    labels = [x for x in host.split(".") if x]
    if len(labels) < 2:
        return (host,) if host else ()
    base = 3 if len(labels) >= 3 and len(labels[-2]) <= 3 and len(labels[-1]) == 2 else 2
    return tuple(".".join(labels[-n:]) for n in range(base, min(len(labels), base + max_labels - 1) + 1))


@_cached_if_short(255)
def is_shortener(host: str) -> bool:
    """True when the host (or its registered domain) is a known URL shortener."""
    return host in SHORTENERS or any(d in SHORTENERS for d in parent_domains(host))
