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
new-site TAG point is 0.971).

The rule is on only for a model judged at a site it was not trained on
(``Artifact.at_new_site``: new-site operating points and no site reports,
i.e. the bundled model on day 0); ``model.scoring.Scorer`` picks it. A model
trained at the site has learned the site's own headers, and there the rule
costs more than it gives. Evidence (``python bench/thin_evidence.py --data
/work/data``, sg-features-9, the peers' splits, each trained on its own
training half, BENCHMARKS.md "Thin evidence"):

    K (fewer than K is thin)      0       2       3       4       5
    S1 thin test spam / ham       0/0     2/0     3/0     4/0     7/0
    S1 1-ROCA%                    0.0087  0.0088  0.0089  0.0089  0.0091
    S2 thin test spam / ham       0/0     16/0    74/0    218/0   345/1
    S2 1-ROCA%                    0.0277  0.0279  0.0286  0.0303  0.0281
    S2 catch at FPR 0.1%          99.38%  99.20%  98.55%  96.94%  95.76%

Content-thin mail in trec07p is nearly all spam (empty bodies, one remote
image; scratch look at S2's thin spam: 162 of 205 text/html only) and the
site's header evidence catches it, so own-site models keep their
probabilities. K = 4 is the smallest K that reaches a two-word message
(subject plus two body words: three content tokens). URL hosts and attachment
names are counted because image and link-only spam is made of them: with
subject and body only, 477 S2 spam were thin at K = 5 against 345.
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
OFF = EvidenceRule(min_content=0)
