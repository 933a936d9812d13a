"""Server configuration: a TOML file plus command-line overrides, validated up front.

Every error names the key and why, and all errors are reported at once, so an
admin fixes a config in one pass instead of one restart per typo.

    [server]
    address = "127.0.0.1"
    port = 50051
    workers = 8                 # threads serving RPCs
    max_concurrent_rpcs = 64    # beyond this: RESOURCE_EXHAUSTED
    max_message_bytes = 26214400
    grace_seconds = 10
    max_inflight_bytes = 268435456  # message bytes held by calls in progress, in all
    processes = 1               # worker processes sharing the port (one core each)
    stream_idle_seconds = 30    # a ClassifyStream with no request for this long is closed
    stream_max_seconds = 600    # and any stream after this long
    max_streams_per_peer = 2    # open streams per client IP; more: RESOURCE_EXHAUSTED
    max_streams = 0             # open streams in all (each holds an RPC thread); 0: workers // 2
    [model]
    path = ""                   # one artifact folder; empty: the bundled model
    registry = ""               # or a registry folder: serve its ACTIVE version, follow switches
    public_key = ""             # Ed25519 public key: refuse unsigned or badly signed versions
    watch_seconds = 0.5         # how often the registry pointer is checked
    [feedback]
    db = ""                     # SQLite feedback store; empty disables ReportFeedback
    recent_verdicts = 1000      # verdicts kept for reports by verdict_id
    recent_verdict_bytes = 67108864  # and at most this many message bytes in all
    reports_per_minute = 60     # reports a minute per reporter (principal, or anonymous peer address)
    max_store_bytes = 1073741824  # bytes the store keeps (messages and report rows); refused beyond
    max_reporter_bytes = 0      # message bytes one untrusted reporter may add (0: max_store_bytes / 4)
    anonymous_reports_per_minute = 240  # all anonymous callers together (each network: reports_per_minute)
    [limits]                    # what the parser scans (see model.limits.ParseLimits), and:
    max_bytes = 524288
    cpu_budget_ms = 500         # CPU one message may cost; over it: reason CPU_BUDGET (0: no budget)
    scoring_processes = 0       # worker processes that score under the budget; 0: max(2, cores)
    [metrics]
    port = 9464                 # 0 disables the Prometheus endpoint
    address = "127.0.0.1"
    [logging]
    format = "json"             # or "text"
    level = "INFO"
    [policy]
    file = ""                   # admin policy TOML (see README); empty: built-in "balanced" policy
    [tls]                       # TLS on the TCP listener (README "Security"); empty: plaintext
    cert_file = ""              # server certificate chain (PEM); re-read when it changes
    key_file = ""               # its private key (PEM, unencrypted)
    client_ca_file = ""         # set: every TCP client must present a certificate signed by it (mTLS)
    [admin]
    socket = ""                 # admin Unix socket; "": derived (see service.api.admin_socket); "off": none
    audit_log = ""              # JSON lines; "": beside the feedback DB / in the registry, else the log
    anonymous_feedback = false  # true: ReportFeedback over TCP without a role
    [auth]
    tokens_file = ""            # bearer tokens, lines "ROLE TOKEN [NAME]"; not readable by others
    anonymous = true            # false: TCP callers need a certificate or token for every call
    [roles]                     # client-certificate identities (mTLS) per role: "CN=name" or "SAN=name"
    admin = []
    reporter = []
    client = []
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from spamgate.model.bundled import bundled_model_path
from spamgate.model.errors import ConfigurationErrors
from spamgate.model.limits import ParseLimits
from spamgate.service.runtime.toml_lines import with_lines

DEFAULT_PORT = 50051
DEFAULT_METRICS_PORT = 9464


class ConfigError(ConfigurationErrors):
    """One or more configuration errors, each naming the key."""


@dataclass(frozen=True)
class ServerSection:
    address: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 8
    max_concurrent_rpcs: int = 64
    max_message_bytes: int = 25 * 1024 * 1024
    grace_seconds: float = 10.0
    processes: int = 1
    # Message bytes held by calls in progress (queued for or in scoring), in all; a call that would
    # go over it gets RESOURCE_EXHAUSTED at once (one call alone always proceeds). Sixteen 24 MB
    # calls took the server from 148 to 791 MB (attack review); 256 MiB is ten of the largest.
    max_inflight_bytes: int = 256 * 1024 * 1024
    stream_idle_seconds: float = 30.0
    stream_max_seconds: float = 600.0
    max_streams_per_peer: int = 2
    max_streams: int = 0  # 0: workers // 2
    # Server reflection on the TCP listener; None: on for a loopback address only (the admin
    # socket always has it). A TOML boolean (``metadata`` tells ``_typed`` the type).
    reflection: bool | None = field(default=None, metadata={"type": bool})

    @property
    def stream_cap(self) -> int:
        """Concurrent ClassifyStream calls allowed: each holds an RPC thread while it is open."""
        return self.max_streams or self.workers // 2


@dataclass(frozen=True)
class ModelSection:
    path: str = ""
    registry: str = ""
    public_key: str = ""
    watch_seconds: float = 0.5


@dataclass(frozen=True)
class FeedbackSection:
    db: str = ""
    recent_verdicts: int = 1000
    recent_verdict_bytes: int = 64 * 1024 * 1024
    # Reports a minute per reporter (authenticated principal, or an anonymous peer address), and
    # the most message bytes the store keeps (issue 16: service.lifecycle.report_rate,
    # service.lifecycle.feedback_store).
    reports_per_minute: int = 60
    max_store_bytes: int = 1 << 30
    max_reporter_bytes: int = 0  # message bytes one untrusted reporter may add; 0: max_store_bytes / 4
    anonymous_reports_per_minute: int = 240  # all anonymous reporters together


@dataclass(frozen=True)
class MetricsSection:
    address: str = "127.0.0.1"
    port: int = DEFAULT_METRICS_PORT


@dataclass(frozen=True)
class LoggingSection:
    format: str = "json"
    level: str = "INFO"


@dataclass(frozen=True)
class PolicySection:
    file: str = ""


@dataclass(frozen=True)
class TlsSection:
    """TLS on the TCP listener. ``client_ca_file`` makes client certificates mandatory.

    There is no "ask for a certificate but accept a client without one": grpcio's server
    credentials either require and verify one or never request one (with a CA given and
    ``require_client_authentication=False``, a client's certificate never reached
    ``auth_context``, tried with grpcio 1.85).
    """

    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file or self.key_file or self.client_ca_file)


@dataclass(frozen=True)
class AdminSection:
    socket: str = ""
    audit_log: str = ""
    anonymous_feedback: bool = False


@dataclass(frozen=True)
class AuthSection:
    tokens_file: str = ""
    anonymous: bool = True


@dataclass(frozen=True)
class RolesSection:
    admin: list[str] = field(default_factory=list)
    reporter: list[str] = field(default_factory=list)
    client: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BudgetLimits:
    """The per-message CPU budget: [limits] keys that bound work, not what the parser scans.

    500 ms: ordinary mail scores in about 1 ms (``bench/speed.py``; the slowest corpus
    message is in BENCHMARKS.md, ``bench/budget.py``), so the budget only ever meets mail built
    to stall a filter; it is also a tenth of the milter's default 5 s timeout, so a message
    cut off by the budget still gets its verdict long before the MTA gives up.
    """

    cpu_budget_ms: int = 500
    scoring_processes: int = 0

    @property
    def processes(self) -> int:
        """Worker processes: at least two, so one message over budget never holds up the next."""
        return self.scoring_processes or max(2, os.cpu_count() or 1)


_BUDGET_KEYS = {f.name for f in fields(BudgetLimits)}


@dataclass(frozen=True)
class Config:
    server: ServerSection = field(default_factory=ServerSection)
    model: ModelSection = field(default_factory=ModelSection)
    limits: dict[str, int] = field(default_factory=dict)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    policy: PolicySection = field(default_factory=PolicySection)
    feedback: FeedbackSection = field(default_factory=FeedbackSection)
    budget: BudgetLimits = field(default_factory=BudgetLimits)
    tls: TlsSection = field(default_factory=TlsSection)
    admin: AdminSection = field(default_factory=AdminSection)
    auth: AuthSection = field(default_factory=AuthSection)
    roles: RolesSection = field(default_factory=RolesSection)

    @property
    def model_path(self) -> Path:
        """The model to serve: the registry's active version, the configured path, or the bundled model."""
        if self.model.registry:
            from spamgate.service.lifecycle.model_registry import ModelRegistry

            active = ModelRegistry(self.model.registry).active_path()
            if active is not None:
                return active
            return Path(self.model.registry) / "<no ACTIVE version>"
        return Path(self.model.path) if self.model.path else bundled_model_path()


