"""The one tree of errors spamgate raises on purpose (issue 18.3).

Each error spamgate raises for a reason it can name is a ``SpamgateError``, under
one of three categories that say what its caller should do about it:

- ``ConfigurationError``: the admin's configuration cannot work — the config
  file, a policy and its list files, a key, certificate or token file, an
  MTA hook's command line. Editing fixes it, retrying never does: a command
  exits 78 (EX_CONFIG, so systemd's ``RestartPreventExitStatus=78`` stops a
  restart loop) and an MTA hook never treats one as an outage of the service
  (``check`` once failed open on a bad policy, which was a ``ValueError``
  caught with the service's own failures).
- ``DataError``: something read or written is unusable — a model artifact or
  its signature, a corpus, the registry, a distribution index, a download.
- ``ServiceError``: the service could not answer one call — a bad request,
  no worker free, a deadline, no model yet, a caller refused. ``kind`` (an
  ``ErrorKind``) says which; it alone decides the gRPC status.

What an error becomes is decided in one place each: ``model.exit_codes``
(a command's exit code) and ``service.api.status_codes`` (a gRPC status).
Commands catch ``SpamgateError`` (and ``OSError``), never ``ValueError``: a
``ValueError`` from anywhere else is a bug and is left to show as one.

Several classes also keep the ``ValueError`` (``NoModelError``: ``RuntimeError``)
base they had before this tree: library callers and tests catch them so, and
removing it would silently change what those ``except`` clauses catch. The
configuration errors no code catches as ``ValueError`` lost it
(``ConfigError``, ``PolicyError``, ``AdminSocketError``, ``ConfigProblem``).

This module imports nothing of spamgate's (and no gRPC): every layer can use it.
"""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    """Why a call got no answer; each maps to the gRPC status of the same name.

    The mapping is ``service.api.status_codes``.
    """

    INVALID_ARGUMENT = "invalid_argument"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"
    UNIMPLEMENTED = "unimplemented"


class SpamgateError(Exception):
    """The root: every error spamgate raises on purpose is one (and under one category below)."""


class ConfigurationError(SpamgateError):
    """The admin's configuration cannot work (file and key named); exit 78, never an outage."""


class ConfigurationErrors(ConfigurationError):
    """Every problem found in one configuration file at once, each naming where and why.

    An admin fixes them in one pass instead of one per restart. ``errors`` keeps the list;
    the message is ``HEADING:`` and the list, one a line.
    """

    heading = "invalid configuration"

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{self.heading}:\n  " + "\n  ".join(errors))
        self.errors = errors


class DataError(SpamgateError):
    """Something read or written is unusable: an artifact, signature, corpus, registry, index, download."""


class ServiceError(SpamgateError):
    """The service could not answer one call; ``kind`` says why (and decides the gRPC status)."""

    kind: ErrorKind = ErrorKind.INTERNAL
