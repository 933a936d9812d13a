"""Loading a policy file: TOML plus list files, validated completely, swapped atomically.

Every error is collected (file, line, key, why) and reported together; a
policy is either fully valid and applied, or not applied at all. On reload a
bad file leaves the previous policy in force.

See the README's annotated example for the format.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import stat
import threading
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spamgate.service.policy.lists import KINDS, AddressList, DomainSet, canonical_domain, entry_problem
from spamgate.service.policy.settings import (
    DEFAULT_SENSITIVITY,
    OFF,
    PRESETS,
    THRESHOLD_ACTIONS,
    Action,
    DomainSection,
    HeaderNames,
    Policy,
    PolicyError,
    Settings,
    Threshold,
)
from spamgate.service.runtime.toml_lines import KeyLines

log = logging.getLogger("spamgate.policy")

_TOP_KEYS = {
    "name",
    "version",
    "sensitivity",
    "block_action",
    "over_budget_action",
    "unfamiliar_max_action",
    "trusted_authserv_ids",
    "allow_empty_list_files",
    "thresholds",
    "actions",
    "headers",
    "allow",
    "block",
    "domain",
}
_ACTION_KEYS = {"subject_tag", "reroute_to", "reject_text", "info_headers", "max_reasons"}
_SECTION_KEYS = {"name", "recipient_domains", "sensitivity", "thresholds", "actions", "headers"}


# How many errors a refused policy reports, and how long each may be. A list file of 300,000 bad
# lines gave 300,000 errors each quoting its line: the ReloadPolicy and GetPolicy answers (38.9 MB)
# went over gRPC's limit and both failed RESOURCE_EXHAUSTED until a good reload (attack review).
# The first errors are what an admin fixes first; the rest are counted.
MAX_ERRORS = 20
MAX_ERROR_CHARS = 1000


def _shorten(error: str) -> str:
    """``error`` cut to ``MAX_ERROR_CHARS`` in all, saying how long it was (a value quoted whole)."""
    if len(error) <= MAX_ERROR_CHARS:
        return error
    tail = f"… ({len(error):,} characters in all)"
    return error[: MAX_ERROR_CHARS - len(tail)] + tail


def _more(count: int) -> list[str]:
    return [f"… and {count} more errors (the first {MAX_ERRORS} are shown)"] if count > 0 else []


def public_error(error: str) -> str:
    """What a caller without the admin role sees of a policy error: where, not what the files hold.

    GetPolicy is open to every Classify caller, and an error's details quote the files: a list
    file's bad line verbatim, a value given (``got '…'``). Every error is ``WHERE: WHAT: details``
    (``senders.txt:17: senders: 'x' is not …``, ``policy.toml:4: actions.reroute_to: must …``,
    ``policy.toml:3: not valid TOML: …``): the file, line and key or kind stay, the details go.
    An error of two parts is a fixed text (``… and 4 more errors``) and stays whole.
    """
    parts = error.split(": ", 2)
    return f"{parts[0]}: {parts[1]}: (details shown to admin callers only)" if len(parts) == 3 else error


class _Errors:
    """Every problem found, each as ``FILE:LINE: KEY: why``, the line resolved from the key's path.

    Only the first ``MAX_ERRORS`` are kept; the others are counted (``more``).
    """

    def __init__(self, path: Path, text: str) -> None:
        self.path, self.lines, self.items = path, KeyLines(text), list[str]()
        self.more = 0
        self.allow_empty_list_files = False  # the policy's own key: an empty list file is meant
        self.stamps: list[tuple[Path, Stamp, int]] = []  # every file read: as opened, and an fd to it

    def add(self, key: str, why: str) -> None:
        """``key`` is the path (``domain[1].thresholds.tag``): the line is that key's in its own table."""
        self.located(f"{self.path}:{self.lines.line_of(key)}: {key}: {why}")

    def located(self, error: str) -> None:
        """An error that already names its file and line (a list file's)."""
        if len(self.items) < MAX_ERRORS:
            self.items.append(_shorten(error))
        else:
            self.more += 1

    def all(self) -> list[str]:
        return self.items + _more(self.more)