_SECTIONS: dict[str, type] = {
    "server": ServerSection,
    "model": ModelSection,
    "metrics": MetricsSection,
    "logging": LoggingSection,
    "policy": PolicySection,
    "feedback": FeedbackSection,
    "tls": TlsSection,
    "admin": AdminSection,
    "auth": AuthSection,
    "roles": RolesSection,
}


def _typed(section: str, cls: type, raw: Any, errors: list[str]) -> Any:
    if not isinstance(raw, dict):
        errors.append(f"[{section}] must be a table")
        return cls()
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            errors.append(f"[{section}] unknown key {key!r} (known: {', '.join(sorted(known))})")
            continue
        want = known[key].metadata.get("type") or type(getattr(cls(), key))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            errors.append(f"[{section}] {key} must be {want.__name__}, got {value!r}")
            continue
        values[key] = value
    return cls(**values)


def _check_port(name: str, port: int, errors: list[str], allow_zero: bool = False) -> None:
    if not (0 if allow_zero else 1) <= port <= 65535:
        errors.append(f"{name} must be in {0 if allow_zero else 1}..65535, got {port}")


def validate(cfg: Config) -> list[str]:
    """Semantic checks beyond types; returns every problem found."""
    errors: list[str] = []
    s = cfg.server
    _check_port("[server] port", s.port, errors, allow_zero=True)  # 0: pick a free port
    _check_port("[metrics] port", cfg.metrics.port, errors, allow_zero=True)
    if cfg.metrics.port and cfg.metrics.port == s.port and cfg.metrics.address == s.address:
        errors.append("[metrics] port must differ from [server] port")
    for key in ("workers", "max_concurrent_rpcs", "max_message_bytes", "processes", "max_inflight_bytes"):
        if getattr(s, key) < 1:
            errors.append(f"[server] {key} must be >= 1, got {getattr(s, key)}")
    if s.grace_seconds < 0:
        errors.append(f"[server] grace_seconds must be >= 0, got {s.grace_seconds}")
    for key in ("stream_idle_seconds", "stream_max_seconds"):
        if getattr(s, key) <= 0:
            errors.append(f"[server] {key} must be > 0, got {getattr(s, key)}")
    if s.max_streams_per_peer < 1:
        errors.append(f"[server] max_streams_per_peer must be >= 1, got {s.max_streams_per_peer}")
    if s.max_streams < 0 or (s.max_streams and s.max_streams >= s.workers):
        # Each open stream holds an RPC thread; at least one must stay free for Classify and Health.
        errors.append(
            f"[server] max_streams must be in 1..workers-1 ({s.workers - 1}), or 0 for workers // 2;"
            f" got {s.max_streams}"
        )
    if cfg.logging.format not in ("json", "text"):
        errors.append(f"[logging] format must be 'json' or 'text', got {cfg.logging.format!r}")
    if cfg.logging.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        errors.append(f"[logging] level must be DEBUG, INFO, WARNING or ERROR, got {cfg.logging.level!r}")
    try:
        ParseLimits(**cfg.limits)
    except (TypeError, ValueError) as exc:
        errors.append(f"[limits] {exc}")
    mp = cfg.model_path
    if cfg.model.path and cfg.model.registry:
        errors.append("[model] give path or registry, not both")
    if not (mp / "manifest.json").is_file():
        key = "registry" if cfg.model.registry else "path"
        errors.append(f"[model] {key} {str(mp)!r}: no model there (no manifest.json)")
    if cfg.model.public_key and not Path(cfg.model.public_key).is_file():
        errors.append(f"[model] public_key {cfg.model.public_key!r}: no such file")
    if cfg.model.watch_seconds <= 0:
        errors.append(f"[model] watch_seconds must be > 0, got {cfg.model.watch_seconds}")
    if cfg.feedback.recent_verdicts < 0:
        errors.append(f"[feedback] recent_verdicts must be >= 0, got {cfg.feedback.recent_verdicts}")
    if cfg.feedback.recent_verdict_bytes < 0:
        errors.append(
            f"[feedback] recent_verdict_bytes must be >= 0, got {cfg.feedback.recent_verdict_bytes}"
        )
    if cfg.feedback.max_reporter_bytes < 0:
        errors.append(f"[feedback] max_reporter_bytes must be >= 0, got {cfg.feedback.max_reporter_bytes}")
    for key in ("reports_per_minute", "max_store_bytes", "anonymous_reports_per_minute"):
        if getattr(cfg.feedback, key) <= 0:
            errors.append(f"[feedback] {key} must be > 0, got {getattr(cfg.feedback, key)}")
    if cfg.policy.file:
        from spamgate.service.policy.policy_file import parse_policy
        from spamgate.service.policy.settings import PolicyError

        try:
            parse_policy(Path(cfg.policy.file))
        except PolicyError as exc:
            errors.extend(f"[policy] file: {e}" for e in exc.errors)
    from spamgate.service.runtime.security_config import security_errors

    errors.extend(security_errors(cfg))
    return errors


