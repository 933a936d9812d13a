"""Mutation fuzzing of parsing and features: inputs tried, crashes, the slowest input (issue 13).

    python bench/fuzz.py [--seconds 600] [--seed 1] [--max-bytes 524288]

Seeds are messages generated here (plain, HTML, multipart, nested multiparts and message/rfc822,
encoded words, many recipients, URLs, base64 and quoted-printable bodies), never corpus mail. Each
input is a seed or an earlier slow input with 1-4 mutations: byte flips, inserts and deletes, line
duplications, deletions and swaps, copies of a region elsewhere, splices with another seed, and
growth by repeating a random slice (up to ``--max-bytes``, the parser's byte limit). Inputs that
were slow for their size are kept and mutated further, which steers towards slow paths.

Each input goes through what scoring does: ``parse_message`` (whose inner parser must not raise:
the view's ``cut`` holds no ``parse_error:``) and ``FeatureExtractor.transform_one`` with the
bundled model's feature config. An exception is a crash. Times are CPU seconds of this thread
(``time.thread_time``): the VM is shared and its wall time drifts.

Prints the figures and writes bench/results/fuzz.json: inputs tried, crashes (type, message,
size, sha256 and the first bytes of each distinct one), the slowest input's CPU time, size,
sha256 and mutation history, how many inputs took over 0.1 s and over 1 s. Inputs over 1 s and
crashing inputs are written to bench/results/fuzz_inputs/ (generated, never corpus mail) so they
can be replayed and turned into cases of tests/test_pathological.py.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import platform
import random
import shlex
import sys
import time
import traceback
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spamgate.model.artifact import load_artifact
from spamgate.model.bundled import bundled_model_path
from spamgate.model.features import FeatureExtractor
from spamgate.model.parse import parse_message

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "fuzz.json"
INPUTS = REPO / "bench" / "results" / "fuzz_inputs"

WORDS = ["offer", "free", "meeting", "invoice", "click", "here", "now", "report", "budget", "hello", "the"]
VALUE_ATOMS = [
    "a", "b@c.example", "<", ">", "@", '"', "\\", " ", "\t", "\n ", "=?", "?=", "=?utf-8?b?YWJj?=",
    "=?iso-8859-1?q?caf=E9?=", "?", ";", "=", "(", ")", "[10.0.0.1]", "from ", "by ", "::",
    "http://x.example/", "www.y.example", "é", "€", "\x00", "\r", "&#", "name*0*=", "%41", "'",
]  # fmt: skip
HTML_ATOMS = [
    "<a href=http://x.example/>", "</a>", "<p>", "</p>", "<div style='display:none'>", "</div>",
    "<font color=white>", "</font>", "<script>", "</script>", "<style>", "</style>", "<!--", "-->",
    "<![CDATA[", "]]>", "<!", "<?", "<", ">", "&amp;", "&#65;", "&notin", "&", "<br>", "<img src=x>",
    "<form>", "a1.a1.", "http://y.example/", " ", "\n", "<title>", "</title>", "<a", "'", '"', "=",
]  # fmt: skip


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _value(rng: random.Random) -> str:
    return "".join(
        rng.choice(VALUE_ATOMS) if rng.random() < 0.6 else rng.choice(WORDS)
        for _ in range(rng.randint(1, 12))
    )


def _headers(rng: random.Random) -> list[str]:
    out = [
        f"From: {rng.choice(['Alice', '=?utf-8?q?B=C3=B6b?=', ''])} <a@{rng.choice(['ex.org', 'x.biz'])}>",
        f"To: {', '.join(f'u{i}@example.net' for i in range(rng.randint(0, 5)))}",
        f"Subject: {_words(rng, 4)}",
        f"Message-ID: <{rng.randint(0, 10**9)}@example.org>",
        "Date: Tue, 03 Jun 2025 10:00:00 +0000",
        "Received: from mail.example.org (mail.example.org [93.184.216.34]) by mx.example.net; "
        "Tue, 03 Jun 2025 10:00:05 +0000",
    ]
    for _ in range(rng.randint(0, 4)):
        out.append(
            f"{rng.choice(['X-Mailer', 'Cc', 'Reply-To', 'X-Spam-Status', 'List-Id', 'X-A'])}: {_value(rng)}"
        )
    rng.shuffle(out)
    return out


def _body(rng: random.Random, depth: int = 0) -> tuple[list[str], str]:
    """(content headers, body) of one entity."""
    kind = rng.choice(
        ["plain", "html", "multipart", "rfc822", "base64", "qp"] if depth < 3 else ["plain", "html"]
    )
    if kind == "plain":
        return ["Content-Type: text/plain; charset=utf-8"], _words(rng, 30) + " http://a.example/x\n"
    if kind == "html":
        doc = "".join(rng.choice(HTML_ATOMS) if rng.random() < 0.5 else _words(rng, 2) for _ in range(40))
        return ["Content-Type: text/html; charset=utf-8"], doc + "\n"
    if kind == "base64":
        data = base64.encodebytes(_words(rng, 20).encode()).decode()
        return ["Content-Type: text/plain", "Content-Transfer-Encoding: base64"], data
    if kind == "qp":
        return [
            "Content-Type: text/plain; charset=iso-8859-1",
            "Content-Transfer-Encoding: quoted-printable",
        ], ("caf=E9 =\n" + _words(rng, 10) + "=3D\n")
    if kind == "rfc822":
        headers, body = _body(rng, depth + 1)
        return ["Content-Type: message/rfc822"], "\n".join(_headers(rng) + headers) + "\n\n" + body
    boundary = rng.choice(["b", "=_b0undary", "x" * (depth + 1), "b--", "----=_Part_1"])
    parts = []
    for _ in range(rng.randint(1, 4)):
        headers, body = _body(rng, depth + 1)
        parts.append(f"--{boundary}\n" + "\n".join(headers) + "\n\n" + body)
    ctype = rng.choice(["mixed", "alternative", "related", "digest"])
    return [f'Content-Type: multipart/{ctype}; boundary="{boundary}"'], (
        "preamble\n" + "".join(parts) + f"--{boundary}--\nepilogue\n"
    )


def seed_message(rng: random.Random) -> bytes:
    headers, body = _body(rng)
    raw = ("\n".join([*_headers(rng), "MIME-Version: 1.0", *headers]) + "\n\n" + body).encode("utf-8")
    return raw.replace(b"\n", b"\r\n") if rng.random() < 0.3 else raw


def mutate(rng: random.Random, data: bytes, seeds: list[bytes], max_bytes: int) -> tuple[bytes, str]:
    """One random mutation of ``data`` and its name."""
    n = len(data)
    kind = rng.choice(
        ["flip", "insert", "delete", "dup_line", "del_line", "swap_lines", "copy", "splice", "grow"]
    )
    if n == 0:
        kind = "splice"
    if kind == "flip":
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(n)] = rng.randrange(256)
        return bytes(b), kind
    if kind == "insert":
        i = rng.randint(0, n)
        atom = rng.choice(VALUE_ATOMS + HTML_ATOMS + ["\n", "\n\n", "--b\n", ":", "\n "]).encode("utf-8")
        return data[:i] + atom * rng.randint(1, 4) + data[i:], kind
    if kind == "delete":
        i = rng.randrange(n)
        return data[:i] + data[i + rng.randint(1, min(64, n - i)) :], kind
    lines = data.split(b"\n")
    if kind in ("dup_line", "del_line", "swap_lines") and len(lines) > 1:
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        if kind == "dup_line":
            lines.insert(j, lines[i])
        elif kind == "del_line":
            del lines[i]
        else:
            lines[i], lines[j] = lines[j], lines[i]
        return b"\n".join(lines), kind
    if kind == "copy":
        i = rng.randrange(n)
        piece = data[i : i + rng.randint(1, 256)]
        j = rng.randint(0, n)
        return data[:j] + piece + data[j:], kind
    if kind == "grow":
        i = rng.randrange(n)
        piece = data[i : i + rng.choice([1, 2, 3, 4, 8, 16, 64, 256])]
        room = max(0, max_bytes - n)
        times = min(room // max(1, len(piece)), rng.choice([10, 100, 1000, 10_000, 100_000]))
        return data[:i] + piece * times + data[i:], f"grow{len(piece)}x{times}"
    other = rng.choice(seeds)
    i, j = rng.randint(0, n), rng.randint(0, len(other))
    return data[:i] + other[j:], "splice"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-bytes", type=int, default=512 * 1024)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    rng = random.Random(args.seed)
    config = load_artifact(bundled_model_path()).features
    fx = FeatureExtractor(config)
    seeds = [seed_message(rng) for _ in range(200)]
    pool: list[tuple[float, bytes, list[str]]] = []  # (seconds per KB, input, history): slow ones
    crashes: dict[str, dict[str, Any]] = {}
    tried = over_100ms = over_1s = 0
    slowest: dict[str, Any] = {"cpu_seconds": 0.0}
    total_cpu = 0.0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        if pool and rng.random() < 0.4:
            _, data, history = rng.choice(pool)
        else:
            data, history = rng.choice(seeds), ["seed"]
        history = list(history)
        for _ in range(rng.randint(1, 4)):
            data, what = mutate(rng, data, seeds, args.max_bytes)
            history.append(what)
        data = data[: args.max_bytes]
        tried += 1
        t = time.thread_time()
        try:
            view = parse_message(data, config.limits)
            errors = [c for c in view.cut if c.startswith("parse_error:")]
            if errors:
                raise RuntimeError(f"inner parser raised: {errors[0]}")
            fx.transform_one(view)
        except Exception as exc:
            key = f"{type(exc).__name__}: {str(exc)[:200]}"
            if key not in crashes:
                digest = hashlib.sha256(data).hexdigest()
                INPUTS.mkdir(parents=True, exist_ok=True)
                (INPUTS / f"crash-{digest[:16]}.eml").write_bytes(data)
                crashes[key] = {
                    "count": 0,
                    "bytes": len(data),
                    "sha256": digest,
                    "history": history[-8:],
                    "traceback": traceback.format_exc(limit=4)[-1500:],
                }
            crashes[key]["count"] += 1
            continue
        took = time.thread_time() - t
        total_cpu += took
        over_100ms += took > 0.1
        over_1s += took > 1.0
        if took > slowest["cpu_seconds"]:
            slowest = {
                "cpu_seconds": round(took, 4),
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "history": history[-8:],
            }
        if took > 1.0:
            INPUTS.mkdir(parents=True, exist_ok=True)
            (INPUTS / f"slow-{hashlib.sha256(data).hexdigest()[:16]}.eml").write_bytes(data)
        rate = took / max(1.0, len(data) / 1024)
        if len(pool) < 64 or rate > min(p[0] for p in pool):
            pool.append((rate, data, history[-16:]))
            if len(pool) > 64:
                pool.remove(min(pool, key=lambda p: p[0]))

    result = {
        "command": "python bench/fuzz.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "date": date.today().isoformat(),
        "python": platform.python_version(),
        "seconds": args.seconds,
        "seed": args.seed,
        "max_bytes": args.max_bytes,
        "inputs_tried": tried,
        "crashes": len(crashes),
        "crash_kinds": crashes,
        "mean_cpu_ms": round(1000 * total_cpu / max(1, tried - sum(c["count"] for c in crashes.values())), 3),
        "over_100ms": over_100ms,
        "over_1s": over_1s,
        "slowest": slowest,
    }
    summary = {k: v for k, v in result.items() if k != "crash_kinds"}
    print(json.dumps(summary, indent=2))
    for key, info in crashes.items():
        print(f"crash x{info['count']}: {key}\n{info['traceback']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