def _thresholds(raw: Any, where: str, base: dict[Action, Threshold], err: _Errors) -> dict[Action, Threshold]:
    out = dict(base)
    if raw is None:
        return out
    if not isinstance(raw, dict):
        err.add(where, "must be a table")
        return out
    names = {a.name.lower(): a for a in THRESHOLD_ACTIONS}
    for key, value in raw.items():
        name, at_fpr = (key[: -len("_at_fpr")], True) if key.endswith("_at_fpr") else (key, False)
        if name not in names:
            err.add(f"{where}.{key}", f"unknown threshold (use {', '.join(names)} or <action>_at_fpr)")
            continue
        if f"{name}_at_fpr" in raw and name in raw:
            if at_fpr:
                err.add(f"{where}.{key}", f"give either {name} or {name}_at_fpr, not both")
            continue
        action = names[name]
        if value == "off":
            out[action] = OFF
        elif isinstance(value, bool) or not isinstance(value, int | float):
            err.add(f"{where}.{key}", f'must be a number or "off", got {value!r}')
        elif at_fpr and not 0.0 < value < 1.0:
            err.add(f"{where}.{key}", f"a target false-positive rate must be in (0, 1), got {value}")
        elif not at_fpr and not 0.0 < value <= 1.0:
            err.add(f"{where}.{key}", f"a probability threshold must be in (0, 1], got {value}")
        else:
            out[action] = Threshold("fpr" if at_fpr else "probability", float(value))
    return out


# What the action texts go into: the Subject header (subject_tag), the envelope (reroute_to), the
# SMTP reply (reject_text). A line break in one starts a new header or reply line: a subject_tag of
# "[SPAM]\r\nBcc: victim@example.com\r\nX-Injected: " put a real Bcc header into `spamgate check`
# output, and reroute_to was checked for an "@" only (attack review). Refused: C0 (tab too), DEL,
# C1 (U+0085 NEL among them) and U+2028/U+2029, which some readers take for line breaks.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# One address as an MTA takes it on the envelope: no spaces, brackets, commas, quotes or a second
# "@" (a list or a display name would be one bad address or several recipients), a domain that may
# lack a dot (quarantine@localhost is the default). RFC 5321 4.5.3.1.3: a path is at most 256
# octets with its angle brackets.
_ONE_ADDRESS = re.compile(r"[^\s<>,;:\"()\[\]\\@]+@[^\s<>,;:\"()\[\]\\@]+")
MAX_ADDRESS_CHARS = 254
# reject_text follows "550 " in the reply: a leading enhanced status code (RFC 3463; how
# service.mta.plan reads it) must then be a permanent 5.x.x one. RFC 5321 4.5.3.1.5: a reply line
# is at most 512 octets with its CRLF, so with "550 " the text fits in 500.
_STATUS_CODE = re.compile(r"\s*(\d)\.\d{1,3}\.\d{1,3}(?:\s|$)")
MAX_REJECT_CHARS = 500


def _check_texts(values: dict[str, Any], where: str, err: _Errors) -> None:
    """Refuse (and drop from ``values``) an action text that could break the header or reply it goes in."""
    for key in ("subject_tag", "reroute_to", "reject_text"):
        value = values.get(key)
        if value is None:
            continue
        if bad := _CONTROL.search(value):
            why = f"must not hold control characters (a line break ends the header or reply): {bad[0]!r}"
        elif key == "reroute_to" and (not _ONE_ADDRESS.fullmatch(value) or len(value) > MAX_ADDRESS_CHARS):
            why = f"must be one mail address (local@domain, at most {MAX_ADDRESS_CHARS} chars): {value!r}"
        elif key == "reject_text" and (code := _STATUS_CODE.match(value)) and code[1] != "5":
            why = f"must start with a 5.x.x status code if any (the reply is 550), got {value!r}"
        elif key == "reject_text" and len(value) > MAX_REJECT_CHARS:
            why = f"must be at most {MAX_REJECT_CHARS} characters (an SMTP reply line), got {len(value)}"
        else:
            continue
        err.add(f"{where}{key}", why)
        del values[key]


