"""Features that only say which language or script a message is in: learned weight and day-0 cost.

    python bench/language_families.py --data DATA [--variants base,all,...] [--jobs 2]

Issue 14: no feature that only says which language or script a message is in
may be learned as spam evidence from training mail whose ham is nearly all
English. Each suspect family gets a variant, implemented here by subclassing
``model.features.FeatureExtractor`` (``FamilyExtractor``), so nothing in
``model/`` changes during the study:

- ``no_cs``: no ``cs:`` charset tokens (``cs:windows-1251``, ``cs:gb2312``, …).
- ``no_cte``: no ``cte:`` transfer-encoding tokens (``cte:8bit`` / ``cte:7bit`` say little more
  than "the text has non-ASCII bytes" / "it has none").
- ``caps_script`` (normalised): SUBJECT_ALL_CAPS and BODY_CAPS_RATIO count letters and capitals
  of every script (uncased scripts, CJK, Arabic, Hebrew, Thai, Devanagari, are letters without
  capitals) instead of ASCII letters only, so "ABC ORDER 项目…" is not all capitals.
- ``caps_majority`` (normalised the other way): both rules fire only when ASCII letters are the
  majority of the letters.
- ``caps_off``: both rules removed.
- ``mime_off``: MIXED_CHARSETS and BASE64_TEXT_BODY removed.
- ``grams_ascii``: byte n-grams holding a byte >= 0x80 removed.
- ``grams_fold`` (normalised): every byte >= 0x80 folded to 0x80 before taking n-grams.
- ``all``: no_cs + no_cte + caps_script + mime_off + grams_fold; ``all_off``: no_cs + no_cte +
  caps_off + mime_off + grams_ascii; ``cte_grams`` (+ ``_caps``): no_cte + grams_ascii (+ caps_script),
  the families that lowered the multilingual ham rates on their own.

Per variant:

1. The bundled recipe (``training.default_model``: the four corpora, deduplicated and in time
   order as ``training.train`` does, ``TrainConfig(cv_shuffle=True)``) is fitted, and reported:
   the family's learned weights (top by |w|; heuristic weights are raw coefficients, their
   column value is ``heuristic_scale`` = 0.1 when fired), and on the hand-written multilingual
   set (tests/multilingual): ham mean p, ham share at or above the variant's own TAG point
   (out-of-fold FPR 1% on its training mail: "own TAG") and above the committed bundled model's
   fixed new-site thresholds (TAG 0.9786, REROUTE 0.9931), spam caught at the fixed TAG, and the
   share of ham flagged unfamiliar (``model.familiarity`` with the variant's weights). The
   baseline also reports each family's mean contribution to the margin of multilingual ham.
2. S1 and S2 (the peers' splits, ``bench.common.peer_split``) trained and tested as
   ``bench/ablation.py`` does (``TrainConfig()``, train half in its file order): 1-ROCA% and
   catch at FPR 0.1%, to compare against the noise DEVELOPERS.md states.

Rows are featurised once per corpus (one parse, every variant) and cached under
DATA/.spamgate-cache/language_families (never in the repository); S1/S2 rows are the corpus
rows of the same messages (matched by sha256). Each variant's figures are cached too, so a run
can be resumed. Prints the table, writes bench/results/language_families.json and the
language-families section of BENCHMARKS.md.

The committed results were run on sg-features-7; sg-features-8 made no_cte, grams_ascii and
caps_script the product, so on later code those variants equal the baseline (their families are
gone from ``FeatureExtractor`` already) and the others are measured against the new baseline.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shlex
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PEERS, REPO, corpus_listing_key, peer_split, update_section
from spamgate.model.familiarity import FamiliarityCheck
from spamgate.model.features import FEATURE_VERSION, FeatureConfig, FeatureExtractor, RowParts
from spamgate.model.hashing import byte_ngrams
from spamgate.model.heuristics import HEURISTIC_NAMES, heuristic_values
from spamgate.model.labelled import LabelledMessage
from spamgate.model.manifest import points_from_dicts
from spamgate.model.message import MessageView
from spamgate.model.tokens import TokenCounts, message_tokens
from spamgate.training import metrics
from spamgate.training.corpora import read_corpus
from spamgate.training.default_model import CORPORA, FEATURES, TRAINING
from spamgate.training.featurize import Featurized
from spamgate.training.fit import TrainConfig, fit
from spamgate.training.train import deduplicate, in_time_order, join

BEGIN, END = "<!-- language-families:begin -->", "<!-- language-families:end -->"
MULTI_SET = REPO / "tests" / "multilingual"
# The committed bundled model's new-site thresholds (20261130-131944-7e51f681), fixed for every variant.
FIXED_TAG, FIXED_REROUTE = 0.9786, 0.9931

FAMILIES = ("cs", "cte", "caps_script", "caps_majority", "caps_off", "mime_off", "grams_ascii", "grams_fold")
VARIANTS: dict[str, tuple[tuple[str, ...], str]] = {
    "base": ((), f"the bundled recipe's features ({FEATURE_VERSION})"),
    "all": (
        ("cs", "cte", "caps_script", "mime_off", "grams_fold"),
        "no_cs+no_cte+caps_script+mime_off+grams_fold",
    ),
    "no_cs": (("cs",), "no cs: charset tokens"),
    "no_cte": (("cte",), "no cte: transfer-encoding tokens"),
    "caps_script": (("caps_script",), "caps rules count letters/capitals of every script"),
    "caps_majority": (("caps_majority",), "caps rules only when ASCII letters are the majority"),
    "caps_off": (("caps_off",), "SUBJECT_ALL_CAPS, BODY_CAPS_RATIO removed"),
    "mime_off": (("mime_off",), "MIXED_CHARSETS, BASE64_TEXT_BODY removed"),
    "grams_ascii": (("grams_ascii",), "byte n-grams with a byte >= 0x80 removed"),
    "grams_fold": (("grams_fold",), "bytes >= 0x80 folded to 0x80 before n-grams"),
    "all_off": (
        ("cs", "cte", "caps_off", "mime_off", "grams_ascii"),
        "no_cs+no_cte+caps_off+mime_off+grams_ascii",
    ),
    # the families whose variant lowered the multilingual ham rates with S1/S2 within the noise
    "cte_grams": (("cte", "grams_ascii"), "no_cte+grams_ascii"),
    "cte_grams_caps": (("cte", "grams_ascii", "caps_script"), "no_cte+grams_ascii+caps_script"),
}
CAPS = ("SUBJECT_ALL_CAPS", "BODY_CAPS_RATIO")
MIME = ("MIXED_CHARSETS", "BASE64_TEXT_BODY")
_H = {name: i for i, name in enumerate(HEURISTIC_NAMES)}
_FOLD = bytes(range(128)) + b"\x80" * 128
_ASCII_LETTERS = bytes(range(65, 91)) + bytes(range(97, 123))
_ASCII_UPPER = bytes(range(65, 91))
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


def letter_counts(text: str) -> tuple[int, int, int]:
    """(ASCII letters, letters of every script, capitals of every script) in ``text``."""
    b = text.encode("ascii", "ignore")
    ascii_letters = len(b) - len(b.translate(None, _ASCII_LETTERS))
    ascii_caps = len(b) - len(b.translate(None, _ASCII_UPPER))
    rest = "".join(_NON_ASCII.findall(text)) if len(b) < len(text) else ""
    return (
        ascii_letters,
        ascii_letters + sum(map(str.isalpha, rest)),
        ascii_caps + sum(map(str.isupper, rest)),
    )


def caps_values(view: MessageView, mode: str) -> tuple[float, float]:
    """SUBJECT_ALL_CAPS and BODY_CAPS_RATIO under ``mode`` (caps_script / caps_majority)."""
    out = []
    for text, min_letters in ((view.subject, 8), (view.all_text[:5000], 50)):
        ascii_l, letters, capitals = letter_counts(text)
        if mode == "caps_majority":
            # the product's ASCII-only count, gated on ASCII letters being most of the letters
            b = text.encode("ascii", "ignore")
            ascii_caps = len(b) - len(b.translate(None, _ASCII_UPPER))
            letters, capitals = (ascii_l, ascii_caps) if 2 * ascii_l > letters else (0, 0)
        if min_letters == 8:
            out.append(float(letters >= 8 and capitals == letters))
        else:
            out.append(float(letters >= 50 and capitals / letters > 0.3))
    return out[0], out[1]


class FamilyExtractor(FeatureExtractor):
    """``FeatureExtractor`` with the given families removed or normalised (see the module docstring).

    ``memo`` (optional, per batch of views) shares the unchanged parts between the extractors of
    several variants over the same parsed views: a speed-up only.
    """

    def __init__(
        self, config: FeatureConfig, families: tuple[str, ...], memo: dict[Any, Any] | None = None
    ) -> None:
        super().__init__(config)
        unknown = set(families) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown families {sorted(unknown)}")
        self.families = frozenset(families)
        self.memo = memo

    def _memo(self, key: Any, make: Any) -> Any:
        if self.memo is None:
            return make()
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]

    def tokens(self, view: MessageView) -> TokenCounts:
        base = self._memo(("tok", id(view)), lambda: message_tokens(view, self.config.tokens))
        drop = tuple(p for f, p in (("cs", "cs:"), ("cte", "cte:")) if f in self.families)
        if not drop:
            return base
        out: TokenCounts = defaultdict(int)
        for t, c in base.items():
            if not t.startswith(drop):
                out[t] = c
        return out

    def _window(self, view: MessageView) -> bytes:
        c = self.config
        head = view.raw_prefix.replace(b"\r\n", b"\n")
        end = head.find(b"\n\n")
        header, body = (head, b"") if end < 0 else (head[: end + 1], head[end + 2 :])
        return header[: c.byte_ngram_header_bytes] + b"\n" + body[: c.byte_ngram_body_bytes]

    def grams(self, view: MessageView) -> np.ndarray:
        c = self.config
        if not c.byte_ngram or c.byte_ngram_lowercase:
            raise NotImplementedError("the bench assumes the recipe's byte n-grams (on, case kept)")
        if "grams_fold" in self.families:
            return self._memo(
                ("gfold", id(view)), lambda: byte_ngrams(self._window(view).translate(_FOLD), c.byte_ngram)
            )
        g = self._memo(("grams", id(view)), lambda: super(FamilyExtractor, self).grams(view))
        if "grams_ascii" in self.families:
            mask = np.uint64(int("80" * c.byte_ngram, 16))
            g = g[(g & mask) == 0]
        return g

    def heuristics(self, view: MessageView) -> list[float]:
        vals = list(self._memo(("heur", id(view)), lambda: heuristic_values(view)))
        for mode in ("caps_script", "caps_majority"):
            if mode in self.families:
                s, b = self._memo((mode, id(view)), lambda m=mode: caps_values(view, m))
                vals[_H["SUBJECT_ALL_CAPS"]], vals[_H["BODY_CAPS_RATIO"]] = s, b
        if "caps_off" in self.families:
            for name in CAPS:
                vals[_H[name]] = 0.0
        if "mime_off" in self.families:
            for name in MIME:
                vals[_H[name]] = 0.0
        return vals

    def transform_views(self, views: Any) -> sp.csr_matrix:
        values = [self._token_values(self.tokens(v)) for v in views]
        grams = [self.grams(v) for v in views]
        heur = [self.heuristics(v) for v in views]
        return self._assemble(values, grams, heur, canonical=False)[0]

    def transform_one(self, view: MessageView) -> tuple[sp.csr_matrix, RowParts]:
        values = self._token_values(self.tokens(view))
        grams = self.grams(view)
        row, tcols, gcols = self._assemble([values], [grams], [self.heuristics(view)], canonical=True)
        return row, RowParts(list(values), grams, tcols, gcols)


# --- featurisation, one parse for every variant, cached ----------------------------------------


def _chunk_rows(names: list[str], chunk: list[LabelledMessage]) -> dict[str, Any]:
    fx = FeatureExtractor(FEATURES)
    views = [fx.parse(m.raw) for m in chunk]
    memo: dict[Any, Any] = {}
    rows = {n: FamilyExtractor(FEATURES, VARIANTS[n][0], memo).transform_views(views) for n in names}
    seen = {t for v in views for t in message_tokens(v, FEATURES.tokens) if t.startswith(("cs:", "cte:"))}
    return {
        "rows": rows,
        "y": [m.label for m in chunk],
        "order": [
            m.order if m.order is not None else (v.date.timestamp() if v.date else None)
            for m, v in zip(chunk, views, strict=True)
        ],
        "digests": [hashlib.sha256(m.raw).hexdigest() for m in chunk],
        "tokens": sorted(seen),
    }


def _chunks(it: Iterator[LabelledMessage], size: int) -> Iterator[list[LabelledMessage]]:
    chunk: list[LabelledMessage] = []
    for m in it:
        chunk.append(m)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk




def _key(variant: str) -> str:
    what = [FEATURE_VERSION, FEATURES.to_dict(), VARIANTS[variant][0]]
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:10]


def _path(cache: Path, corpus: str, variant: str, listing: str) -> Path:
    return cache / f"{corpus}-{variant}-{_key(variant)}-{listing}.npz"


def featurise_corpus(data: Path, corpus: str, names: list[str], cache: Path, jobs: int) -> None:
    """Rows of every variant in ``names`` missing from the cache, from one parse of the corpus."""
    listing = corpus_listing_key(data / corpus)
    todo = [n for n in names if not _path(cache, corpus, n, listing).is_file()]
    if not todo:
        return
    t0 = time.perf_counter()
    parts = Parallel(n_jobs=jobs, return_as="generator")(
        delayed(_chunk_rows)(todo, c) for c in _chunks(read_corpus(data / corpus, "dir"), 400)
    )
    acc: dict[str, list[sp.csr_matrix]] = {n: [] for n in todo}
    y: list[int] = []
    order: list[float | None] = []
    digests: list[str] = []
    tokens: set[str] = set()
    for p in parts:
        for n in todo:
            acc[n].append(p["rows"][n])
        y += p["y"]
        order += p["order"]
        digests += p["digests"]
        tokens.update(p["tokens"])
    cache.mkdir(parents=True, exist_ok=True)
    for n in todo:
        X = sp.vstack(acc.pop(n), format="csr")
        tmp = cache / f"{corpus}-{n}.tmp.npz"
        np.savez(
            tmp,
            X_data=X.data,
            X_indices=X.indices,
            X_indptr=X.indptr,
            X_shape=np.array(X.shape, dtype=np.int64),
            y=np.array(y, dtype=np.int8),
            order=np.array([np.nan if o is None else o for o in order], dtype=np.float64),
            digests=np.array(digests),
            tokens=np.array(sorted(tokens)),
        )
        tmp.replace(_path(cache, corpus, n, listing))
    print(
        f"{corpus}: {len(y)} messages x {len(todo)} variants in {time.perf_counter() - t0:.0f} s", flush=True
    )


def load_rows(data: Path, corpus: str, variant: str, cache: Path) -> tuple[Featurized, list[str]]:
    with np.load(_path(cache, corpus, variant, corpus_listing_key(data / corpus)), allow_pickle=False) as z:
        X = sp.csr_matrix((z["X_data"], z["X_indices"], z["X_indptr"]), shape=tuple(z["X_shape"]))
        order = [None if np.isnan(o) else float(o) for o in z["order"].tolist()]
        f = Featurized(
            X=X,
            y=z["y"],
            sources=[corpus] * len(order),
            order=order,
            message_ids=[None] * len(order),
            digests=z["digests"].tolist(),
        )
        return f, z["tokens"].tolist()


# --- the multilingual set ----------------------------------------------------------------------


def multilingual(variant: str) -> list[dict[str, Any]]:
    """Per message of tests/multilingual: box, lang, its row and parts under ``variant``."""
    fx = FamilyExtractor(FEATURES, VARIANTS[variant][0])
    out = []
    for path in sorted(MULTI_SET.glob("*/*/*.eml")):
        view = fx.parse(path.read_bytes())
        row, parts = fx.transform_one(view)
        out.append(
            {
                "box": path.parent.parent.name,
                "lang": path.parent.name,
                "row": row,
                "parts": parts,
                "view": view,
            }
        )
    return out


def family_contributions(coef: np.ndarray, msgs: list[dict[str, Any]]) -> dict[str, float]:
    """Mean margin each family adds to the multilingual ham (baseline model, baseline rows)."""
    n_hash = FEATURES.n_hash
    sums: dict[str, float] = defaultdict(float)
    ham = [m for m in msgs if m["box"] == "ham"]
    mask = np.uint64(int("80" * FEATURES.byte_ngram, 16))
    for m in ham:
        parts: RowParts = m["parts"]
        nt, ng = len(parts.tokens), len(parts.grams)
        tv = FEATURES.token_weight / np.sqrt(max(nt, 1))
        gv = FEATURES.byte_ngram_weight / np.sqrt(max(ng, 1))
        for tok, col in zip(parts.tokens, parts.token_cols.tolist(), strict=True):
            for prefix in ("cs:", "cte:"):
                if tok.startswith(prefix):
                    sums[prefix[:-1]] += tv * float(coef[col])
        high = (parts.grams & mask) != 0
        sums["grams_non_ascii"] += gv * float(coef[parts.gram_cols[high]].sum())
        sums["grams_all"] += gv * float(coef[parts.gram_cols].sum())
        row = m["row"].toarray().ravel()
        for name in (*CAPS, *MIME):
            sums[name] += float(row[n_hash + _H[name]] * coef[n_hash + _H[name]])
        sums["margin"] += float((m["row"] @ coef)[0])
    return {k: v / len(ham) for k, v in sums.items()}


# --- one variant ---------------------------------------------------------------------------------


def _join(parts: list[Featurized]) -> Featurized:
    return join(parts)


def family_weights(
    variant: str, coef: np.ndarray, tokens: list[str], msgs: list[dict[str, Any]]
) -> dict[str, Any]:
    from spamgate.model.hashing import token_columns

    n_hash = FEATURES.n_hash
    out: dict[str, Any] = {}
    for prefix in ("cs:", "cte:"):
        named = [t for t in tokens if t.startswith(prefix)]
        ws = {t: float(coef[c]) for t, c in zip(named, token_columns(named, n_hash), strict=True)}
        top = sorted(ws.items(), key=lambda kv: -abs(kv[1]))[:10]
        out[prefix[:-1]] = {t: round(w, 4) for t, w in top}
    out["heuristics"] = {n: round(float(coef[n_hash + _H[n]]), 4) for n in (*CAPS, *MIME)}
    # non-ASCII byte n-grams of the multilingual set: the strongest columns
    mask = np.uint64(int("80" * FEATURES.byte_ngram, 16))
    seen: dict[int, float] = {}
    names: dict[int, str] = {}
    for m in msgs:
        parts: RowParts = m["parts"]
        high = (parts.grams & mask) != 0
        for g, c in zip(parts.grams[high].tolist(), parts.gram_cols[high].tolist(), strict=True):
            seen[c] = float(coef[c])
            names[c] = repr(int(g).to_bytes(FEATURES.byte_ngram, "big"))
    ws_arr = np.array(list(seen.values())) if seen else np.zeros(0)
    top_g = sorted(seen.items(), key=lambda kv: -abs(kv[1]))[:8]
    out["grams_non_ascii_multilingual"] = {
        "distinct": len(seen),
        "nonzero": int((ws_arr != 0).sum()),
        "mean_w": round(float(ws_arr.mean()), 5) if seen else 0.0,
        "top": {names[c]: round(w, 4) for c, w in top_g},
    }
    return out


def run_variant(data: Path, variant: str, cache: Path, jobs: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    sites: dict[str, Featurized] = {}
    tokens: set[str] = set()
    for corpus in CORPORA:
        sites[corpus], toks = load_rows(data, corpus, variant, cache)
        tokens.update(toks)
    # (1) the bundled recipe on the four corpora, deduplicated, in time order (training.train)
    full = in_time_order(deduplicate(_join(list(sites.values()))))
    res = fit(full.X, full.y, TRAINING, n_jobs=jobs)
    del full
    model = res.model
    own_tag = next(p["threshold"] for p in res.operating_points if p["target_fpr"] == 0.01)
    msgs = multilingual(variant)
    X = sp.vstack([m["row"] for m in msgs], format="csr")
    p = model.calibration.probability(model.margin(X))
    check = FamiliarityCheck(model.coef, FEATURES.n_hash)
    unf = np.array([check.check(m["parts"].token_cols, m["view"].all_text).unfamiliar for m in msgs])
    box = np.array([m["box"] for m in msgs])
    ham, spam = box == "ham", box == "spam"
    result: dict[str, Any] = {
        "variant": variant,
        "what": VARIANTS[variant][1],
        "families": list(VARIANTS[variant][0]),
        "full_fit_seconds": round(res.train_seconds, 1),
        "own_tag_threshold": own_tag,
        "multilingual": {
            "ham": int(ham.sum()),
            "spam": int(spam.sum()),
            "ham_mean_p": float(p[ham].mean()),
            "ham_median_p": float(np.median(p[ham])),
            "ham_ge_own_tag": float((p[ham] >= own_tag).mean()),
            "ham_ge_fixed_tag": float((p[ham] >= FIXED_TAG).mean()),
            "ham_ge_fixed_reroute": float((p[ham] >= FIXED_REROUTE).mean()),
            "spam_ge_fixed_tag": float((p[spam] >= FIXED_TAG).mean()),
            "spam_ge_own_tag": float((p[spam] >= own_tag).mean()),
            "spam_mean_p": float(p[spam].mean()),
            "ham_unfamiliar": float(unf[ham].mean()),
            "per_lang_ham_mean_p": {
                lang: round(float(p[ham & (np.array([m["lang"] for m in msgs]) == lang)].mean()), 4)
                for lang in sorted({m["lang"] for m in msgs if m["box"] == "ham"})
            },
        },
        "weights": family_weights(variant, model.coef, sorted(tokens), msgs),
    }
    if variant == "base":
        result["multilingual_ham_margin_by_family"] = {
            k: round(v, 4) for k, v in family_contributions(model.coef, msgs).items()
        }
    del model, res
    # (2) S1 and S2 with the peers' splits, rows of the same messages
    for split_name, corpus in (("S1", "spamassassin"), ("S2", "trec07p_dev")):
        site = sites[corpus]
        index: dict[str, int] = {}
        for i, d in enumerate(site.digests):
            index.setdefault(d, i)
        split = peer_split(split_name, data)
        tr = [index[hashlib.sha256(m.raw).hexdigest()] for m in split.train]
        te = [index[hashlib.sha256(m.raw).hexdigest()] for m in split.test]
        y_tr = np.array([m.label for m in split.train])
        y_te = np.array([m.label for m in split.test])
        r = fit(site.X[tr], y_tr, TrainConfig(), n_jobs=jobs)
        probs = r.model.calibration.probability(r.model.margin(site.X[te]))
        s = metrics.summary(y_te, probs, points_from_dicts(r.operating_points))
        result[split_name] = {
            "one_minus_roca_pct": s["one_minus_roca_pct"],
            "catch_at_fpr_0.1pct": s["catch_at_fpr"]["0.001"],
            "n_test_ham": int((y_te == 0).sum()),
        }
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


# --- output --------------------------------------------------------------------------------------


def row_line(r: dict[str, Any], base: dict[str, Any] | None) -> str:
    m = r["multilingual"]

    def d(split: str) -> str:
        v = r[split]["one_minus_roca_pct"]
        delta = "" if base is None or r is base else f" ({v - base[split]['one_minus_roca_pct']:+.4f})"
        return f"{v:.4f}{delta} | {100 * r[split]['catch_at_fpr_0.1pct']:.2f}%"

    return (
        f"| {r['variant']} | {r['what']} | {m['ham_mean_p']:.3f} | {m['ham_median_p']:.3f} | "
        f"{100 * m['ham_ge_own_tag']:.1f}% (p ≥ {r['own_tag_threshold']:.3f}) | "
        f"{100 * m['ham_ge_fixed_tag']:.1f}% / {100 * m['ham_ge_fixed_reroute']:.1f}% | "
        f"{100 * m['spam_ge_fixed_tag']:.0f}% / {100 * m['spam_ge_own_tag']:.0f}% | "
        f"{100 * m['ham_unfamiliar']:.0f}% | {d('S1')} | {d('S2')} |"
    )


def render(results: list[dict[str, Any]], command: str, conclusion: str) -> str:
    base = next((r for r in results if r["variant"] == "base"), None)
    n_ham = results[0]["multilingual"]["ham"] if results else 0
    n_spam = results[0]["multilingual"]["spam"] if results else 0
    lines = [
        BEGIN,
        "## Language- and script-only features (issue 14)",
        "",
        f"Command: `{command}` (bench/results/language_families.json). Each variant is the bundled recipe "
        "with one family of features that only says which language or script a message is in removed or "
        "normalised (`bench/language_families.py` docstring), fitted on the four corpora as "
        f"`training.default_model` fits them and scored on the multilingual set's {n_ham} ham and {n_spam} "
        "spam (raw model probability, before the policy's unfamiliar cap); S1/S2 as `bench/ablation.py` "
        "runs them (Δ against base in brackets). Own TAG = the variant's own out-of-fold FPR-1% point on "
        f"its training mail; fixed = the committed bundled model's new-site TAG {FIXED_TAG} / REROUTE "
        f"{FIXED_REROUTE}. Noise (DEVELOPERS.md): one S1 test ham moves 1-ROCA% by up to ~0.004; S2's "
        "1-ROCA% is mostly two mislabelled messages, read its catch at 0.1% FPR.",
        "",
        "| variant | change | ham mean p | ham median p | ham ≥ own TAG | ham ≥ fixed TAG / REROUTE "
        "| spam ≥ fixed / own TAG | ham unfamiliar | S1 1-ROCA% | S1 catch@0.1% | S2 1-ROCA% "
        "| S2 catch@0.1% |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(row_line(r, base) for r in results),
        "",
    ]
    if base is not None:
        w = base["weights"]
        g = w["grams_non_ascii_multilingual"]
        lines += [
            "Learned weights in the baseline fit (token weights: std over non-zero hashed columns ~0.034; "
            "heuristic weights are raw coefficients, the column is 0.1 when fired):",
            "",
            "- `cs:` " + ", ".join(f"{t} {v:+.3f}" for t, v in w["cs"].items()),
            "- `cte:` " + ", ".join(f"{t} {v:+.3f}" for t, v in w["cte"].items()),
            "- heuristics " + ", ".join(f"{t} {v:+.3f}" for t, v in w["heuristics"].items()),
            f"- non-ASCII byte 4-grams of the multilingual set: {g['distinct']} distinct, {g['nonzero']} on "
            f"non-zero columns, mean weight {g['mean_w']:+.4f}; strongest "
            + ", ".join(f"{t} {v:+.3f}" for t, v in g["top"].items()),
            "- mean contribution to the margin of the multilingual ham (baseline): "
            + ", ".join(
                f"{k} {v:+.4f}" for k, v in base.get("multilingual_ham_margin_by_family", {}).items()
            ),
            "",
        ]
        for r in results:
            if r["variant"] != "base":
                lines.append(
                    f"- {r['variant']}: heuristics "
                    + ", ".join(f"{t} {v:+.3f}" for t, v in r["weights"]["heuristics"].items())
                    + "; non-ASCII grams mean w "
                    + f"{r['weights']['grams_non_ascii_multilingual']['mean_w']:+.4f}"
                )
        lines.append("")
    if conclusion:
        lines += [conclusion, ""]
    lines.append(END)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--peers", type=Path, default=PEERS)
    ap.add_argument("--conclusion", default="", help="text placed under the table in BENCHMARKS.md")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "language_families.json")
    ap.add_argument("--markdown", type=Path, default=REPO / "BENCHMARKS.md")
    ap.add_argument("--no-markdown", action="store_true")
    args = ap.parse_args(argv)
    command = shlex.join(
        ["python", "bench/language_families.py", "--data", str(args.data), "--variants", args.variants]
    )
    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}")
    cache = args.data / ".spamgate-cache" / "language_families"
    for corpus in CORPORA:
        featurise_corpus(args.data, corpus, names, cache, args.jobs)
    results = []
    for name in names:
        rpath = cache / f"result-{name}-{_key(name)}.json"
        if rpath.is_file():
            r = json.loads(rpath.read_text())
        else:
            r = run_variant(args.data, name, cache, args.jobs)
            rpath.write_text(json.dumps(r, indent=1, ensure_ascii=False))
        results.append(r)
        base = next((x for x in results if x["variant"] == "base"), None)
        print(row_line(r, base), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "command": command,
                "fixed_thresholds": {"TAG": FIXED_TAG, "REROUTE": FIXED_REROUTE},
                "results": results,
            },
            indent=1,
            ensure_ascii=False,
        )
        + "\n"
    )
    if not args.no_markdown:
        update_section(args.markdown, BEGIN, END, render(results, command, args.conclusion))
    return 0


if __name__ == "__main__":
    sys.exit(main())
