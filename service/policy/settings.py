"""Admin policy: what happens to mail, given the model's spam probability.

The model only says how likely a message is spam; the admin decides what to
do. A policy holds, per action, a threshold (a probability, or a target
false-positive rate that the active model's measured operating points turn
into a probability, so it follows the model when the model changes), what
each action needs (subject tag, headers, quarantine address, reject text),
allow and block lists that decide without scanning, and per-recipient-domain
sections with their own thresholds.

Precedence, per recipient (first that matches decides):

1. allow list, recipient          → DELIVER, not scanned (the mailbox wants everything)
2. block list: client IP, envelope sender/domain, recipient → block_action, not scanned
3. allow list: client IP, envelope sender/domain, authenticated From domain → DELIVER, not scanned
4. the model and the thresholds of the recipient's domain section (or the global ones)

Recipients that end under different decisions form separate groups in the
verdict (a gateway can split delivery); the top-level action is the
strictest group's (DELETE > REJECT > REROUTE > TAG > DELIVER).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from spamgate.model.errors import ConfigurationErrors
from spamgate.model.manifest import OperatingPoint
from spamgate.service.policy.lists import AddressList, DomainSet


class Action(enum.IntEnum):
    """What the gateway should do; the value orders severity (and equals the proto enum number)."""

    DELIVER = 1
    TAG = 2
    REROUTE = 3
    REJECT = 4
    DELETE = 5


THRESHOLD_ACTIONS = (Action.TAG, Action.REROUTE, Action.REJECT, Action.DELETE)


class PolicyError(ConfigurationErrors):
    """Every problem found in a policy, each with file, line, key and why."""

    heading = "invalid policy"


@dataclass(frozen=True)
class Threshold:
    """``probability`` p (spam if p >= value), ``fpr`` target false-positive rate, or ``off``."""

    kind: str
    value: float = 0.0

    def describe(self) -> str:
        if self.kind == "off":
            return "off"
        if self.kind == "fpr":
            return f"at FPR {self.value * 100:g}%"
        return f"p >= {self.value:g}"


OFF = Threshold("off")

# Sensitivity presets: thresholds as target false-positive rates, resolved
# against each model's measured operating points. Figures for the bundled
# model are in the README (spamgate policy check prints them for any model).
PRESETS: dict[str, dict[Action, Threshold]] = {
    "lenient": {
        Action.TAG: Threshold("fpr", 0.001),
        Action.REROUTE: Threshold("fpr", 0.0001),
        Action.REJECT: OFF,
        Action.DELETE: OFF,
    },
    "balanced": {
        Action.TAG: Threshold("fpr", 0.01),
        Action.REROUTE: Threshold("fpr", 0.001),
        Action.REJECT: Threshold("fpr", 0.0001),
        Action.DELETE: OFF,
    },
    "aggressive": {
        Action.TAG: Threshold("fpr", 0.05),
        Action.REROUTE: Threshold("fpr", 0.01),
        Action.REJECT: Threshold("fpr", 0.001),
        Action.DELETE: OFF,
    },
}
DEFAULT_SENSITIVITY = "balanced"


@dataclass(frozen=True)
class HeaderNames:
    """Names of the headers a verdict adds; an empty name leaves that header out."""

    flag: str = "X-Spam-Flag"
    probability: str = "X-Spam-Probability"
    action: str = "X-Spam-Action"
    reasons: str = "X-Spam-Reasons"
    model: str = "X-Spam-Model"
    threshold: str = ""


@dataclass(frozen=True)
class Settings:
    """Thresholds and action details of one policy section."""

    thresholds: dict[Action, Threshold]
    subject_tag: str = "[SPAM] "
    reroute_to: str = "quarantine@localhost"
    reject_text: str = "5.7.1 Message rejected as spam"
    info_headers: bool = True
    max_reasons: int = 5
    headers: HeaderNames = field(default_factory=HeaderNames)

    def resolve(self, model_points: Sequence[OperatingPoint]) -> list[tuple[Action, float, str]]:
        """Thresholds as probabilities for one model, most severe action first."""
        out = []
        for action in sorted(THRESHOLD_ACTIONS, reverse=True):
            t = self.thresholds.get(action, OFF)
            if t.kind == "off":
                continue
            if t.kind == "probability":
                out.append((action, t.value, t.describe()))
                continue
            resolved = threshold_for_fpr(model_points, t.value)
            if resolved is not None:
                p, point = resolved
                out.append((action, p, f"{t.describe()} → p >= {p:.6g} (model point FPR {point * 100:g}%)"))
        return out

    def decide(self, probability: float, model_points: Sequence[OperatingPoint]) -> tuple[Action, str]:
        """The most severe action whose threshold the probability reaches, and which threshold."""
        for action, threshold, label in self.resolve(model_points):
            if probability >= threshold:
                return action, f"{action.name.lower()}: {label}"
        return Action.DELIVER, ""


def threshold_for_fpr(model_points: Sequence[OperatingPoint], target: float) -> tuple[float, float] | None:
    """Probability threshold for a target FPR from a model's operating points.

    Takes the point with the largest measured target FPR not above the one
    asked for (so the FPR is at most the target on the model's validation
    mail); below the model's smallest point, the smallest point is used.
    """
    pts = sorted((p.target_fpr, p.threshold) for p in model_points)
    if not pts:
        return None
    below = [p for p in pts if p[0] <= target + 1e-15]
    fpr, thr = below[-1] if below else pts[0]
    return thr, fpr


@dataclass(frozen=True)
class DomainSection:
    """A policy section for some recipient domains (and their subdomains)."""

    name: str
    recipient_domains: DomainSet
    settings: Settings


@dataclass(frozen=True)
class Policy:
    """A complete, validated admin policy."""

    name: str = "default"
    version: str = "builtin"
    source: str = ""
    settings: Settings = field(
        default_factory=lambda: Settings(thresholds=dict(PRESETS[DEFAULT_SENSITIVITY]))
    )
    domains: tuple[DomainSection, ...] = ()
    allow: AddressList = field(default_factory=AddressList)
    block: AddressList = field(default_factory=AddressList)
    block_action: Action = Action.DELETE
    # A message the model could not score within the per-message CPU budget ([limits]
    # cpu_budget_ms): TAG by default, because such mail is rare, never ordinary (ordinary mail
    # scores in ~1 ms, the budget is 500 ms) and often built to hurt a filter, yet a false alarm
    # must stay recoverable by the recipient.
    over_budget_action: Action = Action.TAG
    # The most a message the model finds unfamiliar (model.familiarity: mostly tokens no training
    # message had, e.g. a language the training mail lacked) may get from the thresholds: its
    # probability rests on header layout and a few heuristics, and on the multilingual set
    # (bench/multilingual.py) that put ordinary mail over REROUTE. TAG keeps it visible and
    # recoverable; lists still decide as configured.
    unfamiliar_max_action: Action = Action.TAG
    trusted_authserv_ids: frozenset[str] = frozenset()

    def section_for(self, recipient: str) -> tuple[str, Settings]:
        """The section that applies to a recipient address (first matching domain section)."""
        _, at, dom = recipient.strip().strip("<>").lower().rpartition("@")
        if at:
            for d in self.domains:
                if d.recipient_domains.match(dom):
                    return d.name, d.settings
        return self.name, self.settings
