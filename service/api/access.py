"""Who may call what: one gRPC interceptor in front of every service of the server.

Callers and their roles (``admin`` > ``reporter`` > ``client``):

- on the admin socket (``context.peer()`` is ``unix:…``; ``service.api.admin_socket``): admin;
- on TCP with a client certificate (mTLS, ``[tls] client_ca_file``): the highest role
  whose ``[roles]`` list names the certificate (``CN=…`` or ``SAN=…``), else ``client``
  (the CA vouched for it);
- on TCP with ``authorization: Bearer TOKEN`` metadata: the token's role in ``[auth]
  tokens_file`` (``service.api.bearer_tokens``); an unknown token is refused (UNAUTHENTICATED), so a
  gateway with a stale token finds out at once; certificate and token: the higher role;
- anyone else is anonymous.

Rules per method (``RULES``; a method not listed needs admin, so a new RPC is closed
until someone decides otherwise):

- OPEN: Classify, ClassifyStream, Health: any role, and anonymous callers unless
  ``[auth] anonymous = false`` (Health stays open to all: load balancers probe it);
- READ: GetModelInfo, GetPolicy: as OPEN; only admin sees filesystem paths (``service.api.redact``);
- REPORT: ReportFeedback: reporter or admin; anonymous TCP callers (and clients) only
  with ``[admin] anonymous_feedback = true``;
- ADMIN: ActivateModel, ReloadPolicy;
- REFLECT: server reflection: always on the admin socket, on TCP per ``[server] reflection``.

REPORT and ADMIN calls, refused or not, go to the audit log (``service.api.audit``). The
servicer learns the caller through ``caller()`` (a context variable set around each
unary call), so it stays a translation layer.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health
from grpc_reflection.v1alpha import reflection

from spamgate.model.errors import ErrorKind, ServiceError
from spamgate.service.api.audit import AuditLog, call_args, call_outcome
from spamgate.service.api.bearer_tokens import ROLES, TokenTable
from spamgate.service.api.proto_gen import spamgate_pb2 as pb
from spamgate.service.api.status_codes import status_code
from spamgate.service.runtime.config import Config, RolesSection
from spamgate.service.runtime.security_config import is_loopback

log = logging.getLogger("spamgate.access")

RANK = {"client": 1, "reporter": 2, "admin": 3}
assert set(RANK) == set(ROLES)

OPEN, READ, REPORT, ADMIN, REFLECT, HEALTH = "open", "read", "report", "admin", "reflect", "health"
_SG = "/" + pb.DESCRIPTOR.services_by_name["SpamGate"].full_name + "/"
RULES = {
    _SG + "Classify": OPEN,
    _SG + "ClassifyStream": OPEN,
    _SG + "GetModelInfo": READ,
    _SG + "GetPolicy": READ,
    _SG + "ReportFeedback": REPORT,
    _SG + "ReloadPolicy": ADMIN,
    _SG + "ActivateModel": ADMIN,
    f"/{health.SERVICE_NAME}/Check": HEALTH,
    f"/{health.SERVICE_NAME}/Watch": HEALTH,
    f"/{reflection.SERVICE_NAME}/ServerReflectionInfo": REFLECT,
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``role`` None for an anonymous caller."""

    role: str | None
    identity: str
    peer: str

    def has(self, role: str) -> bool:
        return self.role is not None and RANK[self.role] >= RANK[role]

    @property
    def on_admin_socket(self) -> bool:
        return self.peer.startswith("unix:")

    def who(self) -> dict[str, str]:
        return {"role": self.role or "anonymous", "identity": self.identity, "peer": self.peer}


_CALLER: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("spamgate_caller", default=None)


def caller() -> Principal | None:
    """The caller of the unary call running in this thread (None outside one)."""
    return _CALLER.get()


def caller_is_admin() -> bool:
    p = _CALLER.get()
    return p is not None and p.has("admin")


