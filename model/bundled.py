"""Where the default model that ships inside the package lives."""

from __future__ import annotations

from pathlib import Path

BUNDLED_DIR = Path(__file__).resolve().parent / "default"


def bundled_model_path() -> Path:
    """Artifact folder of the bundled default model."""
    return BUNDLED_DIR
