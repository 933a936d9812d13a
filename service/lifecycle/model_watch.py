"""Follow a model registry's ACTIVE pointer and hot-swap the served model.

A background thread polls the pointer (cheap: one small file read); when it
names another version, that version is loaded and verified beside the
current one, then swapped in. A version that fails to load is logged and
ignored; the current model keeps serving.
"""

from __future__ import annotations

import logging
import threading

from spamgate.service.lifecycle.model_registry import ModelRegistry
from spamgate.service.scoring.model_holder import ModelHolder

log = logging.getLogger("spamgate.models")


class RegistryWatcher:
    """Polls ``registry`` every ``interval`` seconds; ``check()`` can also be called directly (SIGHUP)."""

    def __init__(self, registry: ModelRegistry, holder: ModelHolder, interval: float = 0.5) -> None:
        self.registry = registry
        self.holder = holder
        self.interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._failed: str | None = None
        self._thread = threading.Thread(target=self._run, name="model-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def activate(self, version: str) -> None:
        """Verify and activate ``version`` in the registry and in memory, as one step.

        Under the watcher's lock, so a concurrent poll never sees the pointer
        and the served model disagree (and swap back).
        """
        with self._lock:
            self.registry.activate(version)
            self.holder.load(self.registry.path(version))
            self._failed = None

    def check(self) -> bool:
        """Swap to the pointer's version if it changed; True when a swap happened."""
        with self._lock:
            try:
                version = self.registry.active()
            except OSError:
                return False
            current = self.holder.current().version if self.holder.loaded else None
            if not version or version == current or version == self._failed:
                return False
            try:
                self.holder.load(self.registry.path(version))
            except Exception as exc:
                self._failed = version
                log.error(
                    "model version refused, keeping current",
                    extra={"version": version, "current": current, "error": str(exc)},
                )
                return False
            self._failed = None
            log.info("model swapped", extra={"version": version, "previous": current})
            return True
