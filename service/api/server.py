"""The gRPC server: a thin servicer over ``service.scoring.verdict``, plus health, reflection, metrics.

The servicer only translates between protobuf and the plain types of
``service.scoring.verdict``, and aborts a failed call with the status
``service.api.status_codes`` gives its error; any unexpected exception in
classification becomes INTERNAL with a short message (never UNKNOWN), and is logged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from spamgate.model.errors import SpamgateError
from spamgate.model.limits import ParseLimits
from spamgate.service.api import admin_socket, redact
from spamgate.service.api.access import AccessInterceptor, AccessPolicy, Principal, caller, caller_is_admin
from spamgate.service.api.audit import AuditLog, audit_path
from spamgate.service.api.proto_convert import (
    model_info,
    policy_info,
    request_from_proto,
    verdict_to_proto,
)
from spamgate.service.api.proto_gen import spamgate_pb2 as pb
from spamgate.service.api.proto_gen import spamgate_pb2_grpc as pb_grpc
from spamgate.service.api.status_codes import status_code
from spamgate.service.api.streams import StreamGuard, StreamLimits
from spamgate.service.api.tls import ReloadingCertificates, server_credentials
from spamgate.service.lifecycle.feedback_store import FeedbackStore, RecentMessages, StoreFull
from spamgate.service.lifecycle.model_registry import ModelRegistry
from spamgate.service.lifecycle.model_watch import RegistryWatcher
from spamgate.service.lifecycle.report_rate import ReportRateLimiter, peer_network
from spamgate.service.policy.policy_file import PolicyHolder
from spamgate.service.runtime.config import Config
from spamgate.service.runtime.prometheus_metrics import ServiceMetrics
from spamgate.service.scoring.engine import Engine
from spamgate.service.scoring.model_holder import ModelHolder
from spamgate.service.scoring.pool import ScoringPool
from spamgate.service.scoring.request_fields import FIELD_LIMITS, check_field
from spamgate.service.scoring.verdict import (
    ErrorKind,
    RequestError,
)

log = logging.getLogger("spamgate.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SpamGate"].full_name

class SpamGateServicer(pb_grpc.SpamGateServicer):
    """Thin: protobuf in, ``Engine.classify``, protobuf out."""

    def __init__(self, engine: Engine, streams: StreamGuard | None = None) -> None:
        self.engine = engine
        self.streams = streams or StreamGuard()

    def Classify(self, request: pb.ClassifyRequest, context: grpc.ServicerContext) -> pb.ClassifyResponse:
        try:
            return verdict_to_proto(
                self.engine.classify(request_from_proto(request), "Classify", context.time_remaining())
            )
        except RequestError as exc:
            context.abort(status_code(exc), exc.message)
            raise  # unreachable: abort raises

    def ClassifyStream(
        self, request_iterator: Iterator[pb.ClassifyRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.ClassifyResponse]:
        # An open stream holds an RPC thread even while idle: admitted only within the
        # quotas, closed by the guard's watchdog when idle or open too long.
        ticket, refused = self.streams.admit(context)
        if not ticket:
            self.engine.metrics.errors.labels(grpc.StatusCode.RESOURCE_EXHAUSTED.name).inc()
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refused)
        try:
            for request in request_iterator:
                self.streams.touch(ticket, busy=True)
                try:
                    answer = verdict_to_proto(
                        self.engine.classify(
                            request_from_proto(request), "ClassifyStream", context.time_remaining()
                        )
                    )
                except RequestError as exc:
                    if exc.kind == ErrorKind.DEADLINE_EXCEEDED:  # the stream's own deadline: it ends
                        context.abort(status_code(exc), exc.message)
                    cid = request.correlation_id  # echoed only within its cap
                    cid = cid if len(cid) <= FIELD_LIMITS["correlation_id"] else ""
                    answer = pb.ClassifyResponse(correlation_id=cid, error=exc.message)
                # Not busy while the answer waits for the client to read it: a client that never
                # reads blocks this yield, and as "busy" it held the thread until stream_max_seconds.
                self.streams.touch(ticket, busy=False)
                yield answer
        except grpc.RpcError:
            return  # cancelled (by the client, or by the watchdog with its reason): nobody to answer
        finally:
            self.streams.release(ticket)

    def GetModelInfo(self, request: pb.GetModelInfoRequest, context: grpc.ServicerContext) -> pb.ModelInfo:
        if not self.engine.holder.loaded:
            context.abort(grpc.StatusCode.UNAVAILABLE, "no model loaded yet")
        info = model_info(self.engine.holder, self.engine.policies.current().version)
        return info if caller_is_admin() else redact.public_model_info(info)

    def GetPolicy(self, request: pb.GetPolicyRequest, context: grpc.ServicerContext) -> pb.PolicyInfo:
        info = policy_info(self.engine.policies, self.engine.holder)
        return info if caller_is_admin() else redact.public_policy_info(info)

    def ReloadPolicy(self, request: pb.ReloadPolicyRequest, context: grpc.ServicerContext) -> pb.PolicyInfo:
        return policy_info(self.engine.policies, self.engine.holder, self.engine.policies.reload())

    def ReportFeedback(
        self, request: pb.FeedbackRequest, context: grpc.ServicerContext
    ) -> pb.FeedbackResponse:
        store = self.engine.feedback
        if store is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no feedback store configured ([feedback] db)")
        labels = {pb.FEEDBACK_LABEL_SPAM: "spam", pb.FEEDBACK_LABEL_HAM: "ham"}
        if request.label not in labels:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "label must be FEEDBACK_LABEL_SPAM or FEEDBACK_LABEL_HAM"
            )
        try:
            check_field("reporter", request.reporter)
            check_field("verdict_id", request.verdict_id)
        except RequestError as exc:
            context.abort(status_code(exc), exc.message)
        raw, verdict = request.message, {}
        if not raw:
            if not request.verdict_id:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "give the message or a verdict_id")
            cached = self.engine.recent.get(request.verdict_id)
            if cached is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"verdict {request.verdict_id} is no longer cached")
            raw, verdict = cached  # type: ignore[misc]
        assert store is not None
        if len(raw) > self.engine.max_message_bytes:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"message is {len(raw)} bytes, above the limit of {self.engine.max_message_bytes} bytes",
            )
        # The reporter is who the server authenticated; the request's reporter is only a claim
        # (issue 16: a self-declared "admin@example.net" flipped an admin's label).
        who = caller() or Principal(None, "anonymous", context.peer())
        reporter = who.identity if who.role is not None else f"anonymous@{peer_network(who.peer)}"
        if who.role is None and not self.engine.anonymous_rate.allow("anonymous"):
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"more than {self.engine.anonymous_rate.per_minute} anonymous reports a minute "
                "([feedback] anonymous_reports_per_minute)",
            )
        if not self.engine.report_rate.allow(reporter):
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"more than {self.engine.report_rate.per_minute} reports a minute from {reporter} "
                "([feedback] reports_per_minute)",
            )
        try:
            stored = store.add(
                raw, labels[request.label], reporter, verdict, role=who.role, claim=request.reporter
            )
        except StoreFull as exc:
            context.abort(status_code(exc), str(exc))
        return pb.FeedbackResponse(
            message_sha256=stored.sha256, duplicate=stored.duplicate, stored_messages=store.count()
        )

    def ActivateModel(self, request: pb.ActivateModelRequest, context: grpc.ServicerContext) -> pb.ModelInfo:
        watcher = self.engine.watcher
        if watcher is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the server is not serving from a registry")
        assert watcher is not None
        if request.version not in watcher.registry.versions():
            context.abort(grpc.StatusCode.NOT_FOUND, f"no version {request.version!r} in the registry")
        try:
            watcher.activate(request.version)
        except SpamgateError as exc:  # RegistryError, ArtifactError, SignatureError: INVALID_ARGUMENT
            context.abort(status_code(exc), f"version refused: {exc}")
        return model_info(self.engine.holder, self.engine.policies.current().version)


@dataclass
class RunningServer:
    """A started server and what it is bound to."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    engine: Engine
    metrics_port: int
    watcher: RegistryWatcher | None = None
    pool: ScoringPool | None = None
    streams: StreamGuard | None = None
    admin: admin_socket.AdminSocket | None = None  # the admin listener (None: [admin] socket = "off")
    certificates: ReloadingCertificates | None = None  # TLS on the TCP listener

    @property
    def admin_target(self) -> str:
        """The gRPC target of the admin socket (``unix:PATH``); "" without one."""
        return self.admin.target if self.admin else ""

    def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE_NAME):
            self.health.set(name, status)

    def stop(self, grace: float) -> threading.Event:
        """Stop accepting, let in-flight calls finish within ``grace`` seconds."""
        self.set_serving(False)
        if self.watcher is not None:
            self.watcher.stop()
        if self.streams is not None:
            self.streams.stop()
        stopped = self.server.stop(grace)
        if self.admin is not None:
            self.admin.close()  # no new admin call finds it; the listener itself closes with the server
        pool = self.pool
        if pool is not None:
            # After the in-flight calls, which may still be scoring in the pool.
            def close_pool() -> None:
                stopped.wait()
                pool.close()

            threading.Thread(target=close_pool, name="spamgate-pool-stop", daemon=True).start()
        return stopped


