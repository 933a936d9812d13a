"""What a registry's ``models pull`` has accepted, so that an older index cannot be replayed to it.

``PULL_STATE`` in the registry folder (a name reserved by ``service.lifecycle.model_registry``, never a
version)::

    {"sequence": 3, "withdrawn": ["v2"]}

``sequence`` is the highest index sequence accepted; an index numbered lower is refused (an equal
one is the same index, read again). ``withdrawn`` is every version any accepted index listed as
withdrawn: such a version is never activated by a pull again, even by an index that offers it as
current later (the reviewer of issue 16 brought a withdrawn version back with a saved index; a
second signing host that missed the recall could do the same). An administrator can still activate
it by hand with ``spamgate models activate``.

An unreadable or malformed state fails the pull closed: treating it as empty would re-open the
replay it exists to stop. Deleting the file is the administrator's explicit reset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from spamgate.model import atomic
from spamgate.model.errors import DataError
from spamgate.service.lifecycle.model_registry import PULL_STATE, version_problem
from spamgate.service.lifecycle.ship_index import Index


class PullStateError(DataError, ValueError):
    """A state file that cannot be read, or an index that the state refuses (what and why)."""


@dataclass(frozen=True)
class PullState:
    sequence: int | None = None  # None: no numbered index accepted yet
    withdrawn: frozenset[str] = field(default_factory=frozenset)

    def after(self, index: Index) -> PullState:
        """The state once ``index`` is accepted."""
        sequence = self.sequence
        if index.sequence is not None:
            sequence = index.sequence if sequence is None else max(sequence, index.sequence)
        return PullState(sequence, self.withdrawn | index.withdrawn)


def load(root: Path) -> PullState:
    """The state of the registry at ``root`` (empty when there is none yet)."""
    path = Path(root) / PULL_STATE
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return PullState()
    except OSError as exc:
        raise PullStateError(f"{path}: {exc.strerror}") from exc
    except (ValueError, RecursionError) as exc:
        raise PullStateError(f"{path}: not valid JSON ({exc}); delete it to accept any index again") from exc
    sequence = doc.get("sequence") if isinstance(doc, dict) else None
    withdrawn = doc.get("withdrawn") if isinstance(doc, dict) else None
    if (
        not isinstance(doc, dict)
        or not (sequence is None or (isinstance(sequence, int) and not isinstance(sequence, bool)))
        or not isinstance(withdrawn, list)
        or any(version_problem(v) for v in withdrawn)
    ):
        raise PullStateError(
            f"{path}: not a pull state ({{'sequence': N, 'withdrawn': [versions]}}); "
            "delete it to accept any index again"
        )
    return PullState(sequence, frozenset(withdrawn))


def save(root: Path, state: PullState) -> None:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    doc = {"sequence": state.sequence, "withdrawn": sorted(state.withdrawn)}
    atomic.write_file(root / PULL_STATE, (json.dumps(doc, indent=1) + "\n").encode())


def check(index: Index, state: PullState, where: str, now: datetime | None = None) -> None:
    """``PullStateError`` when ``index`` is older than one accepted before, or expired."""
    if index.sequence is not None and state.sequence is not None and index.sequence < state.sequence:
        raise PullStateError(
            f"{where}: index sequence {index.sequence} is older than the last accepted here "
            f"({state.sequence}): a replayed or stale copy (a mirror behind?); refused"
        )
    now = now or datetime.now(UTC)
    if index.expires is not None and index.expires <= now:
        raise PullStateError(
            f"{where}: the index expired at {index.expires.isoformat(timespec='seconds')}: a stale copy, "
            "or the publisher has not published since (spamgate models publish re-signs it); refused"
        )
