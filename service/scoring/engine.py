"""Everything one verdict needs, shared by the gRPC servicer and in-process callers (CLI, ``check``).

Free of gRPC and protobuf: the servicer (``service.api.server``) converts at the edge.
"""

from __future__ import annotations

import logging
import threading
import time

from spamgate.service.lifecycle.feedback_store import FeedbackStore, RecentMessages
from spamgate.service.lifecycle.model_watch import RegistryWatcher
from spamgate.service.lifecycle.report_rate import ReportRateLimiter
from spamgate.service.policy.policy_file import PolicyHolder
from spamgate.service.runtime.prometheus_metrics import ServiceMetrics
from spamgate.service.scoring.model_holder import ModelHolder
from spamgate.service.scoring.pool import ScoringPool
from spamgate.service.scoring.verdict import (
    ErrorKind,
    Request,
    RequestError,
    Verdict,
    build_verdict,
    verdict_dict,
)

# The logger the server has always logged verdicts under (log pipelines match on it).
log = logging.getLogger("spamgate.server")


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
            m.errors.labels(exc.kind.name).inc()  # the gRPC status of the same name
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
