"""The committed list of corpus labels that are demonstrably wrong, and relabelling with it.

Issue 14: a public corpus's label is sometimes plainly wrong (a German pump-and-dump stock mail
labelled ham in TREC 2007). ``datasets/label_corrections.toml`` lists such messages, each with a
reason judged from the message's content alone. The list is applied to every filter alike (the
benchmarks rewrite the split files, train and test halves, before any filter sees them), and
figures are reported with and without it, so a correction can never flatter one filter only.

Validation is strict because a silently ignored entry (a typo in ``label_corrected``, a path
that matches nothing) would make the "with corrections" figures quietly equal the original
ones, and an entry applied to a split whose label already differs from ``label_given`` means
the list and the corpus disagree: both are reported, never guessed around.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spamgate.model.errors import DataError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LIST = REPO_ROOT / "datasets" / "label_corrections.toml"
LABELS = ("ham", "spam")
FIELDS = ("corpus", "path", "label_given", "label_corrected", "reason")
# A reason describes the message in one sentence and may quote a few words; corpus text must not
# be copied into the repository (research-only licences), so a long reason is refused outright.
MAX_REASON_CHARS = 400


class LabelCorrectionsError(DataError, ValueError):
    """The corrections list cannot be read, is malformed, or disagrees with the split it is applied to."""


@dataclass(frozen=True)
class LabelCorrection:
    """One message whose corpus label is replaced, and why (content only, never a filter's score)."""

    corpus: str
    path: str  # relative to the unpacked corpus folder, e.g. "ham/data__inmail.23337"
    label_given: str
    label_corrected: str
    reason: str

    @property
    def key(self) -> str:
        """The message's path as the split files write it: ``corpus/path``."""
        return f"{self.corpus}/{self.path}"


def _entry(raw: Any, where: str) -> LabelCorrection:
    if not isinstance(raw, dict):
        raise LabelCorrectionsError(f"{where}: expected a table, got {type(raw).__name__}")
    missing = [f for f in FIELDS if f not in raw]
    unknown = sorted(set(raw) - set(FIELDS))
    if missing or unknown:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown key(s) {', '.join(unknown)}"] if unknown else []
        )
        raise LabelCorrectionsError(f"{where}: {'; '.join(problems)} (keys are {', '.join(FIELDS)})")
    for f in FIELDS:
        if not isinstance(raw[f], str) or not raw[f].strip():
            raise LabelCorrectionsError(f"{where}: {f} must be a non-empty string")
    c = LabelCorrection(**{f: raw[f].strip() for f in FIELDS})
    for f in ("label_given", "label_corrected"):
        if getattr(c, f) not in LABELS:
            raise LabelCorrectionsError(f"{where}: {f} {getattr(c, f)!r} is neither 'ham' nor 'spam'")
    if c.label_given == c.label_corrected:
        raise LabelCorrectionsError(f"{where}: label_given and label_corrected are both {c.label_given!r}")
    parts = Path(c.path).parts
    if c.path.startswith("/") or ".." in parts or "/" in c.corpus or c.corpus in (".", ".."):
        raise LabelCorrectionsError(f"{where}: corpus and path must be relative names inside the data folder")
    # A path written another way than the split files write it ("ham/./x", "ham//x", "x/") would never
    # match a split row, and the entry would be silently ignored.
    if c.path != "/".join(parts) or "." in parts or "\\" in c.path:
        normal = "/".join(p for p in parts if p != ".")
        raise LabelCorrectionsError(f"{where}: path {c.path!r} is not in normal form (write {normal!r})")
    if parts and parts[0] in LABELS and parts[0] != c.label_given:
        raise LabelCorrectionsError(
            f"{where}: path {c.path!r} lies in the corpus's {parts[0]}/ folder but label_given is "
            f"{c.label_given!r}"
        )
    if len(c.reason) > MAX_REASON_CHARS:
        raise LabelCorrectionsError(
            f"{where}: reason is {len(c.reason)} characters (at most {MAX_REASON_CHARS}: one sentence, "
            "a few quoted words, never the message's text)"
        )
    return c


def parse(text: str, source: str = "<string>") -> tuple[LabelCorrection, ...]:
    """Validate a corrections list given as TOML text (``source`` names it in errors)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LabelCorrectionsError(f"{source}: not valid TOML: {exc}") from None
    unknown = sorted(set(doc) - {"correction"})
    if unknown:
        raise LabelCorrectionsError(f"{source}: unknown top-level key(s) {', '.join(unknown)}")
    entries = doc.get("correction", [])
    if not isinstance(entries, list):
        raise LabelCorrectionsError(f"{source}: 'correction' must be an array of tables ([[correction]])")
    out: list[LabelCorrection] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(entries, 1):
        c = _entry(raw, f"{source}: correction {i}")
        if c.key in seen:
            raise LabelCorrectionsError(
                f"{source}: correction {i} repeats {c.key} (also correction {seen[c.key]})"
            )
        seen[c.key] = i
        out.append(c)
    return tuple(out)


def load(path: Path = DEFAULT_LIST) -> tuple[LabelCorrection, ...]:
    """Read and validate the corrections list at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelCorrectionsError(f"{path}: cannot read the label corrections list: {exc}") from None
    return parse(text, str(path))


def relabel(
    rows: Iterable[tuple[str, str]], corrections: Sequence[LabelCorrection]
) -> tuple[list[tuple[str, str]], list[LabelCorrection]]:
    """``(label, path)`` rows of a split with the corrections applied, and the corrections that matched.

    A path may be absolute or relative to the data folder; it matches a correction when it ends
    with the correction's ``corpus/path``. A matched row whose label is not ``label_given`` is an
    error (the list was written for other labels, or the split was corrected already).
    """
    by_key = {c.key: c for c in corrections}
    out: list[tuple[str, str]] = []
    applied: list[LabelCorrection] = []
    for label, p in rows:
        c = by_key.get(p) or next((c for k, c in by_key.items() if p.endswith("/" + k)), None)
        if c is None:
            out.append((label, p))
            continue
        if label != c.label_given:
            raise LabelCorrectionsError(
                f"{p}: labelled {label!r} in the split, but the corrections list says the corpus gives "
                f"{c.label_given!r}"
            )
        out.append((c.label_corrected, p))
        applied.append(c)
    return out, applied
