"""Site reports as training mail, and the one rule for which mail the retrain gate judges on.

``Report`` and ``is_trusted`` live in ``model.labelled``: the service's feedback store builds reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def read_trusted_reporters(path: Path) -> set[str]:
    """Reporter names, one a line (``#`` starts a comment); a clear error for a file that is not text."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the trusted-reporters list: {exc}") from exc
    return {s for line in text.splitlines() if (s := line.split("#", 1)[0].strip())}


def gate_split(
    base_order: Sequence[float | None],
    base_digests: Sequence[str],
    report_trusted: Sequence[bool],
    holdout: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Which mail trains the candidate and which mail the retrain gate judges it on.

    THE RULE (stated once, here and in the README): the gate judges on mail no
    single reporter can fill, because an attacker who can file reports must not
    be able to choose the exam (issue 16: 1,500 inverted anonymous reports were
    the newest mail, so they *were* the held-back mail, and the poisoned
    candidate was promoted). So the held-back mail is

    * the newest ``holdout`` fraction of the dated mail of the **base
      corpora**, and of their undated mail the messages whose sha256 falls in
      the first ``holdout`` of the hash range (a stable, even sample: put after
      the dated mail, the undated tail of Enron-Spam was 9,644 spam and no ham,
      and the gate had nothing to judge on), and
    * the newest ``holdout`` fraction of the reports from **trusted reporters**
      (named with ``--trusted-reporter``/``--trusted-reporters``, or stored with
      the ``admin`` role), in report order.

    Every other report, i.e. every report from an untrusted reporter, is always
    training mail: reports are how a site teaches spamgate, and until this rule
    a model never trained on a report until reports outnumbered the holdout.

    Returns (base rows to train on, base rows held back, report rows to train
    on, report rows held back): indices into the inputs, base rows oldest
    first, report rows in report order.
    """
    if not 0 < holdout < 0.5:
        raise ValueError(f"holdout must be in (0, 0.5), got {holdout}")
    if len(base_digests) != len(base_order):
        raise ValueError("one digest per base message is needed")
    dated = np.array([o is not None for o in base_order], dtype=bool)
    keys = np.array([np.inf if o is None else o for o in base_order], dtype=np.float64)
    by_time = np.argsort(keys, kind="stable")
    by_time_dated = by_time[dated[by_time]]
    n_hold = round(len(by_time_dated) * holdout)
    hold_dated = by_time_dated[len(by_time_dated) - n_hold :]
    undated = by_time[~dated[by_time]]
    hashed = np.array([int(base_digests[i][:8], 16) / 16**8 for i in undated.tolist()], dtype=np.float64)
    hold_undated = undated[hashed < holdout]
    held = np.zeros(len(base_order), dtype=bool)
    held[hold_dated] = True
    held[hold_undated] = True
    base_train, base_hold = by_time[~held[by_time]], by_time[held[by_time]]
    trusted = np.flatnonzero(np.asarray(report_trusted, dtype=bool))
    n_thold = round(len(trusted) * holdout)
    rep_hold = trusted[len(trusted) - n_thold :] if n_thold else np.zeros(0, dtype=np.int64)
    rep_train = np.setdiff1d(np.arange(len(report_trusted)), rep_hold)
    return base_train, base_hold, rep_train, rep_hold
