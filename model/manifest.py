"""The training → serving contract, typed: a model's manifest and its operating points.

Training writes ``manifest.json`` as JSON; everything that serves or judges a model reads
it through ``Manifest``, validated once when the artifact is loaded (and before one is
written), so a bad value is refused with the key that holds it instead of turning into a
``KeyError`` in ``GetModelInfo`` or a policy that silently skipped the point (issue 18:
ten modules read the manifest by string key; ``threshold_for_fpr`` ignored a point
without ``target_fpr``, and an invalid ``site_reports`` was quietly read as 0, which
switched a model to its new-site thresholds).

The manifest's other keys (training figures, per-site breakdowns, the gate's decision)
are descriptive: kept as written in ``Manifest.raw`` and shown, never decided on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spamgate.model.errors import DataError

# A false-positive rate f is measured, not extrapolated, with at least 10 / f ham behind it (ten
# false positives' worth): the rule of training.new_site and training.site_layer.
MIN_HAM_PER_FPR = 10


class ManifestError(DataError, ValueError):
    """A manifest value the serving side would decide on is missing or invalid (names the key)."""


def _fraction(raw: Mapping[str, Any], key: str, where: str) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ManifestError(f"{where}.{key}: expected a number in [0, 1], got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ManifestError(f"{where}.{key}: {value!r} is outside [0, 1]")
    return float(value)


@dataclass(frozen=True)
class OperatingPoint:
    """A probability threshold and what it measured: FPR ``fpr`` and catch rate ``catch`` at it.

    ``target_fpr`` names the point (``name`` is ``fpr_<target>``); ``extrapolated``: fewer than
    10 / target_fpr ham stood behind it, so the FPR is not measured, only bounded. ``site_ham``:
    for a model retrained at a site, how many of the site's reported ham the point was held on
    (``training.site_layer.held_at_site``); None where no site mail was involved.
    """

    name: str
    target_fpr: float
    threshold: float
    fpr: float
    catch: float
    extrapolated: bool = False
    site_ham: int | None = None
    # Set by Artifact.policy_points: the threshold is the new-site floor, not measured here.
    floored: bool = False

    @property
    def measured_at_site(self) -> bool:
        """Enough of the site's own ham stand behind the point to measure its FPR (10 / target)."""
        return self.site_ham is not None and self.site_ham >= MIN_HAM_PER_FPR / self.target_fpr

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "target_fpr": self.target_fpr,
            "threshold": self.threshold,
            "fpr": self.fpr,
            "catch": self.catch,
            "extrapolated": self.extrapolated,
        }
        if self.site_ham is not None:
            out["site_reports_ham"] = self.site_ham
        return out

    @classmethod
    def from_dict(cls, raw: object, where: str) -> OperatingPoint:
        if not isinstance(raw, Mapping):
            raise ManifestError(f"{where}: an operating point is an object, got {type(raw).__name__}")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise ManifestError(f"{where}.name: expected a non-empty string, got {name!r}")
        extrapolated = raw.get("extrapolated", False)
        if not isinstance(extrapolated, bool):
            raise ManifestError(f"{where}.extrapolated: expected true or false, got {extrapolated!r}")
        site_ham = raw.get("site_reports_ham")
        if site_ham is not None and (
            isinstance(site_ham, bool) or not isinstance(site_ham, int) or site_ham < 0
        ):
            raise ManifestError(f"{where}.site_reports_ham: expected a count >= 0, got {site_ham!r}")
        return cls(
            name=name,
            target_fpr=_fraction(raw, "target_fpr", where),
            threshold=_fraction(raw, "threshold", where),
            fpr=_fraction(raw, "fpr", where),
            catch=_fraction(raw, "catch", where),
            extrapolated=extrapolated,
            site_ham=site_ham,
        )


