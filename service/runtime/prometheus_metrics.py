"""Prometheus metrics, in a registry owned by the server (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

# Latency buckets around a mail gateway's budget: most verdicts take a few ms,
# anything above a second is a problem the MTA will feel.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SIZE_BUCKETS = (1e3, 4e3, 16e3, 64e3, 256e3, 1e6, 4e6, 16e6, 64e6)


class ServiceMetrics:
    """The service's counters and histograms."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "spamgate_requests", "Messages received, by RPC method", ["method"], registry=r
        )
        self.verdicts = Counter("spamgate_verdicts", "Verdicts given, by action", ["action"], registry=r)
        self.errors = Counter(
            "spamgate_errors", "Requests answered with an error, by gRPC status", ["code"], registry=r
        )
        self.latency = Histogram(
            "spamgate_classify_seconds",
            "Time to a verdict for one message",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.message_bytes = Histogram(
            "spamgate_message_bytes", "Size of messages received", buckets=SIZE_BUCKETS, registry=r
        )
        self.aborted = Counter(
            "spamgate_scoring_aborted",
            "Messages the model could not score within the limits, by reason (CPU_BUDGET, SCORER_FAILED)",
            ["reason"],
            registry=r,
        )
        self.unfamiliar = Counter(
            "spamgate_unfamiliar",
            "Verdicts on messages mostly unlike the training mail (ClassifyResponse.unfamiliar)",
            registry=r,
        )
        # A policy reload that was refused keeps the previous policy serving, so nothing else shows an
        # admin that the edit they made is not in force (reload review: only the log and GetPolicy did).
        self.policy_reloads = Counter(
            "spamgate_policy_reloads",
            "Policy file reloads, by result (applied; refused: the previous policy kept)",
            ["result"],
            registry=r,
        )
        self.policy_reload_refused = Gauge(
            "spamgate_policy_reload_refused",
            "1 while the last policy reload was refused and the previous policy serves, else 0",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.model = Info("spamgate_model", "The active model", registry=r)
        # The same as a gauge, which prometheus-client also aggregates across worker
        # processes (serve --processes N); Info metrics are single-process only.
        self.model_loaded = Gauge(
            "spamgate_model_loaded",
            "1 for the model version a serving process has active, 0 for versions it swapped out",
            ["version", "feature_version"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self._active: tuple[str, str] | None = None

    def set_model(self, version: str, feature_version: str) -> None:
        self.model.info({"version": version, "feature_version": feature_version})
        if self._active is not None and self._active != (version, feature_version):
            self.model_loaded.labels(*self._active).set(0)
        self.model_loaded.labels(version, feature_version).set(1)
        self._active = (version, feature_version)

    def policy_reloaded(self, applied: bool) -> None:
        self.policy_reloads.labels("applied" if applied else "refused").inc()
        self.policy_reload_refused.set(0 if applied else 1)

    def serve_http(self, address: str, port: int) -> int:
        """Start the /metrics endpoint in a daemon thread; returns the bound port."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        return int(server.server_port)