def load_config(path: Path | None = None, overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    """Read ``path`` (if given), apply ``overrides`` (section → key → value), validate."""
    errors: list[str] = []
    raw: dict[str, Any] = {}
    text = ""
    if path is not None:
        # Read as UTF-8 bytes whatever the locale. A non-UTF-8 byte (a Latin-1 comment) raised
        # UnicodeDecodeError and arrays nested 3,000 deep RecursionError from tomllib: both left
        # `spamgate serve` with a traceback and exit 1, not 78 (adversarial review).
        try:
            data = Path(path).read_bytes()
            if data.startswith(b"\xef\xbb\xbf"):
                raise ConfigError(
                    [f"{path}:1: starts with a byte-order mark (UTF-8 with BOM): save it without one"]
                )
            text = data.decode("utf-8")
            raw = tomllib.loads(text)
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise ConfigError([f"{path}:{line}: not UTF-8 (byte {exc.start})"]) from exc
        except RecursionError as exc:
            raise ConfigError([f"{path}: nested too deeply (arrays or inline tables)"]) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    kwargs: dict[str, Any] = {}
    for section, value in raw.items():
        if section == "limits":
            if not isinstance(value, dict):
                errors.append("[limits] must be a table")
                continue
            unknown = set(value) - set(ParseLimits().as_dict()) - _BUDGET_KEYS
            errors.extend(f"[limits] unknown key {k!r}" for k in sorted(unknown))
            kwargs["limits"] = {k: v for k, v in value.items() if k not in unknown | _BUDGET_KEYS}
            budget = {k: v for k, v in value.items() if k in _BUDGET_KEYS}
            for k, v in budget.items():
                if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    errors.append(f"[limits] {k} must be an integer >= 0, got {v!r}")
            if not errors:
                kwargs["budget"] = BudgetLimits(**budget)
        elif section in _SECTIONS:
            kwargs[section] = _typed(section, _SECTIONS[section], value, errors)
        else:
            errors.append(f"unknown section [{section}] (known: {', '.join(sorted([*_SECTIONS, 'limits']))})")
    cfg = Config(**kwargs)
    errors.extend(validate(cfg))
    if errors:
        # Each error about a key the file writes names its line there (issue 18).
        raise ConfigError(with_lines(Path(path), text, errors, overrides or {}) if path else errors)
    return cfg


def with_server(cfg: Config, **changes: Any) -> Config:
    """A copy with some [server] values changed (tests, ephemeral ports)."""
    return replace(cfg, server=replace(cfg.server, **changes))