def start_server(
    cfg: Config,
    holder: ModelHolder | None = None,
    metrics: ServiceMetrics | None = None,
    policies: PolicyHolder | None = None,
    reuse_port: bool = False,
    scoring_init: Callable[[], None] | None = None,
) -> RunningServer:
    """Bind and start; health is NOT_SERVING until a model is loaded into ``holder``.

    ``scoring_init`` runs in each scoring worker before it serves (tests use it
    to make a stage misbehave).
    """
    holder = holder or ModelHolder(cfg.limits)
    metrics = metrics or ServiceMetrics()
    policies = policies or PolicyHolder(Path(cfg.policy.file) if cfg.policy.file else None)
    policies.observe(metrics.policy_reloaded)
    verify = signature_check(cfg.model.public_key) if cfg.model.public_key else None
    if verify is not None and holder.verify is None:
        holder.verify = verify
    registry = ModelRegistry(cfg.model.registry, verify) if cfg.model.registry else None
    watcher = RegistryWatcher(registry, holder, cfg.model.watch_seconds) if registry else None
    s = cfg.server
    streams = StreamGuard(
        StreamLimits(s.stream_idle_seconds, s.stream_max_seconds, s.max_streams_per_peer, s.stream_cap)
    )
    engine = Engine(
        holder,
        policies,
        cfg.server.max_message_bytes,
        metrics,
        feedback=(
            FeedbackStore(
                cfg.feedback.db,
                cfg.feedback.max_store_bytes,
                ParseLimits(**cfg.limits).max_bytes,
                cfg.feedback.max_reporter_bytes,
            )
            if cfg.feedback.db
            else None
        ),
        report_rate=ReportRateLimiter(cfg.feedback.reports_per_minute),
        anonymous_rate=ReportRateLimiter(cfg.feedback.anonymous_reports_per_minute),
        recent=RecentMessages(
            cfg.feedback.recent_verdicts if cfg.feedback.db else 0, cfg.feedback.recent_verdict_bytes
        ),
        watcher=watcher,
        max_inflight_bytes=cfg.server.max_inflight_bytes,
        pool=(
            ScoringPool(
                cfg.budget.processes,
                cfg.budget.cpu_budget_ms,
                init=scoring_init,
                max_waiting=max(1, cfg.server.workers - 2),
                # Scoring, waiting, or an open stream between requests: 2 RPC threads stay free.
                max_callers=max(1, cfg.server.workers - 2),
                threads_held=streams.waiting_count,
            )
            if cfg.budget.cpu_budget_ms
            else None
        ),
    )
    # The transport limit sits just above the service's own (room for the other fields), so
    # slightly oversize mail reaches build_verdict and gets INVALID_ARGUMENT naming the limit;
    # anything larger gets gRPC's RESOURCE_EXHAUSTED before it is read. It was twice the limit,
    # which doubled what max_concurrent_rpcs calls could make gRPC buffer before any check of ours.
    transport_limit = min(2**31 - 1, cfg.server.max_message_bytes + (1 << 20))
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", transport_limit),
        ("grpc.max_send_message_length", 16 * 1024 * 1024),
        # Off unless worker processes share the port: a second server on a taken
        # port must fail loudly, not silently split the traffic.
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]
    # Who may call what, and the audit log of admin calls (service.api.access); built before
    # binding so a tokens file that went bad since validation stops the start.
    access = AccessInterceptor(AccessPolicy.from_config(cfg), AuditLog(audit_path(cfg)))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=cfg.server.workers, thread_name_prefix="spamgate-rpc"),
        options=options,
        maximum_concurrent_rpcs=cfg.server.max_concurrent_rpcs,
        interceptors=[access],
    )
    pb_grpc.add_SpamGateServicer_to_server(SpamGateServicer(engine, streams), server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    # Registered for both listeners; on TCP the interceptor answers UNIMPLEMENTED unless
    # [server] reflection (default: on for a loopback address only).
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"{cfg.server.address}:{cfg.server.port}"
    certificates = None
    if cfg.tls.enabled:
        credentials, certificates = server_credentials(cfg.tls)
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind {cfg.server.address}:{cfg.server.port}")
    admin_path = admin_socket.socket_path(cfg.admin, port)
    admin = admin_socket.bind(server, admin_path) if admin_path else None
    try:
        metrics_port = metrics.serve_http(cfg.metrics.address, cfg.metrics.port) if cfg.metrics.port else 0
    except BaseException:
        if admin is not None:
            admin.close()
        raise
    running = RunningServer(server, port, health_servicer, engine, metrics_port, pool=engine.pool)
    running.streams = streams
    running.admin = admin
    running.certificates = certificates
    running.set_serving(False)

    def on_model(scorer: Any) -> None:
        metrics.set_model(scorer.version, scorer.artifact.info.feature_version)
        if engine.pool is not None and scorer.artifact.path is not None:
            engine.pool.warm(scorer)  # SERVING means a message is answered now, not after a model load
        running.set_serving(True)

    holder.listeners.append(on_model)
    if holder.loaded:
        on_model(holder.current())
    if watcher is not None:
        running.watcher = watcher
        watcher.start()
    server.start()
    return running


def signature_check(public_key: str) -> Callable[[Path], str]:
    """A verifier refusing any artifact not signed by the key in ``public_key``."""
    from spamgate.model.signing import load_public_key, verify_artifact

    key = load_public_key(Path(public_key))
    return lambda path: verify_artifact(path, key)
