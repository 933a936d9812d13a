"""Explicit bounds on the work spent on one message.

Mail is attacker-controlled input: every loop in the parser is bounded by one
of these numbers, and whatever a bound cuts is recorded in the message view
(``MessageView.cut``) so a verdict can say what was not looked at.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParseLimits:
    """Upper bounds for parsing one message.

    max_bytes: raw bytes scanned; the rest of the message is ignored (spam
        signals live in headers and the first part of the body; a 20 MB
        attachment adds nothing but latency).
    max_header_bytes: bytes of the header block kept; protects against
        header floods before the body limit applies.
    max_mime_depth: nesting depth of multiparts walked.
    max_parts: MIME parts walked in total.
    max_text_chars: decoded text characters kept per message (plain + HTML).
    max_html_chars: HTML characters fed to the HTML-to-text converter.
    max_urls: URLs collected.
    """

    max_bytes: int = 512 * 1024
    max_header_bytes: int = 64 * 1024
    max_mime_depth: int = 20
    max_parts: int = 100
    max_text_chars: int = 100_000
    max_html_chars: int = 200_000
    max_urls: int = 200

    def __post_init__(self) -> None:
        for name in (
            "max_bytes",
            "max_header_bytes",
            "max_mime_depth",
            "max_parts",
            "max_text_chars",
            "max_html_chars",
            "max_urls",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ParseLimits.{name} must be a positive integer, got {value!r}")

    def as_dict(self) -> dict[str, int]:
        """Plain-data form, recorded in artifact manifests."""
        return {
            "max_bytes": self.max_bytes,
            "max_header_bytes": self.max_header_bytes,
            "max_mime_depth": self.max_mime_depth,
            "max_parts": self.max_parts,
            "max_text_chars": self.max_text_chars,
            "max_html_chars": self.max_html_chars,
            "max_urls": self.max_urls,
        }
