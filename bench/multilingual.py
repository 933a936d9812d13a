"""Day-0 check on the hand-written multilingual set: bundled model, default policy.

    python bench/multilingual.py [--model DIR] [--data DATA] [--out bench/results/multilingual.json]

Scores every message under tests/multilingual/{ham,spam}/<lang>/ exactly as
the service would on a fresh install: the bundled model (or ``--model``)
and the built-in "balanced" policy (TAG at FPR 1%, REROUTE at 0.1%, REJECT
at 0.01%), through ``service.scoring.verdict.build_verdict``. Prints one row per
language: ham delivered / tagged / rerouted-or-worse, spam caught (any
action above DELIVER), mean p of ham and of spam, then every ham message
that was not delivered with its p and strongest reasons. Writes the
per-message figures to bench/results/multilingual.json. Nothing is tuned
here; this is the measurement issue 14 starts from.

It also counts the out-of-distribution flag (``ClassifyResponse.unfamiliar``,
``model.familiarity``) per language, and, with ``--data``, on the ham of the
shared corpora (S1's and S2's test halves, and up to 3,000 ham of each other
corpus), where it should almost never fire.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spamgate.model.bundled import bundled_model_path
from spamgate.model.parse import parse_message
from spamgate.service.policy.settings import Action, Policy
from spamgate.service.scoring.model_holder import ModelHolder
from spamgate.service.scoring.verdict import Request, build_verdict
from spamgate.training.text_only import text_only

REPO = Path(__file__).resolve().parents[1]
SET = REPO / "tests" / "multilingual"
MAX_BYTES = 25 * 2**20


def _lang_info() -> dict[str, tuple[str, str, str]]:
    spec = importlib.util.spec_from_file_location("make_corpus", SET / "make_corpus.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_corpus", mod)
    spec.loader.exec_module(mod)
    return dict(mod.LANGS)


FORMS = ("message", "body", "subject+body")


def as_form(raw: bytes, form: str) -> bytes:
    """The message as sent (``message``), or only its text as some evaluation sets hold mail.

    ``body``: ``training.text_only`` (the first text part, plain before HTML, decoded, as UTF-8 with
    no header at all); this is how issue 14's Turkish set was given ("body text only"), and the form
    the bundled model's text-only new-site points are measured on. ``subject+body``: the same with a
    Subject line in front, as Enron-Spam and Ling-Spam hold their mail. A gateway always sees
    headers; these forms show what the model makes of the text alone.
    """
    if form == "message":
        return raw
    text = text_only(raw)
    if form == "subject+body":
        text = f"Subject: {parse_message(raw).subject}\n\n".encode() + text
    return text


def score_all(holder: ModelHolder, form: str = "message") -> list[dict[str, Any]]:
    """One record per message: box, lang, file, p, action, top reasons."""
    policy = Policy()  # the built-in default: "balanced" thresholds
    out = []
    for path in sorted(SET.glob("*/*/*.eml")):
        box, lang = path.parent.parent.name, path.parent.name
        v = build_verdict(Request(message=as_form(path.read_bytes(), form)), holder, policy, MAX_BYTES)
        out.append(
            {
                "box": box,
                "lang": lang,
                "file": str(path.relative_to(SET)),
                "p": round(v.spam_probability, 6),
                "action": v.action.name,
                "threshold": v.threshold,
                "unfamiliar": v.unfamiliar,
                "reasons": [[r.name, round(r.contribution, 3)] for r in v.reasons[:5]],
            }
        )
    return out


def summarise(records: list[dict[str, Any]], langs: dict[str, tuple[str, str, str]]) -> list[dict[str, Any]]:
    rows = []
    for lang in [*[x for x in langs if any(r["lang"] == x for r in records)], "all"]:
        rs = [r for r in records if lang in ("all", r["lang"])]
        ham = [r for r in rs if r["box"] == "ham"]
        spam = [r for r in rs if r["box"] == "spam"]
        worse = [r for r in ham if Action[r["action"]] >= Action.REROUTE]
        rows.append(
            {
                "lang": lang,
                "script": langs[lang][1] if lang in langs else "",
                "ham": len(ham),
                "ham_delivered": sum(r["action"] == "DELIVER" for r in ham),
                "ham_tagged": sum(r["action"] == "TAG" for r in ham),
                "ham_rerouted_or_worse": len(worse),
                "ham_mean_p": sum(r["p"] for r in ham) / len(ham) if ham else None,
                "ham_unfamiliar": sum(r["unfamiliar"] for r in ham),
                "spam": len(spam),
                "spam_caught": sum(r["action"] != "DELIVER" for r in spam),
                "spam_mean_p": sum(r["p"] for r in spam) / len(spam) if spam else None,
            }
        )
    return rows


def render(rows: list[dict[str, Any]], records: list[dict[str, Any]], thresholds: str) -> str:
    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    lines = [
        thresholds,
        "",
        "| language | script | ham | delivered | tagged | rerouted+ | ham mean p | ham flagged unfamiliar "
        "| spam | caught | spam mean p |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['lang']} | {r['script']} | {r['ham']} | {r['ham_delivered']} | {r['ham_tagged']} | "
            f"{r['ham_rerouted_or_worse']} | {f(r['ham_mean_p'])} | {r['ham_unfamiliar']} | {r['spam']} | "
            f"{r['spam_caught'] if r['spam'] else '-'} | {f(r['spam_mean_p'])} |"
        )
    lines += ["", "Ham not delivered:", ""]
    for r in records:
        if r["box"] == "ham" and r["action"] != "DELIVER":
            why = ", ".join(f"{n}={c:+.2f}" for n, c in r["reasons"][:3])
            lines.append(f"- {r['file']}: p={r['p']:.4f} {r['action']} ({why})")
    lines += ["", "Spam not caught:", ""]
    for r in records:
        if r["box"] == "spam" and r["action"] == "DELIVER":
            lines.append(f"- {r['file']}: p={r['p']:.4f}")
    return "\n".join(lines)


def shared_ham_flags(scorer: Any, data: Path) -> dict[str, tuple[int, int]]:
    """(ham, flagged unfamiliar) for S1's and S2's test halves and up to 3,000 ham of other corpora."""
    from bench.common import peer_split
    from spamgate.training.corpora import read_corpus

    sets: dict[str, list[bytes]] = {}
    for split in ("S1", "S2"):
        sets[f"{split} test"] = [m.raw for m in peer_split(split, data).test if m.label == 0]
    for corpus in ("lingspam", "csdmc2010", "enron_spam"):
        if (data / corpus).is_dir():
            sets[corpus] = [m.raw for m in read_corpus(data / corpus, "dir") if m.label == 0][:3000]
    return {k: (len(v), sum(bool(scorer.score(r, top_k=0).unfamiliar) for r in v)) for k, v in sets.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=bundled_model_path())
    ap.add_argument(
        "--form", choices=FORMS, default="message", help="whole messages, or their text only (as_form)"
    )
    ap.add_argument("--out", type=Path, help="default bench/results/multilingual[_FORM].json")
    ap.add_argument("--data", type=Path, help="unpacked shared corpora: also count the flag on their ham")
    args = ap.parse_args(argv)
    langs = _lang_info()
    holder = ModelHolder()
    scorer = holder.load(args.model)
    records = score_all(holder, args.form)
    if args.out is None:
        suffix = "" if args.form == "message" else "_" + args.form.replace("+", "_")
        args.out = REPO / "bench" / "results" / f"multilingual{suffix}.json"
    resolved = Policy().settings.resolve(scorer.artifact.policy_points)
    thresholds = "default policy (balanced): " + "; ".join(
        f"{a.name} at p >= {p:.4g}" for a, p, _ in resolved
    )
    rows = summarise(records, langs)
    print(f"model {scorer.version}; form: {args.form}")
    print(render(rows, records, thresholds))
    shared = shared_ham_flags(scorer, args.data) if args.data else {}
    for name, (n, flagged) in shared.items():
        print(f"shared ham {name}: {flagged} of {n} flagged unfamiliar ({100 * flagged / max(n, 1):.2f}%)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "model": scorer.version,
                "policy": "builtin balanced",
                "form": args.form,
                "thresholds": {a.name: p for a, p, _ in resolved},
                "summary": rows,
                "shared_ham_unfamiliar": {k: {"ham": n, "flagged": f} for k, (n, f) in shared.items()},
                "messages": records,
            },
            indent=1,
            ensure_ascii=False,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
