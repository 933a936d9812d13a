"""The active model in memory, swappable while requests are in flight.

A request takes one reference to the current ``Scorer`` and uses it to the
end, so a swap never mixes two models in one verdict; assigning the reference
is atomic in CPython.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from spamgate.model.artifact import load_artifact
from spamgate.model.errors import ErrorKind, ServiceError
from spamgate.model.scoring import Scorer
from spamgate.model.signing import check_signed


class NoModelError(ServiceError, RuntimeError):
    """No model is loaded yet."""

    kind = ErrorKind.UNAVAILABLE


class ModelHolder:
    """Holds the active scorer; ``load`` verifies a new one beside the old, then switches."""

    def __init__(
        self,
        limit_overrides: dict[str, int] | None = None,
        verify: Callable[[Path], str | None] | None = None,
    ) -> None:
        self._scorer: Scorer | None = None
        self._lock = threading.Lock()
        self._limit_overrides = dict(limit_overrides or {})
        # e.g. an Ed25519 signature check; raises to refuse a version, and returns the sha256 of the
        # manifest it verified (``check_signed``: the one loaded, not one swapped in meanwhile)
        self.verify = verify
        self.listeners: list[Callable[[Scorer], None]] = []

    def current(self) -> Scorer:
        scorer = self._scorer
        if scorer is None:
            raise NoModelError("no model loaded")
        return scorer

    @property
    def loaded(self) -> bool:
        return self._scorer is not None

    def load(self, path: Path) -> Scorer:
        """Load, verify and activate a model; the old one stays active if this raises."""
        artifact = load_artifact(path)
        if self.verify is not None:
            check_signed(artifact, self.verify(Path(path)))
        if self._limit_overrides:
            # An admin may scan less (or more) than training did; only parsing
            # changes, the row layout stays the model's. Unset limits keep the
            # model's own values, so the default is no skew at all.
            limits = replace(artifact.features.limits, **self._limit_overrides)
            artifact = replace(artifact, features=replace(artifact.features, limits=limits))
        scorer = Scorer(artifact)
        with self._lock:
            self._scorer = scorer
        for listener in self.listeners:
            listener(scorer)
        return scorer
