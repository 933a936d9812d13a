"""Readers for labelled mail in the layouts public corpora are published in.

Every reader yields ``LabelledMessage`` one at a time (streaming: a corpus
larger than memory can be featurised in chunks), and reads the same layout
from a plain folder or straight from a ``.tar.xz``/``.tar.gz``/``.tar.bz2``.

Layouts:
- ``dir``: ``ham/`` and ``spam/`` subfolders, one message per file (optional
  ``index.tsv`` with an ``order`` column gives delivery order).
- ``trec``: TREC spam-track ``index`` file of ``spam|ham PATH`` lines.
- ``labels``: ``label<TAB>path`` lines, paths absolute or relative to a root.
- ``mbox`` / ``maildir``: one label for the whole mailbox.
"""

from __future__ import annotations

import csv
import mailbox
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

from spamgate.model.errors import DataError
from spamgate.model.labelled import LabelledMessage

LABELS = {"spam": 1, "ham": 0}
FORMATS = ("dir", "trec", "labels", "mbox", "maildir")
ARCHIVE_SUFFIXES = (".tar.xz", ".tar.gz", ".tgz", ".tar.bz2", ".tar")


class CorpusError(DataError, ValueError):
    """A corpus (or other training input) cannot be read or used as asked (named path and reason)."""


def _label(text: str, where: str) -> int:
    key = text.strip().lower()
    if key not in LABELS:
        raise CorpusError(f"{where}: label {text!r} is neither 'spam' nor 'ham'")
    return LABELS[key]


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def detect_format(path: Path) -> str:
    """Guess a corpus layout from what is at ``path``."""
    if is_archive(path):
        with tarfile.open(path) as tar:
            for member in tar:
                parts = Path(member.name).parts
                if member.isdir() and parts and parts[-1] in ("ham", "spam"):
                    return "dir"
                if member.isfile() and parts and parts[-1] == "index":
                    return "trec"
                if member.isfile() and len(parts) >= 2 and parts[-2] in ("ham", "spam"):
                    return "dir"
        raise CorpusError(f"{path}: archive holds neither ham/ + spam/ folders nor a TREC index")
    if path.is_dir():
        if (path / "ham").is_dir() or (path / "spam").is_dir():
            return "dir"
        if (path / "index").is_file() or (path / "full" / "index").is_file():
            return "trec"
        if (path / "cur").is_dir() and (path / "new").is_dir():
            return "maildir"
        raise CorpusError(f"{path}: folder has no ham/ or spam/, no TREC index, and is not a Maildir")
    if path.is_file():
        if path.name == "index":
            return "trec"
        with open(path, "rb") as f:
            head = f.read(5)
        if head == b"From ":
            return "mbox"
        return "labels"
    raise CorpusError(f"{path}: no such file or folder")


def read_corpus(
    path: Path | str, fmt: str = "auto", label: str | None = None, root: Path | str | None = None
) -> Iterator[LabelledMessage]:
    """Stream a corpus in any supported layout (``fmt='auto'`` guesses)."""
    path = Path(path)
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise CorpusError(f"unknown corpus format {fmt!r}; choose from {FORMATS}")
    if fmt in ("mbox", "maildir"):
        if label is None:
            raise CorpusError(f"{path}: a {fmt} corpus needs --label spam|ham")
        lab = _label(label, str(path))
        if is_archive(path):
            yield from (_read_mbox_archive(path, lab) if fmt == "mbox" else _read_maildir_archive(path, lab))
            return
        yield from (_read_mbox(path, lab) if fmt == "mbox" else _read_maildir(path, lab))
        return
    if is_archive(path):
        yield from _read_archive(path, fmt, root)
        return
    if fmt == "dir":
        yield from _read_dir(path)
    elif fmt == "trec":
        index = (
            path
            if path.is_file()
            else (path / "index" if (path / "index").is_file() else path / "full" / "index")
        )
        yield from _read_trec(index)
    else:
        yield from _read_labels(path, Path(root) if root else path.parent)