def _check_order(
    thresholds: dict[Action, Threshold], raw: Any, where: str, inherited: bool, err: _Errors
) -> None:
    """Refuse a less severe action whose threshold is above a more severe one's: it never applies.

    The most severe action whose threshold a message reaches wins, so ``tag = 0.99`` with
    ``delete = 0.5`` never tags: everything from 0.5 up is deleted. That is a configuration error,
    not a warning: a warning nobody reads leaves a policy that silently does not do what it says,
    while a refusal costs nothing in service, since a refused reload keeps the policy in force and
    ``serve`` exits 78 before it listens (a configuration error is never treated as an outage).
    Only two thresholds of one kind compare here: a probability against a target FPR needs a
    model's operating points (``spamgate policy check`` prints what they resolve to). A pair is
    refused when the section writes one of them and the other is its own too (written, or its
    preset's); a ``[[domain]]`` that overrides one threshold it ``inherited`` from the global section
    says what it wants there (``reroute = 0.8`` under a global ``tag = 0.9``: reroute from 0.8).
    """
    written = raw if isinstance(raw, dict) else {}
    severe_first = sorted(THRESHOLD_ACTIONS, reverse=True)
    for i, high in enumerate(severe_first):
        for low in severe_first[i + 1 :]:
            th, tl = thresholds.get(high, OFF), thresholds.get(low, OFF)
            if th.kind != tl.kind or th.kind == "off":
                continue
            if tl.value <= th.value if th.kind == "probability" else tl.value >= th.value:
                continue  # equal: the same point, harmless ("reject everything": all at 1e-9)
            names = [a.name.lower() for a in (low, high)]
            keys = [k for name in names for k in (name, f"{name}_at_fpr") if k in written]
            if not keys or (inherited and len(keys) < 2):  # presets are in order; see above
                continue
            err.add(
                f"{where}thresholds.{keys[0]}",
                f"{low.name} ({tl.describe()}) never applies: {high.name} ({th.describe()}) is reached "
                f'first (the most severe action reached wins): order them, or set {names[0]} = "off"',
            )
            return  # one such error a section: fixing it may settle the others


def _settings(raw: dict[str, Any], where: str, inherit: Settings | None, err: _Errors) -> Settings:
    sens = raw.get("sensitivity")
    if sens is not None and (not isinstance(sens, str) or sens not in PRESETS):  # [1]: unhashable
        err.add(f"{where}sensitivity", f"unknown preset {sens!r} (use {', '.join(PRESETS)})")
        sens = None
    base = (
        dict(PRESETS[sens])
        if sens
        else (dict(inherit.thresholds) if inherit else dict(PRESETS[DEFAULT_SENSITIVITY]))
    )
    thresholds = _thresholds(raw.get("thresholds"), f"{where}thresholds", base, err)
    _check_order(thresholds, raw.get("thresholds"), where, inherit is not None and not sens, err)
    values: dict[str, Any] = {}
    parent = inherit or Settings(thresholds={})
    actions = raw.get("actions", {})
    if not isinstance(actions, dict):
        err.add(f"{where}actions", "must be a table")
        actions = {}
    for key, value in actions.items():
        if key not in _ACTION_KEYS:
            err.add(f"{where}actions.{key}", f"unknown key (known: {', '.join(sorted(_ACTION_KEYS))})")
            continue
        want = type(getattr(parent, key))
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            err.add(f"{where}actions.{key}", f"must be {want.__name__}, got {value!r}")
            continue
        values[key] = value
    _check_texts(values, f"{where}actions.", err)
    if values.get("max_reasons", 0) < 0:
        err.add(f"{where}actions.max_reasons", "must be >= 0")
    headers = parent.headers
    hraw = raw.get("headers")
    if hraw is not None:
        if not isinstance(hraw, dict):
            err.add(f"{where}headers", "must be a table")
        else:
            known = set(HeaderNames.__dataclass_fields__)
            hv = {}
            for key, value in hraw.items():
                if key not in known:
                    err.add(
                        f"{where}headers.{key}", f"unknown header role (known: {', '.join(sorted(known))})"
                    )
                elif not isinstance(value, str) or (value and not re.fullmatch(r"[!-9;-~]+", value)):
                    err.add(f"{where}headers.{key}", f'must be a header field name or "", got {value!r}')
                else:
                    hv[key] = value
            headers = HeaderNames(**{**headers.__dict__, **hv})
    return Settings(
        thresholds=thresholds,
        subject_tag=values.get("subject_tag", parent.subject_tag),
        reroute_to=values.get("reroute_to", parent.reroute_to),
        reject_text=values.get("reject_text", parent.reject_text),
        info_headers=values.get("info_headers", parent.info_headers),
        max_reasons=values.get("max_reasons", parent.max_reasons),
        headers=headers,
    )