class Refused(ServiceError):
    """A caller this listener does not admit to a method; ``kind`` is why (UNAUTHENTICATED, …)."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _bearer(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            text = value if isinstance(value, str) else value.decode("latin-1")
            scheme, _, token = text.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Refused(ErrorKind.UNAUTHENTICATED, "authorization metadata must be 'Bearer TOKEN'")
            return token.strip()
    return None


def _text(values: Any) -> list[str]:
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values or ()]


class AccessPolicy:
    """Identifies callers and decides whether a method is theirs to call."""

    def __init__(
        self,
        roles: RolesSection | None = None,
        tokens: TokenTable | None = None,
        anonymous: bool = True,
        anonymous_feedback: bool = False,
        reflection_on_tcp: bool = True,
        client_certs: bool = False,
    ) -> None:
        self.roles = roles or RolesSection()
        self.tokens = tokens
        self.anonymous = anonymous
        self.anonymous_feedback = anonymous_feedback
        self.reflection_on_tcp = reflection_on_tcp
        self.client_certs = client_certs

    @classmethod
    def from_config(cls, cfg: Config) -> AccessPolicy:
        reflection_on = cfg.server.reflection
        if reflection_on is None:
            reflection_on = is_loopback(cfg.server.address)
        return cls(
            cfg.roles,
            TokenTable(Path(cfg.auth.tokens_file)) if cfg.auth.tokens_file else None,
            cfg.auth.anonymous,
            cfg.admin.anonymous_feedback,
            reflection_on,
            bool(cfg.tls.client_ca_file),
        )

    def _cert_role(self, context: grpc.ServicerContext) -> tuple[str, str] | None:
        auth = context.auth_context()
        names = [f"CN={v}" for v in _text(auth.get("x509_common_name"))]
        names += [f"SAN={v}" for v in _text(auth.get("x509_subject_alternative_name"))]
        if not names:
            return None
        role = "client"  # a certificate the CA signed, named in no [roles] list
        for candidate in ("reporter", "admin"):
            if set(getattr(self.roles, candidate)) & set(names):
                role = candidate
        listed = [n for n in names if any(n in getattr(self.roles, r) for r in ROLES)]
        return role, (listed or names)[0]

    def identify(self, context: grpc.ServicerContext) -> Principal:
        """The caller; raises ``Refused`` (UNAUTHENTICATED) for a bad or unknown token."""
        peer = context.peer()
        if peer.startswith("unix:"):
            return Principal("admin", "admin-socket", peer)
        found: list[tuple[str, str]] = []
        if self.client_certs:
            cert = self._cert_role(context)
            if cert:
                found.append(cert)
        token = _bearer(context.invocation_metadata())
        if token is not None:
            if self.tokens is None:
                raise Refused(
                    ErrorKind.UNAUTHENTICATED,
                    "this server takes no bearer tokens ([auth] tokens_file is unset)",
                )
            entry = self.tokens.lookup(token)
            if entry is None:
                raise Refused(ErrorKind.UNAUTHENTICATED, "unknown bearer token")
            found.append((entry.role, f"token:{entry.name}"))
        if not found:
            return Principal(None, "anonymous", peer)
        role = max((r for r, _ in found), key=RANK.__getitem__)
        return Principal(role, "+".join(i for _, i in found), peer)

    def check(self, method: str, p: Principal) -> None:
        """Raise ``Refused`` unless ``p`` may call ``method``."""
        rule = RULES.get(method, ADMIN)
        name = method.rsplit("/", 1)[-1]
        if rule == HEALTH:
            return
        if rule == REFLECT:
            if p.on_admin_socket or self.reflection_on_tcp:
                return
            raise Refused(
                ErrorKind.UNIMPLEMENTED,
                "server reflection is off on this listener ([server] reflection = true turns it on)",
            )
        if p.role is None and not self.anonymous:
            raise Refused(
                ErrorKind.UNAUTHENTICATED,
                f"{name} needs a client certificate or a bearer token here ([auth] anonymous = false)",
            )
        if rule in (OPEN, READ):
            return
        if rule == REPORT and (p.has("reporter") or self.anonymous_feedback):
            return
        if rule == ADMIN and p.has("admin"):
            return
        need = "the reporter or admin role" if rule == REPORT else "the admin role"
        raise Refused(
            ErrorKind.PERMISSION_DENIED,
            f"{name} needs {need}: call it on the admin socket ([admin] socket) or with a certificate"
            " or token that has the role",
        )


class AccessInterceptor(grpc.ServerInterceptor):
    """Admits or refuses every call (``AccessPolicy``), records REPORT and ADMIN calls (``AuditLog``)."""

    def __init__(self, policy: AccessPolicy, audit: AuditLog) -> None:
        self.policy = policy
        self.audit = audit

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        audited = RULES.get(method, ADMIN) in (REPORT, ADMIN)
        name = method.rsplit("/", 1)[-1]
        admit = self._admit

        if handler.unary_unary is not None:
            inner = handler.unary_unary

            def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
                p = admit(method, context, request, audited)
                token = _CALLER.set(p)
                try:
                    response = inner(request, context)
                except BaseException as exc:
                    if audited:
                        # abort() set the code and details; any other exception reaches the client as UNKNOWN.
                        code, details = context.code(), context.details()
                        self.audit.record(
                            p.who(),
                            name,
                            call_args(name, request),
                            code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN",
                            details.decode("utf-8", "replace") if details else type(exc).__name__,
                        )
                    raise
                finally:
                    _CALLER.reset(token)
                if audited:
                    self.audit.record(
                        p.who(), name, call_args(name, request), "OK", outcome=call_outcome(name, response)
                    )
                return response

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer
            )

        def wrap(
            inner: Callable[[Any, grpc.ServicerContext], Any],
        ) -> Callable[[Any, grpc.ServicerContext], Any]:
            def call(request: Any, context: grpc.ServicerContext) -> Any:
                p = admit(method, context, None, audited)
                if audited:  # a streaming admin call: recorded when admitted (no such RPC today)
                    self.audit.record(p.who(), name, {}, "ADMITTED")
                return inner(request, context)

            return call

        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                wrap(handler.unary_stream), handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                wrap(handler.stream_unary), handler.request_deserializer, handler.response_serializer
            )
        return grpc.stream_stream_rpc_method_handler(
            wrap(handler.stream_stream), handler.request_deserializer, handler.response_serializer
        )

    def _admit(self, method: str, context: grpc.ServicerContext, request: Any, audited: bool) -> Principal:
        """The caller, if allowed; otherwise the call is aborted (and recorded when audited)."""
        name = method.rsplit("/", 1)[-1]
        p = Principal(None, "unidentified", context.peer())
        try:
            p = self.policy.identify(context)
            self.policy.check(method, p)
        except Refused as exc:
            code = status_code(exc)
            if audited:
                self.audit.record(
                    p.who(), name, call_args(name, request), code.name, exc.message, refused=True
                )
            else:
                log.info("call refused", extra={"method": name, "code": code.name, **p.who()})
            context.abort(code, exc.message)
        return p