def operating_points(raw: object, where: str) -> tuple[OperatingPoint, ...]:
    """A list of points, one per target FPR (two points for one target would make the policy ambiguous)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ManifestError(f"{where}: expected a list of operating points, got {type(raw).__name__}")
    points = tuple(OperatingPoint.from_dict(p, f"{where}[{i}]") for i, p in enumerate(raw))
    targets = [p.target_fpr for p in points]
    if len(set(targets)) != len(targets):
        raise ManifestError(f"{where}: two points for one target FPR: {sorted(targets)}")
    return points


def points_from_dicts(
    points: Sequence[Mapping[str, Any]], where: str = "operating points"
) -> list[OperatingPoint]:
    """Typed points from training's dicts (``training.metrics.operating_points``, a fit's result)."""
    return list(operating_points(list(points), where))


@dataclass(frozen=True)
class Manifest:
    """What serving decides on, validated; ``raw`` is the whole manifest as written (signed, shown)."""

    version: str
    created: str
    feature_version: str
    operating_points: tuple[OperatingPoint, ...]
    new_site_operating_points: tuple[OperatingPoint, ...]
    new_site_floor_points: tuple[OperatingPoint, ...]
    # The same left-out fits scored on each site's mail as text alone (training.text_only): what a
    # policy's FPR targets resolve against for input with no header block (Artifact.points_for).
    new_site_text_only_points: tuple[OperatingPoint, ...]
    site_reports: int
    training_messages: int
    corpora: tuple[str, ...]  # "name (ham/spam)"
    train_config: Mapping[str, Any]
    # The recipe ``spamgate retrain`` fits at a site when this model is the one it starts from
    # (``site_recipe`` in the manifest: ``features``, ``train_config``); None: the model's own. A
    # bundled recipe chosen for sites it never saw can cost ranking within a site (BENCHMARKS.md, "A
    # day-0 recipe"), so the bundled model names the recipe a site's own retrain should use.
    site_recipe_features: Mapping[str, Any] | None
    site_recipe_train_config: Mapping[str, Any] | None
    validation_one_minus_roca_pct: float
    validation_roc_auc: float
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Manifest:
        version = raw.get("version")
        if not isinstance(version, str) or not version:
            raise ManifestError(f"version: expected a non-empty string, got {version!r}")
        site_reports = raw.get("site_reports", 0)
        if isinstance(site_reports, bool) or not isinstance(site_reports, int) or site_reports < 0:
            raise ManifestError(f"site_reports: expected a count >= 0, got {site_reports!r}")
        training = _section(raw, "training")
        messages = training.get("messages", 0)
        if isinstance(messages, bool) or not isinstance(messages, int) or messages < 0:
            raise ManifestError(f"training.messages: expected a count >= 0, got {messages!r}")
        train_config = training.get("train_config", {})
        if not isinstance(train_config, Mapping):
            raise ManifestError(f"training.train_config: expected an object, got {train_config!r}")
        validation = _section(raw, "validation")
        site_features: Mapping[str, Any] | None = None
        site_train: Mapping[str, Any] | None = None
        if "site_recipe" in raw:
            recipe = _section(raw, "site_recipe")
            site_features, site_train = recipe.get("features"), recipe.get("train_config")
            if not isinstance(site_features, Mapping) or not isinstance(site_train, Mapping):
                raise ManifestError("site_recipe: expected objects features and train_config")
        return cls(
            version=version,
            created=str(raw.get("created", "")),
            feature_version=str(raw.get("feature_version", "")),
            operating_points=operating_points(raw.get("operating_points"), "operating_points"),
            new_site_operating_points=operating_points(
                raw.get("new_site_operating_points"), "new_site_operating_points"
            ),
            new_site_floor_points=operating_points(
                raw.get("new_site_floor_points"), "new_site_floor_points"
            ),
            new_site_text_only_points=operating_points(
                raw.get("new_site_text_only_operating_points"), "new_site_text_only_operating_points"
            ),
            site_reports=site_reports,
            training_messages=messages,
            corpora=_corpora(training.get("corpora", [])),
            train_config=dict(train_config),
            site_recipe_features=None if site_features is None else dict(site_features),
            site_recipe_train_config=None if site_train is None else dict(site_train),
            validation_one_minus_roca_pct=_number(validation, "one_minus_roca_pct", "validation"),
            validation_roc_auc=_number(validation, "roc_auc", "validation"),
            raw=raw,
        )


def _section(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise ManifestError(f"{key}: expected an object, got {type(value).__name__}")
    return value


def _number(section: Mapping[str, Any], key: str, where: str) -> float:
    value = section.get(key, 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ManifestError(f"{where}.{key}: expected a number, got {value!r}")
    return float(value)


def _corpora(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise ManifestError(f"training.corpora: expected a list, got {type(raw).__name__}")
    out = []
    for i, c in enumerate(raw):
        if not isinstance(c, Mapping) or not isinstance(c.get("name"), str):
            raise ManifestError(f"training.corpora[{i}]: expected an object with a name, got {c!r}")
        out.append(f"{c['name']} ({c.get('ham', '?')}/{c.get('spam', '?')})")
    return tuple(out)
