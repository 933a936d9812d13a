"""Bytes in a charset the sender declared → text, safely.

A charset name is written by the adversary, and handing it to Python's codec machinery as it
stands cost us three ways (found by an attack review, issue 20's mind-set: every byte is the
adversary's):

- **Memory.** ``codecs.lookup`` caches every name it is asked for: ``encodings`` keeps each unknown
  name in a dict for the life of the process, and the C codec registry keeps each spelling of a
  known one ("utf--8", "UTF---8", …). 200 messages of 500 KB, each part declaring a new charset,
  grew a scoring worker from 121 MB to 218 MB (23,722 cached names), and workers are not recycled.
  So a name is looked up only if its normalised form (lower case, any run of other characters
  than letters and digits, dots included, as one "_") is one of Python's own codec names or
  aliases, and only as that codec's module name: the caches then hold at most that fixed set.
- **Time.** Some codecs are no mail charset and cost super-linear time: the punycode decoder
  inserts one character at a time into a growing string (a 40 KB text part declared
  charset=punycode: 0.33 s, 80 KB: 0.55 s; through an RFC 2231 parameter of 500 KB, 10.3 s).
- **Crashes.** ``idna`` and ``undefined`` refuse ``errors="replace"`` (UnicodeError), and
  ``utf-7``, ``unicode_escape`` and ``raw_unicode_escape`` can decode to lone surrogates, which no
  UTF-8 encoder accepts: the token hash raised UnicodeEncodeError and the message went unscored.
  Codecs that are not text encodings (base64, zlib, rot13, …) are refused too.

No charset declared by any message of the five shared corpora is affected (they are real mail
charsets: utf-8, iso-8859-x, windows-125x, gb2312, koi8-r, …; UTF-7 keeps working, its lone
surrogates become U+FFFD).
"""

from __future__ import annotations

import codecs
import encodings
import encodings.aliases
import pkgutil
import re

__all__ = ["codec_name", "decode_bytes", "without_surrogates"]

# Longest charset name looked up; the longest Python knows is 24 characters
# ("iso2022_jp_2004" spelled out with separators stays under 40).
MAX_NAME = 40
# Codecs that are no mail charset: super-linear (punycode), no errors="replace" (idna, undefined),
# or decoding escape syntax rather than a charset (unicode_escape, raw_unicode_escape).
_REFUSED = frozenset({"punycode", "idna", "undefined", "unicode_escape", "raw_unicode_escape"})
_SEPARATORS = re.compile(r"[^0-9a-z]+")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _normalise(name: str) -> str:
    """Lower case, runs of anything but letters and digits as one "_" (as ``encodings`` does)."""
    return _SEPARATORS.sub("_", name.strip().strip("\"'").lower()).strip("_")


# Names mail clients declare that Python does not know, or knows as a narrower codec (a review listed
# them; they fell back to UTF-8, then Latin-1: Thai, Hebrew and Korean text read as mojibake, tokens no
# model could use). windows-874 is Windows' Thai (cp874); iso-8859-8-i/-e and iso-8859-6-i/-e are the
# logical/explicit-order labels of Hebrew and Arabic ISO 8859 (the bytes are those charsets');
# ks_c_5601-1987 is what Outlook writes for Windows' Korean, cp949, a superset of the EUC-KR Python maps
# it to (the same for EUC-KR bytes, Hangul EUC-KR lacks decoded instead of replaced). The shared corpora
# declare windows-874 20 times, iso-8859-8-i 7 times and ks_c_5601-1987 47 times (grep over the folders).
_MAIL_ALIASES = {
    "windows_874": "cp874",
    "iso_8859_8_i": "iso8859_8",
    "iso_8859_8_e": "iso8859_8",
    "iso_8859_6_i": "iso8859_6",
    "iso_8859_6_e": "iso8859_6",
    "ks_c_5601_1987": "cp949",
    "x_windows_949": "cp949",
    "windows_31j": "cp932",
    "x_sjis": "shift_jis",
    "x_euc_jp": "euc_jp",
    "x_gbk": "gbk",
    "x_mac_roman": "mac_roman",
    "x_mac_cyrillic": "mac_cyrillic",
    "x_mac_greek": "mac_greek",
    "x_mac_turkish": "mac_turkish",
    "x_mac_ce": "mac_latin2",
    "x_mac_icelandic": "mac_iceland",
}


def _known_names() -> dict[str, str]:
    """Normalised name or alias → the codec module name it stands for (a fixed set)."""
    modules = {m.name for m in pkgutil.iter_modules(encodings.__path__)}
    known = {_normalise(m): m for m in modules if not m.startswith("_")}
    for alias, module in encodings.aliases.aliases.items():
        known.setdefault(_normalise(alias), module)
    known.update(_MAIL_ALIASES)
    return {k: v for k, v in known.items() if k and v not in _REFUSED}


_KNOWN = _known_names()
# Canonical name → whether it decodes bytes to text; filled on first use, bounded by _KNOWN.
_IS_TEXT: dict[str, bool] = {}


def codec_name(charset: str | None) -> str | None:
    """The codec to decode a declared charset with, or None: unknown, refused, or not a name at all."""
    if not charset or len(charset) > MAX_NAME:
        return None
    module = _KNOWN.get(_normalise(charset))
    if module is None:
        return None
    ok = _IS_TEXT.get(module)
    if ok is None:
        try:
            info = codecs.lookup(module)
            ok = bool(getattr(info, "_is_text_encoding", True)) and info.name not in _REFUSED
        except LookupError:  # a module that is no codec (aliases, a platform-only codec)
            ok = False
        _IS_TEXT[module] = ok
    return module if ok else None


def without_surrogates(text: str) -> str:
    """``text`` with lone surrogates (which no UTF-8 encoder takes) replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode with the declared charset, falling back to UTF-8 then Latin-1; never raises."""
    codec = codec_name(charset)
    # Exactly "utf-8" (as parsing lower-cases it) is read strictly, falling back to Latin-1 for the
    # whole text; any other name, "utf8" included, with its bad bytes replaced. That is what the
    # decoder did before this module, and training rows depend on it (review: making every UTF-8
    # spelling strict would turn a "utf8" part with one bad byte into Latin-1 mojibake).
    if codec is not None and charset != "utf-8":
        try:
            return without_surrogates(data.decode(codec, errors="replace"))
        except Exception:  # a codec's own failure is the sender's doing: fall back
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")
