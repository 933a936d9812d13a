"""Score one message: calibrated probability and the reasons behind it.

The reasons are the largest terms of the linear model's sum, weight × value,
named by the tokens or heuristic that filled the column. Hashing can put two
tokens in one column; then both names are shown, joined by ``|``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from spamgate.model.artifact import Artifact
from spamgate.model.evidence import DEFAULT_RULE, OFF, EvidenceRule
from spamgate.model.familiarity import FamiliarityCheck
from spamgate.model.features import FeatureExtractor, RowParts
from spamgate.model.heuristics import HEURISTIC_NAMES


@dataclass(frozen=True)
class Reason:
    """One term of the verdict: positive pushes towards spam."""

    name: str
    kind: str  # "token" or "heuristic"
    contribution: float


@dataclass(frozen=True)
class Score:
    """The model's answer for one message."""

    probability: float
    margin: float
    reasons: tuple[Reason, ...]
    cut: tuple[str, ...]
    model_version: str
    # Out of distribution (``model.familiarity``): most of the message's tokens were never in
    # the training mail; the probability then rests on little and the policy caps the action.
    unfamiliar: str = ""  # "" or UNFAMILIAR_LANGUAGE / OUT_OF_DISTRIBUTION
    unseen_share: float = 0.0
    # Thin evidence (``model.evidence``): fewer content columns seen in training than the rule
    # asks for; the probability was then squeezed into the rule's middle band.
    content_evidence: int = -1
    thin: bool = False
    # Whether the input had a header block (``MessageView.has_header_block``): text with none is
    # judged by the model's text-only points (``Artifact.points_for``).
    has_header_block: bool = True


class Scorer:
    """Binds an artifact to the feature extractor it was trained with."""

    def __init__(self, artifact: Artifact, evidence: EvidenceRule | None = None) -> None:
        self.artifact = artifact
        # The thin-evidence rule is for a model at a site it was not trained on (model.evidence:
        # on S2, a model trained at the site, it cost 2.4 points of catch at FPR 0.1%).
        self.evidence = evidence or (DEFAULT_RULE if artifact.at_new_site else OFF)
        self.extractor = FeatureExtractor(artifact.features)
        self._n_hash = artifact.features.n_hash
        self.familiarity = FamiliarityCheck(artifact.model.coef, self._n_hash)

    @property
    def version(self) -> str:
        return self.artifact.version

    def probabilities(self, raws: Iterable[bytes]) -> np.ndarray:
        """Calibrated spam probabilities for many messages (batch path, no reasons)."""
        rows, tokens, cols = self.extractor.transform_with_tokens(raws)
        p = self.artifact.model.calibration.probability(self.artifact.model.margin(rows))
        coef, rule = self.artifact.model.coef, self.evidence
        evidence = [rule.content_evidence(t, c, coef) for t, c in zip(tokens, cols, strict=True)]
        return np.array([rule.squeeze(float(pi), e) for pi, e in zip(p, evidence, strict=True)])

    def score(self, raw: bytes, top_k: int = 8) -> Score:
        """Probability and the ``top_k`` strongest reasons for one message."""
        view = self.extractor.parse(raw)
        row, parts = self.extractor.transform_one(view)
        model = self.artifact.model
        margin = float(model.margin(row)[0])
        evidence = self.evidence.content_evidence(parts.tokens, parts.token_cols, model.coef)
        prob = self.evidence.squeeze(float(model.calibration.probability(np.array([margin]))[0]), evidence)
        reasons = self._reasons(row, parts, top_k) if top_k > 0 else ()
        fam = self.familiarity.check(parts.token_cols, view.all_text, view.has_header_block)
        return Score(
            prob,
            margin,
            reasons,
            tuple(view.cut),
            self.version,
            fam.reason,
            fam.unseen_share,
            evidence,
            self.evidence.is_thin(evidence),
            view.has_header_block,
        )

    def _reasons(self, row: Any, parts: RowParts, top_k: int) -> tuple[Reason, ...]:
        coef = self.artifact.model.coef
        cols = row.indices
        contrib = row.data * coef[cols]
        order = np.argsort(-np.abs(contrib))[:top_k]
        chosen = [(int(cols[i]), float(contrib[i])) for i in order if contrib[i] != 0.0]
        names = self.extractor.column_names(parts, {c for c, _ in chosen if c < self._n_hash})
        out = []
        for col, value in chosen:
            if col >= self._n_hash:
                out.append(Reason(HEURISTIC_NAMES[col - self._n_hash], "heuristic", value))
            else:
                out.append(Reason("|".join(sorted(names.get(col, ["?"]))[:3]), "token", value))
        return tuple(out)
