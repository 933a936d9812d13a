"""One training run: corpora in, verified artifact out."""

from __future__ import annotations

import hashlib
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from spamgate.model.artifact import write_artifact
from spamgate.model.features import FeatureConfig
from spamgate.model.labelled import LabelledMessage
from spamgate.model.training_filter import TRAINING_DIGESTS, digest_keys
from spamgate.model.training_filter import to_bytes as filter_bytes
from spamgate.training.corpora import CorpusError, read_corpus
from spamgate.training.featurize import Featurized, featurize
from spamgate.training.fit import FitResult, TrainConfig, fit
from spamgate.training.text_only import text_only


@dataclass(frozen=True)
class CorpusSpec:
    """Where one training corpus is and how to read it."""

    path: str
    fmt: str = "auto"
    label: str | None = None
    root: str | None = None

    def read(self) -> Iterator[LabelledMessage]:
        return read_corpus(self.path, self.fmt, self.label, self.root)


def load_corpora(
    specs: list[CorpusSpec], config: FeatureConfig, n_jobs: int, progress: bool
) -> tuple[Featurized, list[dict[str, Any]]]:
    """Featurise every corpus; return the rows in time order and a per-corpus summary."""
    data, summary, _ = load_sites(specs, config, n_jobs, progress)
    return data, summary


def load_sites(
    specs: list[CorpusSpec], config: FeatureConfig, n_jobs: int, progress: bool
) -> tuple[Featurized, list[dict[str, Any]], dict[str, Featurized]]:
    """``load_corpora`` plus each corpus's own rows, by name (the sites of ``training.new_site``)."""
    parts: list[Featurized] = []
    summary: list[dict[str, Any]] = []
    for spec in specs:
        f = featurize(spec.read(), config, n_jobs=n_jobs, progress=progress)
        parts.append(f)
        summary.append(
            {
                "name": Path(spec.path).name,
                "format": spec.fmt,
                "messages": len(f.y),
                "ham": int((f.y == 0).sum()),
                "spam": int((f.y == 1).sum()),
                "content_sha256": f.content_sha256,
            }
        )
    sites = {str(c["name"]): p for c, p in zip(summary, parts, strict=True)}
    return in_time_order(deduplicate(join(parts))), summary, sites


def join(parts: list[Featurized]) -> Featurized:
    """Several featurised corpora as one, rows in the order given."""
    if len(parts) == 1:
        return parts[0]
    return Featurized(
        X=sp.vstack([p.X for p in parts], format="csr"),
        y=np.concatenate([p.y for p in parts]),
        sources=[s for p in parts for s in p.sources],
        order=[o for p in parts for o in p.order],
        message_ids=[m for p in parts for m in p.message_ids],
        digests=[d for p in parts for d in p.digests],
    )


def deduplicate(data: Featurized) -> Featurized:
    """Drop byte-identical copies (corpora overlap: csdmc2010 ⊃ 2,334 SpamAssassin messages)."""
    seen: set[str] = set()
    keep = []
    for i, d in enumerate(data.digests):
        if d not in seen:
            seen.add(d)
            keep.append(i)
    return data if len(keep) == len(data.y) else data.subset(np.asarray(keep))


def in_time_order(data: Featurized) -> Featurized:
    """Oldest first; messages without a time keep their place at the end."""
    keys = np.array([np.inf if o is None else o for o in data.order], dtype=np.float64)
    return data.subset(np.argsort(keys, kind="stable"))


def new_version(content_sha256: str, now: datetime | None = None, root: Path | None = None) -> str:
    """Sortable, unique version name: UTC time plus a hash of the training data.

    With ``root`` (the registry folder the version goes into), a name already there gets ``-2``,
    ``-3``, ... (sorting after it): two fits of the same data within one second had the same name, and
    the second ``spamgate retrain`` failed with "already exists" (exit 2; a flaky test showed it).
    """
    now = now or datetime.now(UTC)
    base = now.strftime("%Y%m%d-%H%M%S") + "-" + content_sha256[:8]
    name, n = base, 2
    while root is not None and (Path(root) / name).exists():
        name, n = f"{base}-{n}", n + 1
    return name


