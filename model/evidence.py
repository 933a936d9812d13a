"""Thin evidence: a message the model knows almost nothing of gets a probability near the prior.

A linear model's margin is its intercept plus what the message's features
add. The bundled model's intercept alone maps to p = 0.96 (intercept 0.53,
Platt slope 6.4), because content-less mail in its training corpora is
overwhelmingly spam (empty bodies, one remote image). A two-word test
message or a short list reminder then takes its probability from the
intercept and from header features that belong to the training sites'
infrastructure, not to the message: on trec07p's later weeks such ham scored
0.98-0.998 where bogofilter, which knows nothing either, says 0.50 (issue 14).

So: *content evidence* is the number of distinct subject, body, URL-host and
attachment token columns whose weight is non-zero (some training message had
them). With fewer than ``min_content`` of them the probability is squeezed
linearly into ``[low, high]`` = [0.1, 0.9]: order is kept among thin
messages, and none can reach a day-0 TAG point (the bundled model's
new-site TAG point is 0.97; a site that retrains gets own-site points, which
may sit below 0.9, and then thin spam can still be tagged there).

Evidence for the choice (``python bench/thin_evidence.py --data DATA``, BENCHMARKS.md
"Thin evidence"): on the peers' splits, counting subject/body/URL/attachment columns, fewer
than 4 is 0 of S1's and S2's test ham and 205 of S2's test spam (S1: 5), nearly all trec07p
spam with an empty body or a single remote image. URL hosts and attachment names are counted
because they are what image and link-only spam is made of: counting subject and body only
made 477 S2 spam thin at K = 5 against 344. Squeezing rather than clamping keeps 1-ROCA%
(S2 0.0276 → 0.028x, see the bench) since thin messages keep their order; what it costs is
that thin spam is no longer TAGged by the day-0 policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Token prefixes that are the message's own content (model.tokens): subject, body, URL hosts,
# attachment names and types. Header tokens (sender, relays, mailer) are left out: they say
# where a message came from, and that is what does not carry over to a new site.
CONTENT_PREFIXES = ("s:", "b:", "u:", "at:", "ax:")
THIN_EVIDENCE = "THIN_EVIDENCE"


@dataclass(frozen=True)
class EvidenceRule:
    """When a message is thin, and where its probability then lands.

    min_content: a message with fewer distinct content columns of non-zero weight is thin
        (0 turns the rule off).
    low, high: the band a thin message's probability is squeezed into (p -> low + (high - low) p).
    """

    min_content: int = 4
    low: float = 0.1
    high: float = 0.9

    def __post_init__(self) -> None:
        if self.min_content < 0:
            raise ValueError(f"min_content must be >= 0, got {self.min_content}")
        if not 0.0 <= self.low < 0.5 < self.high <= 1.0:
            raise ValueError(f"need 0 <= low < 0.5 < high <= 1, got low={self.low} high={self.high}")

    def content_evidence(self, tokens: Sequence[str], token_cols: np.ndarray, coef: np.ndarray) -> int:
        """Distinct content columns of the message that some training message filled."""
        cols = {int(c) for t, c in zip(tokens, token_cols, strict=True) if t.startswith(CONTENT_PREFIXES)}
        return sum(1 for c in cols if coef[c] != 0)

    def is_thin(self, evidence: int) -> bool:
        return evidence < self.min_content

    def squeeze(self, p: float, evidence: int) -> float:
        """``p`` unchanged, or moved into the band when the evidence is thin."""
        return self.low + (self.high - self.low) * p if self.is_thin(evidence) else p


DEFAULT_RULE = EvidenceRule()