# The largest policy or list file read: a list of 1M addresses is ~30 MB. Reading is bounded so a
# wrong path (a log, a disk image) is an error, not minutes of parsing in the server.
MAX_FILE_BYTES = 64 * 1024 * 1024


Stamp = tuple[int, int, int]  # (inode, size, mtime_ns) of a file when it was opened


def _stamp(st: os.stat_result) -> Stamp:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def read_regular_file(path: Path, stamps: list[tuple[Path, Stamp, int]] | None = None) -> bytes:
    """A regular file's bytes, at most ``MAX_FILE_BYTES``; OSError otherwise.

    A FIFO or device named as a list file would block the reload forever (and
    every reload queued behind it): only regular files are opened, and without
    blocking, so a FIFO swapped in after the check cannot hang the open either.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise OSError(errno.EFBIG, f"larger than {MAX_FILE_BYTES} bytes")
        if stamps is not None:  # the file stays open: fstat later sees this file, whatever is renamed
            stamps.append((path, _stamp(st), os.dup(f.fileno())))
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise OSError(errno.EFBIG, f"larger than {MAX_FILE_BYTES} bytes")
    return data


def _read_list_file(path: Path, key: str, target: AddressList, err: _Errors, digest: Any) -> None:
    """Add the entries of the list file ``path`` that the policy names at ``key`` (``block.senders_file``).

    A bad entry is reported at its own line of the list file; a file that cannot be read
    or holds no entry, at the policy line that names it (the list file has no line to name).
    """
    kind = key.rpartition(".")[2].removesuffix("_file")
    try:
        data = read_regular_file(path, err.stamps)
    except OSError as exc:
        err.add(key, f"cannot read list file {path}: {exc.strerror}")
        return
    digest.update(data)
    if cut := cut_short(path, data) or not_plain_utf8(path, data):
        err.located(cut)
        return
    entries = 0
    # Lines end at "\n" only (a "\r" before it is stripped with the entry): str.splitlines also
    # broke at a form feed, U+0085 or U+2028, so the errors after one named the wrong line.
    for n, line in enumerate(data.decode("utf-8").split("\n"), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        entries += 1
        try:
            target.add(kind, entry)
        except ValueError as exc:
            err.located(f"{path}:{n}: {kind}: {exc}")
    if not entries and not err.allow_empty_list_files:
        err.add(
            key,
            f"the list file {path} has no entries: an emptied or cut-short file reads the same, so it is "
            "refused (to mean an empty list, drop the key, or set allow_empty_list_files = true)",
        )


def cut_short(path: Path, data: bytes) -> str | None:
    """Why ``data`` looks cut short while being written (its last line has no newline), or None.

    A writer caught mid-way (an editor saving in place, ``cp``, a full disk)
    leaves a file that ends mid-line; the value on that line may even still
    parse (``0.999`` read as ``0.9``). Replacing a file by renaming a complete
    new one over it (atomic) never shows a reader such a state.
    """
    if not data or data.endswith(b"\n"):
        return None
    last = data.count(b"\n") + 1
    return (
        f"{path}:{last}: the last line has no newline at its end: the file may have been "
        "cut short while being written; refused (write a new file, then rename it over this one)"
    )


def not_plain_utf8(path: Path, data: bytes) -> str | None:
    """Why ``data`` cannot be read as a policy or list file's text (a BOM, not UTF-8), or None.

    A list file was decoded with errors replaced: Latin-1 ``m\\xfcller@…`` became an entry
    ``m\\ufffdller@…`` that matched nobody, accepted; a byte-order mark stayed part of the first
    entry, and in the policy file tomllib called it ``Invalid statement (at line 1, column 1)``.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return f"{path}:1: starts with a byte-order mark (saved as 'UTF-8 with BOM'): save it without one"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return f"{path}:{line}: not UTF-8 (byte {exc.start}): refused"
    return None