def build_manifest(
    version: str,
    result: FitResult,
    train_cfg: TrainConfig,
    corpora: list[dict[str, Any]],
    content_sha256: str,
    n_train: int,
    command: str | None = None,
    site_reports: int = 0,
) -> dict[str, Any]:
    return {
        # How many of a site's own reports the model was trained on: while 0, policies resolve FPR
        # targets against new_site_operating_points when the manifest has them (training.new_site).
        "site_reports": site_reports,
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "training": {
            "corpora": corpora,
            "messages": n_train,
            "content_sha256": content_sha256,
            "command": command if command is not None else shlex.join(["spamgate", *sys.argv[1:]]),
            "train_config": train_cfg.to_dict(),
            "train_seconds": round(result.train_seconds, 2),
        },
        "validation": result.validation,
        "operating_points": result.operating_points,
    }


def train(
    specs: list[CorpusSpec],
    out: Path,
    feature_cfg: FeatureConfig,
    train_cfg: TrainConfig,
    exact: bool = False,
    n_jobs: int = -1,
    progress: bool = True,
    command: str | None = None,
    new_site: bool = False,
    site_recipe: tuple[FeatureConfig, TrainConfig] | None = None,
) -> Path:
    """Featurise, fit and write a new artifact; returns its directory.

    ``new_site`` (two or more corpora) also runs the recipe leave one corpus
    out and records new-site operating points (``training.new_site``).
    ``site_recipe``: the features and fitting a retrain at a site should use
    instead of this model's own (``training.retrain.retrain_recipe``), recorded in the manifest.
    """
    t0 = time.perf_counter()
    data, corpora, sites = load_sites(specs, feature_cfg, n_jobs, progress)
    result = fit(data.X, data.y, train_cfg)
    digest = hashlib.sha256("".join(c["content_sha256"] for c in corpora).encode()).hexdigest()
    version = new_version(digest, root=None if exact else Path(out))
    manifest = build_manifest(version, result, train_cfg, corpora, digest, len(data.y), command)
    if site_recipe is not None:
        manifest["site_recipe"] = {
            "features": site_recipe[0].to_dict(),
            "train_config": site_recipe[1].to_dict(),
        }
    if new_site:
        if len(sites) < 2:
            raise CorpusError("new-site operating points need two or more training corpora")
        from spamgate.training.new_site import new_site_points, score_left_out_with_text, site_summary

        t1 = time.perf_counter()
        texts = {
            name: text_only_site(spec, sites[name], feature_cfg, n_jobs, progress)
            for spec, name in zip(specs, sites, strict=True)
        }
        left_out, left_out_text = score_left_out_with_text(sites, texts, train_cfg, n_jobs=n_jobs)
        manifest["new_site_operating_points"] = new_site_points(left_out)
        # Text with no header block (model.familiarity's HEADERLESS; training.text_only): the same
        # left-out fits, scored on each site's mail as text alone. The service resolves a policy's FPR
        # targets against these for such input (Artifact.points_for).
        manifest["new_site_text_only_operating_points"] = new_site_points(left_out_text)
        manifest["new_site_validation"] = {
            "method": "leave one training corpus out: the recipe fitted on the others scores it",
            "sites": site_summary(left_out),
            "text_only_sites": site_summary(left_out_text),
            "seconds": round(time.perf_counter() - t1, 2),
        }
    manifest["training"]["total_seconds"] = round(time.perf_counter() - t0, 2)
    target = Path(out) if exact else Path(out) / version
    return write_artifact(target, manifest, feature_cfg, result.model, training_filter_files(data.digests))


def text_only_site(
    spec: CorpusSpec, site: Featurized, config: FeatureConfig, n_jobs: int, progress: bool
) -> Featurized:
    """One site's messages as text alone (``training.text_only``), rows in the site's order.

    The digests stay the whole messages', so ``training.new_site`` leaves out the same messages it
    leaves out of the site's own scores (those in another site's training mail).
    """
    messages = (replace(m, raw=text_only(m.raw)) for m in spec.read())
    rows = featurize(messages, config, n_jobs=n_jobs, progress=progress)
    if len(rows.y) != len(site.y):
        raise CorpusError(f"{spec.path}: read {len(rows.y)} messages as text, {len(site.y)} before")
    rows.digests = list(site.digests)
    return rows


def training_filter_files(digests: list[str]) -> dict[str, bytes]:
    """The artifact file that records which messages a model trained on (``model.training_filter``)."""
    return {TRAINING_DIGESTS: filter_bytes(digest_keys(digests))}
