"""The gRPC server: a thin servicer over ``service.verdict``, plus health, reflection, metrics.

The servicer only translates between protobuf and the plain types of
``service.verdict``, and aborts a failed call with the status
``service.status_codes`` gives its error; any unexpected exception in
classification becomes INTERNAL with a short message (never UNKNOWN), and is logged.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from model.errors import SpamgateError
from model.limits import ParseLimits
from model.scoring import Reason
from service import admin_socket, redact
from service.access import AccessInterceptor, AccessPolicy, Principal, caller, caller_is_admin
from service.audit import AuditLog, audit_path
from service.config import Config
from service.feedback import FeedbackStore, RecentMessages, StoreFull
from service.metrics import ServiceMetrics
from service.model_registry import ModelRegistry
from service.model_watch import RegistryWatcher
from service.policy import Action
from service.policy_file import PolicyHolder, ReloadResult
from service.proto_gen import spamgate_pb2 as pb
from service.proto_gen import spamgate_pb2_grpc as pb_grpc
from service.registry import ModelHolder
from service.report_rate import ReportRateLimiter, peer_network
from service.scoring_pool import ScoringPool
from service.status_codes import status_code
from service.streams import StreamGuard, StreamLimits
from service.tls import ReloadingCertificates, server_credentials
from service.verdict import (
    Envelope,
    ErrorKind,
    GroupResult,
    Request,
    RequestError,
    Verdict,
    build_verdict,
    verdict_dict,
)

log = logging.getLogger("spamgate.server")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SpamGate"].full_name


# Every request field is capped where it enters (INVALID_ARGUMENT naming the field and
# its limit), before any work: the cut-offs are generous for real mail (RFC 5321 paths
# are at most 256 octets, Postfix accepts 1,000 recipients per message by default) and
# keep what one request can make the server hold, log and answer small.
FIELD_LIMITS = {
    "correlation_id": 256,
    "policy": 128,
    "envelope.client_ip": 64,
    "envelope.helo": 512,
    "envelope.mail_from": 512,
    "envelope.rcpt_to[]": 512,
    "reporter": 256,
    "verdict_id": 64,  # a sha256 in hex
}
MAX_RECIPIENTS = 1000


def check_field(name: str, value: str) -> None:
    """Raise INVALID_ARGUMENT if ``value`` is longer than ``FIELD_LIMITS[name]``."""
    limit = FIELD_LIMITS[name.split("[")[0] + "[]" if "[" in name else name]
    if len(value) > limit:
        raise RequestError(
            ErrorKind.INVALID_ARGUMENT, f"{name} is {len(value)} characters, above the limit of {limit}"
        )


def request_from_proto(req: pb.ClassifyRequest) -> Request:
    """The plain request, after checking every field against its cap."""
    e = req.envelope
    check_field("correlation_id", req.correlation_id)
    check_field("policy", req.policy)
    check_field("envelope.client_ip", e.client_ip)
    check_field("envelope.helo", e.helo)
    check_field("envelope.mail_from", e.mail_from)
    if len(e.rcpt_to) > MAX_RECIPIENTS:
        raise RequestError(
            ErrorKind.INVALID_ARGUMENT,
            f"envelope.rcpt_to has {len(e.rcpt_to)} recipients, above the limit of {MAX_RECIPIENTS}",
        )
    for i, rcpt in enumerate(e.rcpt_to):
        check_field(f"envelope.rcpt_to[{i}]", rcpt)
    return Request(
        message=req.message,
        envelope=Envelope(e.client_ip, e.helo, e.mail_from, tuple(e.rcpt_to)),
        correlation_id=req.correlation_id,
        policy=req.policy,
    )


def verdict_to_proto(v: Verdict) -> pb.ClassifyResponse:
    return pb.ClassifyResponse(
        correlation_id=v.correlation_id,
        spam_probability=v.spam_probability,
        action=_action(v.action),
        add_headers=[pb.Header(name=n, value=val) for n, val in v.add_headers],
        subject_tag=v.subject_tag,
        reroute_to=v.reroute_to,
        reasons=[pb.Reason(name=r.name, kind=r.kind, contribution=r.contribution) for r in v.reasons],
        model_version=v.model_version,
        scanned=v.scanned,
        list_decision=v.list_decision,
        limits_cut=list(v.limits_cut),
        threshold=v.threshold,
        policy=v.policy,
        reject_text=v.reject_text,
        groups=[
            pb.RecipientGroup(
                recipients=list(g.recipients),
                policy=g.policy,
                action=_action(g.action),
                threshold=g.threshold,
                list_decision=g.list_decision,
                add_headers=[pb.Header(name=n, value=val) for n, val in g.add_headers],
                subject_tag=g.subject_tag,
                reroute_to=g.reroute_to,
                reject_text=g.reject_text,
            )
            for g in v.groups
        ],
        policy_version=v.policy_version,
        verdict_id=v.verdict_id,
        unfamiliar=v.unfamiliar,
    )


def verdict_from_proto(r: pb.ClassifyResponse) -> Verdict:
    """The inverse of ``verdict_to_proto``: a client turns an answer back into the verdict it was.

    With it the CLI prints one JSON shape (``verdict_dict``) whether it scored in process or
    asked a server (issue 18: ``classify --json`` differed with and without ``--server``).
    """

    def headers(hs: Any) -> tuple[tuple[str, str], ...]:
        return tuple((h.name, h.value) for h in hs)

    return Verdict(
        correlation_id=r.correlation_id,
        spam_probability=r.spam_probability,
        action=_action_of(r.action),
        add_headers=headers(r.add_headers),
        subject_tag=r.subject_tag,
        reroute_to=r.reroute_to,
        reject_text=r.reject_text,
        reasons=tuple(Reason(x.name, x.kind, x.contribution) for x in r.reasons),
        model_version=r.model_version,
        scanned=r.scanned,
        list_decision=r.list_decision,
        limits_cut=tuple(r.limits_cut),
        threshold=r.threshold,
        policy=r.policy,
        policy_version=r.policy_version,
        groups=tuple(
            GroupResult(
                recipients=tuple(g.recipients),
                policy=g.policy,
                action=_action_of(g.action),
                threshold=g.threshold,
                list_decision=g.list_decision,
                add_headers=headers(g.add_headers),
                subject_tag=g.subject_tag,
                reroute_to=g.reroute_to,
                reject_text=g.reject_text,
            )
            for g in r.groups
        ),
        verdict_id=r.verdict_id,
        unfamiliar=r.unfamiliar,
    )


def _action_of(value: int) -> Action:
    return Action[pb.Action.Name(value).removeprefix("ACTION_")]


def _action(a: Action) -> Any:
    """The proto enum value of an action (same numbers; looked up by name to stay honest)."""
    return pb.Action.Value("ACTION_" + a.name)


def policy_info(
    policies: PolicyHolder, holder: ModelHolder, result: ReloadResult | None = None
) -> pb.PolicyInfo:
    pol = policies.current()
    points = holder.current().artifact.policy_points if holder.loaded else []
    thresholds = []
    for name, settings in [(pol.name, pol.settings), *((d.name, d.settings) for d in pol.domains)]:
        for action, p, label in settings.resolve(points):
            thresholds.append(
                pb.EffectiveThreshold(policy=name, action=_action(action), threshold=p, description=label)
            )
    sizes = {f"allow.{k}": v for k, v in pol.allow.sizes().items()}
    sizes.update({f"block.{k}": v for k, v in pol.block.sizes().items()})
    return pb.PolicyInfo(
        version=pol.version,
        source=pol.source,
        loaded_at=policies.loaded_at,
        reloaded=bool(result and result.reloaded),
        errors=result.errors if result else policies.last_errors,
        thresholds=thresholds,
        list_sizes=sizes,
    )


def _points_pb(points: list[dict[str, Any]]) -> list[pb.OperatingPoint]:
    return [
        pb.OperatingPoint(
            name=p["name"],
            target_fpr=p["target_fpr"],
            threshold=p["threshold"],
            fpr=p["fpr"],
            catch_rate=p["catch"],
            extrapolated=bool(p.get("extrapolated", False)),
        )
        for p in points
    ]


def model_info(holder: ModelHolder, policy_version: str = "") -> pb.ModelInfo:
    art = holder.current().artifact
    m = art.manifest
    val = m.get("validation", {})
    return pb.ModelInfo(
        model_version=art.version,
        feature_version=str(m.get("feature_version", "")),
        created=str(m.get("created", "")),
        training_messages=int(m.get("training", {}).get("messages", 0)),
        corpora=[f"{c['name']} ({c['ham']}/{c['spam']})" for c in m.get("training", {}).get("corpora", [])],
        operating_points=_points_pb(art.operating_points),
        new_site_operating_points=_points_pb(art.new_site_operating_points),
        site_reports=art.site_reports,
        validation_one_minus_roca_pct=float(val.get("one_minus_roca_pct", 0.0)),
        validation_roc_auc=float(val.get("roc_auc", 0.0)),
        manifest_json=json.dumps(m, sort_keys=True),
        policy_version=policy_version,
    )


class Engine:
    """Everything one verdict needs, shared by the servicer and in-process callers."""

    def __init__(
        self,
        holder: ModelHolder,
        policies: PolicyHolder,
        max_message_bytes: int,
        metrics: ServiceMetrics | None = None,
        feedback: FeedbackStore | None = None,
        recent: RecentMessages | None = None,
        watcher: RegistryWatcher | None = None,
        pool: ScoringPool | None = None,
        max_inflight_bytes: int = 0,
        report_rate: ReportRateLimiter | None = None,
        anonymous_rate: ReportRateLimiter | None = None,
    ) -> None:
        self.holder = holder
        self.policies = policies
        self.max_message_bytes = max_message_bytes
        self.metrics = metrics or ServiceMetrics()
        self.feedback = feedback
        self.report_rate = report_rate or ReportRateLimiter()
        self.anonymous_rate = anonymous_rate or ReportRateLimiter(240)
        # Not ``recent or …``: an empty cache has len 0 and is falsy, and was silently
        # replaced by a capacity-0 one (every report by verdict_id then got NOT_FOUND).
        self.recent = recent if recent is not None else RecentMessages(0)
        self.watcher = watcher
        self.pool = pool
        self.max_inflight_bytes = max_inflight_bytes  # 0: no limit (in-process callers)
        self._inflight = 0
        self._inflight_lock = threading.Lock()

    def classify(self, request: Request, method: str, time_remaining: float | None = None) -> Verdict:
        size = len(request.message)
        with self._inflight_lock:
            limit = self.max_inflight_bytes
            over = bool(limit and self._inflight and self._inflight + size > limit)
            if not over:
                self._inflight += size
        if over:
            self.metrics.errors.labels("RESOURCE_EXHAUSTED").inc()
            raise RequestError(
                ErrorKind.RESOURCE_EXHAUSTED,
                f"calls in progress hold {self._inflight} message bytes; this one's {size} would pass"
                f" [server] max_inflight_bytes ({self.max_inflight_bytes}): retry shortly",
            )
        try:
            return self._classify(request, method, time_remaining)
        finally:
            with self._inflight_lock:
                self._inflight -= size

    def _classify(self, request: Request, method: str, time_remaining: float | None) -> Verdict:
        m = self.metrics
        m.requests.labels(method).inc()
        m.message_bytes.observe(len(request.message))
        start = time.perf_counter()
        try:
            policy = self.policies.current()  # one policy for the whole request, even across a reload
            verdict = build_verdict(
                request, self.holder, policy, self.max_message_bytes, time_remaining, self.pool
            )
        except RequestError as exc:
            m.errors.labels(status_code(exc).name).inc()
            raise
        except Exception as exc:
            log.exception("classify failed", extra={"correlation_id": request.correlation_id})
            m.errors.labels("INTERNAL").inc()
            raise RequestError(ErrorKind.INTERNAL, f"internal error: {type(exc).__name__}") from exc
        m.latency.observe(time.perf_counter() - start)
        m.verdicts.labels(verdict.action.name).inc()
        if verdict.unfamiliar:
            m.unfamiliar.inc()
        for reason in verdict.reasons:
            if reason.kind == "limit":
                m.aborted.labels(reason.name).inc()
                log.warning(
                    "message not scored",
                    extra={"correlation_id": request.correlation_id, "why": "; ".join(verdict.limits_cut)},
                )
        self.recent.put(verdict.verdict_id, request.message, verdict_dict(verdict))
        log.info(
            "verdict",
            extra={
                "correlation_id": request.correlation_id,
                "bytes": len(request.message),
                "client_ip": request.envelope.client_ip,
                "rcpt_count": len(request.envelope.rcpt_to),
                "action": verdict.action.name,
                "scanned": verdict.scanned,
                "list": verdict.list_decision,
                "p": round(verdict.spam_probability, 5),
                "model": verdict.model_version,
                "ms": round(1000 * (time.perf_counter() - start), 2),
            },
        )
        return verdict


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
                    yield verdict_to_proto(
                        self.engine.classify(
                            request_from_proto(request), "ClassifyStream", context.time_remaining()
                        )
                    )
                except RequestError as exc:
                    if exc.kind == ErrorKind.DEADLINE_EXCEEDED:  # the stream's own deadline: it ends
                        context.abort(status_code(exc), exc.message)
                    cid = request.correlation_id  # echoed only within its cap
                    cid = cid if len(cid) <= FIELD_LIMITS["correlation_id"] else ""
                    yield pb.ClassifyResponse(correlation_id=cid, error=exc.message)
                self.streams.touch(ticket, busy=False)
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
    verify = signature_check(cfg.model.public_key) if cfg.model.public_key else None
    if verify is not None and holder.verify is None:
        holder.verify = verify
    registry = ModelRegistry(cfg.model.registry, verify) if cfg.model.registry else None
    watcher = RegistryWatcher(registry, holder, cfg.model.watch_seconds) if registry else None
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
    # Who may call what, and the audit log of admin calls (service.access); built before
    # binding so a tokens file that went bad since validation stops the start.
    access = AccessInterceptor(AccessPolicy.from_config(cfg), AuditLog(audit_path(cfg)))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=cfg.server.workers, thread_name_prefix="spamgate-rpc"),
        options=options,
        maximum_concurrent_rpcs=cfg.server.max_concurrent_rpcs,
        interceptors=[access],
    )
    s = cfg.server
    streams = StreamGuard(
        StreamLimits(s.stream_idle_seconds, s.stream_max_seconds, s.max_streams_per_peer, s.stream_cap)
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
        metrics.set_model(scorer.version, scorer.artifact.manifest.get("feature_version", ""))
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


def signature_check(public_key: str) -> Callable[[Path], None]:
    """A verifier refusing any artifact not signed by the key in ``public_key``."""
    from model.signing import load_public_key, verify_artifact

    key = load_public_key(Path(public_key))
    return lambda path: verify_artifact(path, key)
