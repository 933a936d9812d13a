"""What an error becomes on the wire: the one mapping from ``model.errors`` to gRPC status codes.

The servicer (``service.api.server``) and the access interceptor (``service.api.access``)
abort with ``status_code(exc)``; neither names a status for an error class itself.
A ``ServiceError`` carries its ``ErrorKind``; a configuration or data error met
while answering a call gets its category's status.
"""

from __future__ import annotations

import grpc

from spamgate.model.errors import ConfigurationError, DataError, ErrorKind, ServiceError

_BY_KIND = {
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorKind.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
    ErrorKind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorKind.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
}
_BY_CATEGORY: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    # The server's own configuration stands in the way; the caller cannot fix it.
    (ConfigurationError, grpc.StatusCode.FAILED_PRECONDITION),
    # ActivateModel's answer for a version that fails verification, as it has been since the RPC
    # was added (its tests pin it): the version the caller named cannot be used.
    (DataError, grpc.StatusCode.INVALID_ARGUMENT),
)


def status_code(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status for a call that failed with ``exc``; INTERNAL for anything not in the tree."""
    if isinstance(exc, ServiceError):
        return _BY_KIND[exc.kind]
    for category, code in _BY_CATEGORY:
        if isinstance(exc, category):
            return code
    return grpc.StatusCode.INTERNAL
