"""The default policy: spam probability → action, by thresholds.

Kept apart from the server (it only needs a probability and the model's
operating points) so the full admin policy can replace it without touching
the gRPC layer.

A threshold is either a probability (``"0.97"``), the name of one of the
active model's operating points (``"aggressive"`` = FPR 1%, ``"balanced"`` =
0.1%, ``"lenient"`` = 0.01%), or ``"off"``. Names follow the model: when a
new model is activated, its own thresholds apply.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Action(enum.IntEnum):
    """What the gateway should do; the value orders severity."""

    DELIVER = 1
    TAG = 2
    REROUTE = 3
    REJECT = 4
    DELETE = 5


class PolicyError(ValueError):
    """One or more problems in a policy, each naming its key."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class Decision:
    """The action and the threshold that chose it (empty for DELIVER)."""

    action: Action
    threshold: str


@dataclass(frozen=True)
class ThresholdPolicy:
    """Thresholds per action plus what the actions need."""

    name: str
    thresholds: tuple[tuple[Action, str], ...]
    subject_tag: str = "[SPAM] "
    reroute_to: str = "quarantine@localhost"
    reject_text: str = "5.7.1 Message rejected as spam"
    info_headers: bool = True
    max_reasons: int = 5

    @classmethod
    def from_section(cls, section: Any, name: str = "default") -> ThresholdPolicy:
        """Build from a ``PolicySection``-like object; every bad threshold is reported."""
        errors: list[str] = []
        thresholds = []
        for action in (Action.TAG, Action.REROUTE, Action.REJECT, Action.DELETE):
            key = action.name.lower()
            spec = str(getattr(section, key)).strip()
            problem = _check_spec(spec)
            if problem:
                errors.append(f"{key} = {spec!r}: {problem}")
            thresholds.append((action, spec))
        if section.max_reasons < 0:
            errors.append(f"max_reasons must be >= 0, got {section.max_reasons}")
        if "@" not in section.reroute_to:
            errors.append(f"reroute_to must be a mail address, got {section.reroute_to!r}")
        if errors:
            raise PolicyError(errors)
        return cls(
            name=name,
            thresholds=tuple(thresholds),
            subject_tag=section.subject_tag,
            reroute_to=section.reroute_to,
            reject_text=section.reject_text,
            info_headers=section.info_headers,
            max_reasons=section.max_reasons,
        )

    def resolve(self, operating_points: list[dict[str, Any]]) -> list[tuple[Action, float, str]]:
        """Thresholds as probabilities for a model, most severe action first."""
        points = {p["name"]: p for p in operating_points}
        out = []
        for action, spec in self.thresholds:
            if spec == "off":
                continue
            if spec in points:
                p = points[spec]
                out.append((action, float(p["threshold"]), f"{spec}, target FPR {p['target_fpr'] * 100:g}%"))
            else:
                try:
                    out.append((action, float(spec), "probability"))
                except ValueError:
                    continue  # an operating point this model lacks: the action is off for it
        return sorted(out, key=lambda t: -t[0])

    def decide(self, probability: float, operating_points: list[dict[str, Any]]) -> Decision:
        """The most severe action whose threshold the probability reaches."""
        for action, threshold, label in self.resolve(operating_points):
            if probability >= threshold:
                return Decision(action, f"{action.name.lower()}: p >= {threshold:.6g} ({label})")
        return Decision(Action.DELIVER, "")


def _check_spec(spec: str) -> str:
    if spec == "off" or spec in ("aggressive", "balanced", "lenient"):
        return ""
    try:
        value = float(spec)
    except ValueError:
        return "must be 'off', an operating point (aggressive, balanced, lenient) or a probability"
    if not 0.0 < value <= 1.0:
        return "a probability threshold must be in (0, 1]"
    return ""