def _list(raw: Any, where: str, base_dir: Path, err: _Errors, digest: Any) -> AddressList:
    out = AddressList()
    if raw is None:
        return out
    if not isinstance(raw, dict):
        err.add(where, "must be a table")
        return out
    for key, value in raw.items():
        kind = key[: -len("_file")] if key.endswith("_file") else key
        if kind not in KINDS:
            err.add(f"{where}.{key}", f"unknown list (known: {', '.join(KINDS)}, each also as <name>_file)")
            continue
        if key.endswith("_file"):
            files = value if isinstance(value, list) else [value]
            for f in files:
                if not isinstance(f, str):
                    err.add(f"{where}.{key}", f"must be a file path, got {f!r}")
                    continue
                _read_list_file((base_dir / f).resolve(), f"{where}.{key}", out, err, digest)
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            err.add(f"{where}.{key}", "must be a list of strings")
            continue
        for v in value:
            try:
                out.add(kind, v)
            except ValueError as exc:
                err.add(f"{where}.{key}", str(exc))
    return out


def _action_key(raw: dict[str, Any], key: str, default: Action, err: _Errors) -> Action:
    value = raw.get(key, default.name)
    if isinstance(value, str) and value.upper() in Action.__members__:
        return Action[value.upper()]
    err.add(key, f"must be one of DELIVER, TAG, REROUTE, REJECT, DELETE, got {value!r}")
    return default


def _add_recipient_domain(d: str, doms: DomainSet, earlier: list[DomainSet], key: str, err: _Errors) -> None:
    """Add ``d`` to a [[domain]] section's domains, refusing one that section could never get.

    The first section whose domains match a recipient applies, so a domain an earlier section
    already covers (itself or a parent: ``example.net`` before ``exec.example.net``) never
    reaches this one; and ``ceo@exec.example.net`` or two names in one string match no domain.
    Both were accepted, the section silently never applied (adversarial review).
    """
    try:
        entry_problem(d.strip())
        if "@" in d:
            raise ValueError(f"{d!r} is not a domain name (sections go by recipient domain)")
    except ValueError as exc:
        err.add(key, str(exc))
        return
    name = canonical_domain(d.strip().lstrip("*."))
    for j, other in enumerate(earlier):
        if hit := other.match(name):
            err.add(
                key,
                f"{name!r} is already covered by domain[{j}] ({hit!r}), which comes first: this section "
                "never applies to it (put the more specific section first)",
            )
            return
    doms.add(d)


def parse_policy(path: Path) -> Policy:
    """Read and validate a policy file and its list files; raise ``PolicyError`` listing every problem.

    Nothing else gets out: a policy that cannot be read is a configuration error wherever it is
    loaded (``serve`` exits 78, ``check`` exits 78 instead of a traceback's 1, which a pipe filter
    takes for TAG; a reload keeps the old policy and logs why). tomllib raises RecursionError for
    arrays or inline tables nested ~500 deep: ``version = [[[…]]]`` 3,000 deep crashed all four
    (attack review); anything else unforeseen (a value of a type a check did not expect) is
    refused the same way.
    """
    try:
        return _parse_policy(Path(path))
    except PolicyError as exc:  # _Errors keeps at most MAX_ERRORS; the others raised have one
        if all(len(e) <= MAX_ERROR_CHARS for e in exc.errors):
            raise
        raise PolicyError([_shorten(e) for e in exc.errors]) from exc
    except RecursionError as exc:
        raise PolicyError([f"{path}: nested too deeply (arrays or inline tables): refused"]) from exc
    except Exception as exc:
        why = f"{path}: cannot be read as a policy: {type(exc).__name__}: {exc}"
        raise PolicyError([_shorten(why)]) from exc


