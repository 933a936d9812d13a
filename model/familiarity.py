"""How much of a message the model has seen before: the out-of-distribution flag.

A linear model trained on mail that is nearly all English has no evidence at
all about a Thai newsletter: its words hash to columns that no training
message filled, the model's weight there is 0, and what is left to decide is
header layout, byte n-grams of the few ASCII bytes and heuristics tuned on
English. That is how hand-written ordinary mail in other languages came to be
TAGged (`bench/multilingual.py`), and a probability from so little is not the
calibrated probability the thresholds assume. So the scorer says when a
message is mostly made of tokens the model never saw, and the policy caps
what it may do to such mail (``unfamiliar_max_action``, default TAG).

The measure: of the message's distinct token columns, the share whose weight
is exactly 0. Liblinear's L2-regularised fit gives every column some training
message filled a non-zero weight, so a zero weight means no training message
had it, with one catch: the token and byte n-gram hash space is shared and
crowded (49% of the bundled model's 2^20 hashed columns are non-zero), so an
unseen token still lands on a non-zero column about half the time. Dividing
the zero share by the model's share of zero columns corrects for that and
gives an estimate of the share of the message's tokens never seen in
training, comparable across models. Byte n-grams are left out: their 4-byte
windows over the header block are mostly ASCII header syntax and recur
everywhere (their zero share was 0.13-0.26 on the multilingual set against
0.01-0.04 on English ham, a weaker split than tokens' 0.19-0.47 vs 0.03-0.07).

Evidence for the threshold (estimated unseen share ≥ 0.45), token zero share
with the bundled model 20261129-093717-7e51f681 (scratch run over the
multilingual set and 1,500 ham of each shared set; `bench/multilingual.py`
reports the flag rates): hand-written ham, mean per language, Thai 0.465,
Hindi 0.416, Ukrainian 0.413, Russian 0.405, Hebrew 0.391, Arabic 0.374,
Greek 0.363, Chinese 0.348, Korean 0.323, Japanese 0.285; Polish 0.320,
Turkish 0.333, Spanish 0.211, German 0.189, French 0.189. Shared ham: S1
0.027 (p90 0.061), S2 0.044 (p90 0.085), Ling-Spam (not in the bundled
model's training) 0.069 (p90 0.120, 0.13% above 0.3). With 51.4% zero
columns, 0.45 estimated unseen is a zero share of 0.23. Rechecked with the sg-features-8 bundled
model 20261130-143838-7e51f681 (``python bench/multilingual.py --data DATA``): flagged on 51 of 53
non-Latin hand-written ham, and on 0%, 0.08%, 0.87%, 0% and 0% of the ham of S1's and S2's test
halves, Ling-Spam, csdmc2010 and Enron-Spam; with the sg-features-9 model 20261130-153539-7e51f681:
51 of 53, and 0%, 0.11%, 0.87%, 0%, 0%.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

# Estimated share of a message's tokens never seen in training above which the message is
# flagged (see the module docstring for the evidence).
DEFAULT_MAX_UNSEEN = 0.45
# Fewer distinct tokens than this say too little to call a message unfamiliar either way.
MIN_TOKENS = 8
# HEADERLESS: text with no header block at all (``MessageView.has_header_block``) is flagged too, so
# the policy caps what it may do to it (``unfamiliar_max_action``, default TAG). A gateway never hands
# over such input (the milter and SMTP give even header-less mail its blank line); an evaluation set
# or an API caller holding only a message's text does, and then half of what the model was trained
# on is missing: every training message has header fields, and at a new site they carry most of a
# ham's evidence against the intercept, which alone maps to p = 0.96 (``model.evidence``). Evidence,
# the bundled model 20261130-230845-7e51f681 (``python bench/multilingual.py --form body``): the
# hand-written multilingual ham as body text only were 59 delivered, 19 tagged and 2 rejected of 80
# (with their headers: 79 / 1 / 0). Both rejected (es/03, tr/04) and 14 of the tagged are HTML mail
# whose text is its HTML source; read as text/html instead of text/plain (a scratch run) they scored
# the same, as HTML-only mail with no header is spam in the training mail. English text fares well
# without headers (300 ham per shared corpus given as body text only: at most 2.7% at or above the
# new-site TAG point, Ling-Spam; 0-0.3% for the others; scratch run), so the flag says what the
# input lacks, not that its probability is wrong; the cap keeps a probability resting on half the
# evidence from rerouting or rejecting.


@dataclass(frozen=True)
class Familiarity:
    """The out-of-distribution verdict for one message."""

    unseen_share: float  # estimated share of the message's tokens no training message had
    tokens: int  # distinct token columns the estimate is over
    unfamiliar: bool
    reason: str  # "UNFAMILIAR_LANGUAGE" (mostly non-Latin letters), "OUT_OF_DISTRIBUTION", or ""


class FamiliarityCheck:
    """Bound to one model's weights; ``check`` is a few array operations per message."""

    def __init__(self, coef: np.ndarray, n_hash: int, max_unseen: float = DEFAULT_MAX_UNSEEN) -> None:
        if not 0.0 < max_unseen <= 1.0:
            raise ValueError(f"max_unseen must be in (0, 1], got {max_unseen}")
        self._zero = np.asarray(coef[:n_hash]) == 0
        # The share of hashed columns no training message filled: the chance an unseen token
        # still looks seen is 1 minus this.
        self.zero_column_share = float(self._zero.mean()) if n_hash else 1.0
        self.max_unseen = max_unseen

    def check(self, token_cols: np.ndarray, text: str, has_header_block: bool = True) -> Familiarity:
        """The verdict for one message's token columns and text.

        ``has_header_block`` False (``MessageView.has_header_block``: text handed over with no
        header block at all) flags the message whatever its tokens (the HEADERLESS note above).
        """
        cols = np.unique(token_cols)
        unseen = 0.0
        if cols.size >= MIN_TOKENS and self.zero_column_share > 0.0:
            unseen = min(1.0, float(self._zero[cols].mean()) / self.zero_column_share)
        if has_header_block and (cols.size < MIN_TOKENS or unseen < self.max_unseen):
            return Familiarity(unseen, int(cols.size), False, "")
        reason = "UNFAMILIAR_LANGUAGE" if non_latin_letter_share(text) >= 0.5 else "OUT_OF_DISTRIBUTION"
        return Familiarity(unseen, int(cols.size), True, reason)


def non_latin_letter_share(text: str, sample: int = 4000) -> float:
    """Share of the letters in (the first ``sample`` characters of) ``text`` outside Latin script."""
    letters = non_latin = 0
    for ch in text[:sample]:
        if not ch.isalpha():
            continue
        letters += 1
        if ord(ch) < 0x250:  # Basic Latin through Latin Extended-B
            continue
        if "LATIN" not in unicodedata.name(ch, ""):
            non_latin += 1
    return non_latin / letters if letters else 0.0