def _dir_order(path: Path) -> dict[str, float]:
    index = path / "index.tsv"
    if not index.is_file():
        return {}
    out: dict[str, float] = {}
    with open(index, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            try:
                out[row["file"]] = float(row["order"])
            except (KeyError, TypeError, ValueError):
                continue
    return out


def _read_dir(path: Path) -> Iterator[LabelledMessage]:
    order = _dir_order(path)
    for sub in ("ham", "spam"):
        folder = path / sub
        if not folder.is_dir():
            continue
        for f in sorted(folder.iterdir()):
            if f.is_file():
                rel = f"{sub}/{f.name}"
                yield LabelledMessage(LABELS[sub], f.read_bytes(), rel, order.get(rel))


def _read_trec(index: Path) -> Iterator[LabelledMessage]:
    base = index.parent
    with open(index, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise CorpusError(f"{index}:{n}: expected 'spam|ham PATH', got {line.strip()!r}")
            target = (base / parts[1]).resolve()
            yield LabelledMessage(_label(parts[0], f"{index}:{n}"), target.read_bytes(), parts[1], float(n))


def parse_label_line(line: str, where: str) -> tuple[int, str] | None:
    """``label<TAB>path`` → (label, path); None for blank and ``#`` comment lines."""
    text = line.rstrip("\r\n")
    if not text.strip() or text.lstrip().startswith("#"):
        return None
    parts = text.split("\t")
    if len(parts) < 2:
        raise CorpusError(f"{where}: expected 'label<TAB>path', got {text!r}")
    return _label(parts[0], where), parts[1]


def _read_labels(path: Path, root: Path) -> Iterator[LabelledMessage]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parsed = parse_label_line(line, f"{path}:{n}")
            if parsed is None:
                continue
            lab, rel = parsed
            target = Path(rel) if os.path.isabs(rel) else root / rel
            try:
                raw = target.read_bytes()
            except OSError as exc:
                raise CorpusError(f"{path}:{n}: cannot read {target}: {exc.strerror}") from exc
            yield LabelledMessage(lab, raw, rel, float(n))


def _read_mbox(path: Path, label: int) -> Iterator[LabelledMessage]:
    box = mailbox.mbox(str(path), create=False)
    for n, key in enumerate(box.iterkeys()):
        yield LabelledMessage(label, box.get_bytes(key), f"{path.name}#{n}", float(n))


def _read_maildir(path: Path, label: int) -> Iterator[LabelledMessage]:
    box = mailbox.Maildir(str(path), factory=None, create=False)
    for key in sorted(box.iterkeys()):
        yield LabelledMessage(label, box.get_bytes(key), f"{path.name}/{key}", None)


def _read_mbox_archive(path: Path, label: int) -> Iterator[LabelledMessage]:
    """Every mbox file in an archive, one member at a time through a temporary file.

    ``mailbox.mbox`` needs a seekable file, so each member is spooled to disk
    (never all of them at once).
    """
    import tempfile

    with tarfile.open(path, mode="r|*") as tar:
        for member in tar:
            f = tar.extractfile(member) if member.isfile() else None
            if f is None:
                continue
            head = f.read(5)
            if head != b"From ":
                continue
            with tempfile.NamedTemporaryFile(suffix=".mbox") as tmp:
                tmp.write(head)
                while chunk := f.read(1 << 20):
                    tmp.write(chunk)
                tmp.flush()
                for m in _read_mbox(Path(tmp.name), label):
                    yield LabelledMessage(m.label, m.raw, f"{member.name}#{m.order:.0f}", m.order)


def _read_maildir_archive(path: Path, label: int) -> Iterator[LabelledMessage]:
    """Messages under the ``cur/`` and ``new/`` folders of a Maildir inside an archive."""
    with tarfile.open(path, mode="r|*") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if member.isfile() and len(parts) >= 2 and parts[-2] in ("cur", "new"):
                f = tar.extractfile(member)
                if f is not None:
                    yield LabelledMessage(label, f.read(), member.name, None)


def _strip_top(name: str) -> tuple[str, str]:
    parts = Path(name).parts
    return (parts[0], "/".join(parts[1:])) if len(parts) > 1 else ("", name)


def _read_archive(path: Path, fmt: str, root: Path | str | None) -> Iterator[LabelledMessage]:
    """Stream an archive member by member (``r|*`` mode: no seeking, constant memory)."""
    if fmt == "labels":
        raise CorpusError(f"{path}: a label file names paths; point --root at the unpacked archive instead")
    order: dict[str, float] = {}
    trec: dict[str, tuple[int, float]] = {}
    pending: dict[str, bytes] = {}
    with tarfile.open(path, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            f = tar.extractfile(member)
            if f is None:
                continue
            _, rel = _strip_top(member.name)
            parts = rel.split("/")
            if fmt == "dir":
                if rel == "index.tsv":
                    for row in csv.DictReader(f.read().decode("utf-8").splitlines(), delimiter="\t"):
                        try:
                            order[row["file"]] = float(row["order"])
                        except (KeyError, TypeError, ValueError):
                            continue
                elif len(parts) == 2 and parts[0] in LABELS:
                    yield LabelledMessage(LABELS[parts[0]], f.read(), rel, order.get(rel))
            else:  # trec: index names paths relative to its folder
                if parts[-1] == "index" and not trec:
                    base = "/".join(parts[:-1])
                    for n, line in enumerate(f.read().decode("utf-8", "replace").splitlines(), 1):
                        bits = line.split()
                        if len(bits) == 2:
                            target = os.path.normpath(os.path.join(base, bits[1]))
                            trec[target] = (_label(bits[0], f"{path}:index:{n}"), float(n))
                    for key in [k for k in pending if k in trec]:
                        lab, n_ = trec[key]
                        yield LabelledMessage(lab, pending.pop(key), key, n_)
                elif rel in trec:
                    lab, n_ = trec[rel]
                    yield LabelledMessage(lab, f.read(), rel, n_)
                elif not trec and len(pending) < 200_000:
                    pending[rel] = f.read()  # index comes later in this archive
