"""Shared pieces of the benchmarks: split loading, one train/test run, peer figures."""

from __future__ import annotations

import gc
import hashlib
import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from spamgate.model.features import FeatureConfig, FeatureExtractor
from spamgate.model.labelled import LabelledMessage
from spamgate.model.manifest import points_from_dicts
from spamgate.training import metrics
from spamgate.training.corpora import read_corpus
from spamgate.training.featurize import Featurized, featurize
from spamgate.training.fit import FitResult, TrainConfig, fit
from spamgate.training.splits import random_split

REPO = Path(__file__).resolve().parents[1]
PEERS = REPO.parent / "shared" / "peers"


@dataclass
class Split:
    """A named train/test pair of labelled messages."""

    name: str
    description: str
    train: list[LabelledMessage]
    test: list[LabelledMessage]


def peer_split(name: str, data: Path, peers: Path = PEERS) -> Split:
    """One of the peers' splits (``splits/NAME_{train,test}.tsv``), paths relative to ``data``."""
    tr = list(read_corpus(peers / "splits" / f"{name}_train.tsv", "labels", root=data))
    te = list(read_corpus(peers / "splits" / f"{name}_test.tsv", "labels", root=data))
    desc = {"S1": "spamassassin, seeded random 50/50", "S2": "trec07p_dev, time-ordered 12,500/12,500"}
    return Split(name, desc.get(name, name), tr, te)


def random_corpus_split(corpus: Path, seed: int = 0) -> Split:
    """Seeded 50/50 split of a whole corpus, near-duplicates (same Message-ID) on one side."""
    msgs = list(read_corpus(corpus, "dir"))
    fx = FeatureExtractor()
    keys = [fx.parse(m.raw[:65536]).message_id for m in msgs]
    tr, te = random_split(len(msgs), 0.5, seed=seed, group_keys=keys)
    return Split(
        corpus.name,
        f"{corpus.name}, seeded random 50/50 (seed {seed})",
        [msgs[i] for i in tr],
        [msgs[i] for i in te],
    )


def run(
    split: Split, fcfg: FeatureConfig, tcfg: TrainConfig, n_jobs: int = 2
) -> tuple[dict[str, Any], FitResult, np.ndarray, np.ndarray]:
    """Train on split.train (in corpus/time order), score split.test; all the figures."""
    t0 = time.perf_counter()
    train = featurize(split.train, fcfg, n_jobs=n_jobs, progress=False)
    feat_s = time.perf_counter() - t0
    result = fit(train.X, train.y, tcfg)
    train_total = time.perf_counter() - t0
    test: Featurized = featurize(split.test, fcfg, n_jobs=n_jobs, progress=False)
    probs = result.model.calibration.probability(result.model.margin(test.X))
    summary = metrics.summary(test.y, probs, points_from_dicts(result.operating_points))
    summary.update(
        {
            "split": split.name,
            "description": split.description,
            "n_train": len(split.train),
            "featurize_seconds": round(feat_s, 2),
            "fit_seconds": round(result.train_seconds, 2),
            "train_seconds_total": round(train_total, 2),
            "operating_points_validation": result.operating_points,
        }
    )
    return summary, result, test.y, probs


def fastest(fn: Callable[[int, int], object], n: int, repeat: int, chunk: int = 250) -> float:
    """Seconds for ``fn`` over items ``[0, n)``: each chunk's fastest of ``repeat`` runs, summed.

    This VM's speed swings by up to 2x for seconds to minutes at a time (a
    fixed pure-Python loop has taken 0.09-0.18 s on it within one day), so a minimum over
    whole passes still mixes in slow spells. Rounds go over all chunks in
    turn, so a chunk's ``repeat`` runs are spread over the whole measurement,
    and each chunk keeps its fastest run, as ``timeit`` advises.
    """
    starts = list(range(0, n, chunk))
    best = [float("inf")] * len(starts)
    for _ in range(repeat):
        for k, lo in enumerate(starts):
            t = time.perf_counter()
            fn(lo, min(n, lo + chunk))
            best[k] = min(best[k], time.perf_counter() - t)
    return sum(best)


def reference_loop_seconds(repeat: int = 5) -> float:
    """Fastest time of a fixed pure-Python loop: how fast this machine is running right now.

    This VM's speed drifts by up to 2x over minutes (host contention), so
    every figure here is printed next to this one; compare runs by it.
    """
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        total = 0
        for i in range(3_000_000):
            total += i
        best = min(best, time.perf_counter() - t)
    return best


def scoring_rate(
    messages: list[LabelledMessage], fcfg: FeatureConfig, coef: np.ndarray, n: int = 3000, repeat: int = 3
) -> float:
    """Messages/second of features + model on one core (single process, batches of 250).

    Timed as ``bench/speed.py`` times it: each batch's fastest of ``repeat`` runs.
    """
    fx = FeatureExtractor(fcfg)
    raws = [m.raw for m in messages[:n]]
    gc.collect()
    seconds = fastest(lambda a, b: fx.transform(raws[a:b]) @ coef, len(raws), repeat)
    return len(raws) / seconds


def peer_results(peers: Path = PEERS) -> list[dict[str, str]]:
    """Rows of the peers' ``results.md`` accuracy table (the one with a ``peer`` column).

    The file holds other tables too (a speed table was added on 2026-11-30);
    each table's header is the row above its ``|---|`` line, and only rows of
    tables with a ``split`` and a ``peer`` column are returned.
    """
    path = peers / "results.md"
    if not path.is_file():
        return []
    rows: list[dict[str, str]] = []
    header: list[str] = []
    last_split = ""
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("|") or set(line) <= {"|", "-", " "}:
            if not line.startswith("|"):
                header = []  # a table ends at the first line that is not a row
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if nxt.startswith("|") and set(nxt) <= {"|", "-", " ", ":"}:
            header = cells
            continue
        if "peer" not in header or "split" not in header:
            continue
        row = dict(zip(header, cells, strict=False))
        m = re.match(r"(S\d+)", row.get("split", ""))
        last_split = m.group(1) if m else last_split
        row["split_id"] = last_split
        rows.append(row)
    return rows


def run_facts(command: str) -> dict[str, str]:
    """What every results file records first: the command, the day and the machine."""
    return {
        "command": command,
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {platform.python_version()}",
    }


def corpus_listing_key(folder: Path) -> str:
    """Names and sizes of a corpus folder's ham/ and spam/ files: a cache key that changes with the corpus."""
    h = hashlib.sha256()
    for sub in ("ham", "spam"):
        d = folder / sub
        if d.is_dir():
            for f in sorted(d.iterdir()):
                h.update(f"{sub}/{f.name}:{f.stat().st_size}\n".encode())
    return h.hexdigest()


def update_section(path: Path, begin: str, end: str, section: str) -> None:
    """Replace the text between ``begin`` and ``end`` markers in ``path`` (append if absent)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section.rstrip("\n") + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
