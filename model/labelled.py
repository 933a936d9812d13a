"""Labelled mail and site reports: the data training reads and the service's feedback store writes.

Here, in the shared core, so the service stores reports without importing ``training``
(issue 17: only the CLI may import it), and training reads them as the same types.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

# A reporter role that counts as trusted wherever the store records roles (issue 16's admin role).
TRUSTED_ROLES = frozenset({"admin"})


@dataclass(frozen=True)
class LabelledMessage:
    """One message with its label (1 spam, 0 ham) and where it came from."""

    label: int
    raw: bytes
    source: str
    order: float | None = None


@dataclass(frozen=True)
class Report:
    """A site's label for one message: the message, who said so, and whether that reporter is trusted."""

    message: LabelledMessage
    reporter: str
    trusted: bool


def is_trusted(reporter: str, trusted: Collection[str], role: str | None = None) -> bool:
    """A reporter named in ``trusted``, or one whose stored role is a trusted role."""
    return reporter in trusted or (role or "") in TRUSTED_ROLES