def _changed_while_read(stamps: list[tuple[Path, Stamp, int]]) -> list[str]:
    """The files read that changed (inode, size or mtime) since they were opened: being written.

    A file rewritten in place and read mid-write is refused when the cut falls mid-line
    (``cut_short``), but a cut at a line end parsed: 2 of 400 reloads during 4 KB writes of a
    20,000-entry list took a list of 4,096 entries (scratch probe, adversarial review). Looking
    again once every file is parsed catches a writer still at work; reload again once it is done.
    Only the file read counts (``fstat`` of the descriptor kept open): one renamed over it since
    (the atomic way) leaves what was read a whole version. Closes the descriptors, taking each
    off ``stamps`` first, so none is closed twice (a number closed twice may be another's by then).
    """
    out = []
    while stamps:
        path, stamp, fd = stamps.pop(0)
        try:
            now = _stamp(os.fstat(fd))
        finally:
            os.close(fd)
        if now != stamp:
            out.append(f"{path}: changed while it was being read (a writer at work?); refused: reload again")
    return out


def _parse_policy(path: Path) -> Policy:
    stamps: list[tuple[Path, Stamp, int]] = []
    try:
        return _parse_policy_files(path, stamps)
    finally:
        for _, _, fd in stamps:  # left open by an error before _changed_while_read
            with contextlib.suppress(OSError):
                os.close(fd)


def _parse_policy_files(path: Path, stamps: list[tuple[Path, Stamp, int]]) -> Policy:
    try:
        data = read_regular_file(path, stamps)
    except OSError as exc:
        raise PolicyError([f"{path}: cannot read: {exc.strerror}"]) from exc  # the whole file: no line
    if why := not_plain_utf8(path, data) or cut_short(path, data):
        raise PolicyError([why])
    text = data.decode("utf-8")
    err = _Errors(path, text)
    err.stamps = stamps
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise PolicyError([f"{path}:{m.group(1) + ':' if m else ''} not valid TOML: {exc}"]) from exc
    if not raw:
        raise PolicyError(
            [
                f"{path}: the policy file has no settings (empty, or only comments): an emptied or "
                "cut-short file reads the same, so it is refused; without a policy file the built-in "
                "policy applies"
            ]
        )
    aelf = raw.get("allow_empty_list_files", False)
    if isinstance(aelf, bool):
        err.allow_empty_list_files = aelf
    else:
        err.add("allow_empty_list_files", f"must be true or false, got {aelf!r}")
    digest = hashlib.sha256(data)
    for key in raw:
        if key not in _TOP_KEYS:
            err.add(key, f"unknown key (known: {', '.join(sorted(_TOP_KEYS))})")
    settings = _settings(raw, "", None, err)
    block_action = Action.DELETE
    ba = raw.get("block_action", "DELETE")
    if isinstance(ba, str) and ba.upper() in ("DELETE", "REJECT", "REROUTE", "TAG"):
        block_action = Action[ba.upper()]
    else:
        err.add("block_action", f"must be one of DELETE, REJECT, REROUTE, TAG, got {ba!r}")
    over_budget_action = _action_key(raw, "over_budget_action", Action.TAG, err)
    unfamiliar_max_action = _action_key(raw, "unfamiliar_max_action", Action.TAG, err)
    trusted = raw.get("trusted_authserv_ids", [])
    if not isinstance(trusted, list) or not all(isinstance(t, str) and t for t in trusted):
        err.add("trusted_authserv_ids", "must be a list of host names")
        trusted = []
    allow = _list(raw.get("allow"), "allow", path.parent, err, digest)
    block = _list(raw.get("block"), "block", path.parent, err, digest)
    if len(allow.from_header_domains) and not trusted:
        err.add("allow.from_header_domains", "needs trusted_authserv_ids: a From header alone is spoofable")
    domains: list[DomainSection] = []
    sections = raw.get("domain", [])
    if not isinstance(sections, list):
        err.add("domain", "must be an array of tables ([[domain]])")
        sections = []
    seen_names: set[str] = set()
    for i, sec in enumerate(sections):
        where = f"domain[{i}]."
        if not isinstance(sec, dict):
            err.add(f"domain[{i}]", "must be a table")
            continue
        for key in sec:
            if key not in _SECTION_KEYS:
                err.add(f"{where}{key}", f"unknown key (known: {', '.join(sorted(_SECTION_KEYS))})")
        name = sec.get("name")
        if not isinstance(name, str) or not name or name in seen_names:
            err.add(f"{where}name", f"each [[domain]] needs a unique name, got {name!r}")
            name = f"domain{i}"
        seen_names.add(name)
        doms = DomainSet()
        rd = sec.get("recipient_domains")
        if not isinstance(rd, list) or not rd or not all(isinstance(d, str) and "." in d for d in rd):
            err.add(f"{where}recipient_domains", "must be a non-empty list of domain names")
        else:
            earlier = [s.recipient_domains for s in domains]
            for d in rd:
                _add_recipient_domain(d, doms, earlier, f"{where}recipient_domains", err)
        domains.append(DomainSection(name, doms, _settings(sec, where, settings, err)))
    for why in _changed_while_read(err.stamps):
        err.located(why)
    if err.items:
        raise PolicyError(err.all())
    label = raw.get("version")
    version = (f"{label}+" if isinstance(label, str) and label else "") + digest.hexdigest()[:12]
    return Policy(
        name=str(raw.get("name", "default")),
        version=version,
        source=str(path),
        settings=settings,
        domains=tuple(domains),
        allow=allow,
        block=block,
        block_action=block_action,
        over_budget_action=over_budget_action,
        unfamiliar_max_action=unfamiliar_max_action,
        trusted_authserv_ids=frozenset(t.lower() for t in trusted),
    )


