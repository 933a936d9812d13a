"""Corpus → sparse rows, in chunks, in parallel, with the serving code path.

Workers call ``FeatureExtractor.transform_views`` — the same function the
service calls — so training sees exactly the rows serving will compute.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed
from tqdm import tqdm

from spamgate.model.features import FeatureConfig, FeatureExtractor
from spamgate.model.labelled import LabelledMessage
from spamgate.training.corpora import CorpusError


def content_sha256(labels: Iterable[int], digests: Iterable[str]) -> str:
    """The one content hash of labelled mail (issue 18: retrain computed another and the same 40
    messages got two names): sha256 over "label:message-sha256\\n" lines sorted by message hash,
    so it names the data whatever the order it was read in."""
    h = hashlib.sha256()
    for lab, d in sorted(zip(labels, digests, strict=True), key=lambda t: t[1]):
        h.update(f"{int(lab)}:{d}\n".encode())
    return h.hexdigest()


@dataclass
class Featurized:
    """Rows, labels and per-message metadata of a featurised corpus."""

    X: sp.csr_matrix
    y: np.ndarray
    sources: list[str]
    order: list[float | None]
    message_ids: list[str | None]
    digests: list[str] = field(default_factory=list)

    @property
    def content_sha256(self) -> str:
        """Order-independent hash of (label, message sha256) pairs: names the training data."""
        return content_sha256(self.y.tolist(), self.digests)

    def subset(self, idx: np.ndarray) -> Featurized:
        ids = idx.tolist()
        return Featurized(
            X=self.X[idx],
            y=self.y[idx],
            sources=[self.sources[i] for i in ids],
            order=[self.order[i] for i in ids],
            message_ids=[self.message_ids[i] for i in ids],
            digests=[self.digests[i] for i in ids] if self.digests else [],
        )


def _chunks(messages: Iterable[LabelledMessage], size: int) -> Iterator[list[LabelledMessage]]:
    it = iter(messages)
    while chunk := list(islice(it, size)):
        yield chunk


_Chunk = tuple[sp.csr_matrix, list[int], list[str], list[float | None], list[str | None], list[str]]


def _featurize_chunk(config: FeatureConfig, chunk: list[LabelledMessage]) -> _Chunk:
    fx = FeatureExtractor(config)
    views = [fx.parse(m.raw) for m in chunk]
    X = fx.transform_views(views)
    order = [
        m.order if m.order is not None else (v.date.timestamp() if v.date else None)
        for m, v in zip(chunk, views, strict=True)
    ]
    mids = [v.message_id for v in views]
    digests = [hashlib.sha256(m.raw).hexdigest() for m in chunk]
    return X, [m.label for m in chunk], [m.source for m in chunk], order, mids, digests


def featurize(
    messages: Iterable[LabelledMessage],
    config: FeatureConfig,
    n_jobs: int = -1,
    chunk_size: int = 500,
    progress: bool = True,
    total: int | None = None,
) -> Featurized:
    """Featurise a message stream; memory holds only rows, never the whole corpus."""
    parts = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_featurize_chunk)(config, chunk) for chunk in _chunks(messages, chunk_size)
    )
    Xs, ys, srcs, orders, mids, digests = [], [], [], [], [], []
    bar = tqdm(total=total, unit="msg", desc="featurising", disable=not progress, leave=False)
    for X, y, s, o, m, d in parts:
        Xs.append(X)
        ys.extend(y)
        srcs.extend(s)
        orders.extend(o)
        mids.extend(m)
        digests.extend(d)
        bar.update(len(y))
    bar.close()
    if not Xs:
        raise CorpusError("the corpus holds no messages")
    return Featurized(
        X=sp.vstack(Xs, format="csr"),
        y=np.asarray(ys, dtype=np.int8),
        sources=srcs,
        order=orders,
        message_ids=mids,
        digests=digests,
    )
