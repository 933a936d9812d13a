"""What a command exits with when it fails: the one mapping from ``model.errors`` to exit codes.

Commands catch ``SpamgateError`` (and ``OSError``), print one line and return
``exit_code(exc)``; none picks a number for an error class itself. A command's
own outcomes (``check``'s verdicts 0-4, ``retrain``'s 1 and 3, ``models pull``'s
1) are its own business and documented with it. Here, not in ``service/``:
``spamgate train`` and ``evaluate`` (``training.train_commands``) use it too, and
``training`` never imports ``service``.
"""

from __future__ import annotations

import sys

from spamgate.model.errors import ConfigurationError, ErrorKind, ServiceError

FAILURE = 2  # what every command has exited with on a failure since the first release (argparse's too)
EX_TEMPFAIL = 75  # sysexits.h: try again later (the MTA retries)
EX_CONFIG = 78  # sysexits.h: a configuration error (RestartPreventExitStatus=78 stops a restart loop)

# A service error of these kinds may go away by itself; any other is the caller's request.
_TRANSIENT = frozenset({ErrorKind.UNAVAILABLE, ErrorKind.DEADLINE_EXCEEDED, ErrorKind.RESOURCE_EXHAUSTED})


def exit_code(exc: BaseException) -> int:
    """The exit code for a command that failed with ``exc``.

    ``ConfigurationError`` 78; a ``ServiceError`` that may pass (unavailable,
    deadline, busy) 75; anything else (``DataError``, a refused request,
    ``OSError``) 2.
    """
    if isinstance(exc, ConfigurationError):
        return EX_CONFIG
    if isinstance(exc, ServiceError) and exc.kind in _TRANSIENT:
        return EX_TEMPFAIL
    return FAILURE


def fail(command: str, exc: BaseException) -> int:
    """Print ``spamgate COMMAND: why`` on stderr; return ``exit_code(exc)``."""
    print(f"spamgate {command}: {exc}", file=sys.stderr)
    return exit_code(exc)