@dataclass
class ReloadResult:
    """What a reload did."""

    reloaded: bool
    version: str
    errors: list[str] = field(default_factory=list)


class PolicyHolder:
    """The active policy; ``reload`` swaps it only when the new file is entirely valid."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._policy = parse_policy(path) if path else Policy()
        self.loaded_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.last_errors: list[str] = []
        self._lock = threading.Lock()
        self._state = threading.Lock()  # guards _running / _pending (never held while reading files)
        self._running = False
        self._pending = False
        self._observers: list[Callable[[bool], None]] = []

    def current(self) -> Policy:
        return self._policy

    def observe(self, fn: Callable[[bool], None]) -> None:
        """Call ``fn(applied)`` after every reload of the file (the server counts them in its metrics)."""
        self._observers.append(fn)

    def reload(self) -> ReloadResult:
        """Re-read the policy file; on any error keep the previous policy and report why.

        Reloads never queue up: while one runs, another request only marks that
        the file must be read again when it ends, and returns at once. Queued
        reloads each held a server thread: with a 150,000-entry list file (7-9 s
        a reload) sixteen ReloadPolicy calls took every RPC thread and Health
        timed out for as long (attack review).
        """
        with self._state:
            if self._running:
                self._pending = True
                return ReloadResult(
                    False,
                    self._policy.version,
                    ["a reload is already running; the file is read again when it ends"],
                )
            self._running = True
        try:
            while True:
                result = self._reload_once()
                with self._state:
                    if not self._pending:
                        self._running = False
                        return result
                    self._pending = False
        except BaseException:
            with self._state:
                self._running = False
            raise

    def _reload_once(self) -> ReloadResult:
        with self._lock:
            if self.path is None:
                return ReloadResult(
                    False, self._policy.version, ["no policy file configured (built-in policy)"]
                )
            try:
                new = parse_policy(self.path)
            except PolicyError as exc:
                self.last_errors = exc.errors
                log.error(
                    "policy reload rejected, previous policy kept",
                    extra={"path": str(self.path), "errors": exc.errors, "kept": self._policy.version},
                )
                self._notify(False)
                return ReloadResult(False, self._policy.version, exc.errors)
            self._policy = new
            self.loaded_at = datetime.now(UTC).isoformat(timespec="seconds")
            self.last_errors = []
            log.info("policy reloaded", extra={"path": str(self.path), "version": new.version})
            self._notify(True)
            return ReloadResult(True, new.version)

    def _notify(self, applied: bool) -> None:
        for fn in self._observers:
            try:
                fn(applied)
            except Exception:  # a metric must never decide whether a policy is applied
                log.exception("policy reload observer failed")
