"""Train/test splits: seeded random, and time-ordered (the honest one).

Spam drifts: a random split lets the model see next month's campaigns while
training, and flatters it. A time split trains on the older part only.
Messages sharing a Message-ID (near-duplicates) are kept on one side.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _groups(keys: Sequence[str | None]) -> np.ndarray:
    """Group id per message: equal non-empty keys share a group."""
    ids: dict[str, int] = {}
    out = np.empty(len(keys), dtype=np.int64)
    for i, k in enumerate(keys):
        if k:
            out[i] = ids.setdefault(k, len(ids))
        else:
            out[i] = -1 - i
    return out


def random_split(
    n: int, test_fraction: float = 0.5, seed: int = 0, group_keys: Sequence[str | None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of ``range(n)``; a group never straddles the split."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    groups = _groups(group_keys) if group_keys is not None else np.arange(n)
    uniq = np.unique(groups)
    rng = np.random.default_rng(seed)
    test_groups = set(rng.permutation(uniq)[: round(len(uniq) * test_fraction)].tolist())
    is_test = np.array([g in test_groups for g in groups.tolist()], dtype=bool)
    idx = np.arange(n)
    return idx[~is_test], idx[is_test]


def time_split(
    order: Sequence[float | None],
    test_fraction: float = 0.5,
    group_keys: Sequence[str | None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Oldest part trains, newest part tests. Messages without a time go last.

    A near-duplicate whose group already appeared in the training part is
    moved to training, so the test part holds no copy of a training message.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    keys = np.array([np.inf if o is None else float(o) for o in order])
    ranked = np.argsort(keys, kind="stable")
    n_train = len(ranked) - round(len(ranked) * test_fraction)
    train, test = ranked[:n_train], ranked[n_train:]
    if group_keys is not None:
        groups = _groups(group_keys)
        seen = set(groups[train].tolist())
        move = np.array([groups[i] in seen for i in test], dtype=bool)
        train = np.concatenate([train, test[move]])
        test = test[~move]
    return train, test
