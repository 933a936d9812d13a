"""The hand-written multilingual test set keeps its own promises (issue 14).

Nothing here scores mail: these checks are about the set itself: enough
languages, scripts and ordinary messages, plain and HTML, the legacy
charsets real mail uses, every file parses, its decoded text is in its
language's script (a charset mistake shows up as missing script characters
or U+FFFD), and no committed message was edited (SHA256SUMS).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from spamgate.model.parse import parse_message

HERE = Path(__file__).resolve().parent / "multilingual"
_spec = importlib.util.spec_from_file_location("make_corpus", HERE / "make_corpus.py")
assert _spec is not None and _spec.loader is not None
make_corpus = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("make_corpus", make_corpus)  # dataclasses look their module up there
_spec.loader.exec_module(make_corpus)
LANGS: dict[str, tuple[str, str, str]] = make_corpus.LANGS

FILES = sorted(HERE.glob("*/*/*.eml"))
LEGACY = {"gb2312", "koi8-r", "shift_jis", "iso-2022-jp", "euc-kr", "windows-1251", "windows-1256"}


def _where(path: Path) -> tuple[str, str]:
    """(box, lang) of a message file."""
    return path.parent.parent.name, path.parent.name


def _charsets(path: Path) -> set[str]:
    return {m.decode().lower() for m in re.findall(rb"charset=\"?([A-Za-z0-9_.:-]+)", path.read_bytes())}


def test_the_set_is_big_and_broad_enough() -> None:
    ham = Counter(_where(p)[1] for p in FILES if _where(p)[0] == "ham")
    spam = Counter(_where(p)[1] for p in FILES if _where(p)[0] == "spam")
    assert len(ham) >= 8
    assert all(n >= 5 for n in ham.values()), ham
    assert len({LANGS[lang][1] for lang in ham}) >= 5
    assert sum(1 for n in spam.values() if n >= 3) >= 5, spam
    assert set(ham) | set(spam) <= set(LANGS)


def test_plain_html_and_legacy_charsets_present() -> None:
    ham = [p for p in FILES if _where(p)[0] == "ham"]
    views = [parse_message(p.read_bytes()) for p in ham]
    assert sum(1 for v in views if v.text_html_parts == 0) >= 20
    assert sum(1 for v in views if v.text_html_parts > 0) >= 20
    seen = set().union(*(_charsets(p) for p in ham))
    assert seen >= LEGACY, LEGACY - seen
    assert any(c.startswith("iso-8859-") for c in seen)
    assert "utf-8" in seen
    encodings = {e for v in views for e in v.text_transfer_encodings}
    assert {"8bit", "base64", "quoted-printable", "7bit"} <= encodings


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.name}")
def test_message_parses_and_decodes_to_its_script(path: Path) -> None:
    raw = path.read_bytes()
    view = parse_message(raw)
    assert not [c for c in view.cut if c.startswith("parse_error")], view.cut
    assert view.from_addr is not None and view.from_addr.address
    assert view.date is not None and view.message_id
    text = "\n".join((view.subject, view.text, view.html_text))
    assert "\ufffd" not in text, "a character did not decode"
    _, lang = _where(path)
    assert any(c in text for c in LANGS[lang][2]), f"no {LANGS[lang][1]} characters of {lang} in {path.name}"
    letters = [c for c in text if c.isalpha()]
    if LANGS[lang][1] != "Latin":  # most letters are the script's, not mojibake Latin-1
        assert sum(1 for c in letters if ord(c) > 0x24F) > 0.5 * len(letters)
    # Display names were written in the language too; the From header decodes without loss.
    assert "\ufffd" not in (view.from_addr.display or "")


def test_messages_are_only_added_never_edited() -> None:
    lines = (HERE / "SHA256SUMS").read_text().splitlines()
    sums = {name: digest for digest, name in (line.split("  ", 1) for line in lines if line)}
    on_disk = {str(p.relative_to(HERE)) for p in FILES}
    assert on_disk == set(sums), "every .eml is listed in SHA256SUMS and every listed one exists"
    for rel, sha in sums.items():
        assert hashlib.sha256((HERE / rel).read_bytes()).hexdigest() == sha, f"{rel} was edited"
    # The generator still produces exactly the committed bytes.
    rendered = make_corpus.render()
    assert set(rendered) == on_disk
    for rel, data in rendered.items():
        assert (HERE / rel).read_bytes() == data, rel
