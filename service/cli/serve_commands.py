"""``spamgate serve`` and ``spamgate classify``: argument handling; the work is elsewhere."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from spamgate.model.errors import SpamgateError
from spamgate.model.exit_codes import exit_code, fail
from spamgate.service.cli.client_args import add_client_options, client_options, seconds
from spamgate.service.runtime.config import DEFAULT_PORT, ConfigError, load_config


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("serve", help="run the gRPC verdict service")
    s.add_argument("--config", type=Path, help="TOML configuration file")
    s.add_argument("--address", help="listen address (default 127.0.0.1)")
    s.add_argument("--port", type=int, help=f"listen port (default {DEFAULT_PORT}; 0 picks a free one)")
    s.add_argument("--model", help="model artifact folder (default: the bundled model)")
    s.add_argument("--metrics-port", type=int, help="Prometheus port (default 9464; 0 disables)")
    s.add_argument("--log-format", choices=("json", "text"), help="log lines as JSON (default) or text")
    s.add_argument("--policy", help="admin policy TOML file (default: built-in balanced policy)")
    s.add_argument("--processes", type=int, help="worker processes sharing the port (default 1)")
    s.set_defaults(func=cmd_serve)

    c = sub.add_parser("classify", help="verdicts for messages, from a server or in-process")
    c.add_argument("paths", nargs="+", help="message files, folders of messages, or - for stdin")
    where = c.add_mutually_exclusive_group()
    where.add_argument("--server", help="host:port of a running spamgate serve (or unix:PATH)")
    where.add_argument(
        "--model", type=Path, help="score in-process with this artifact (default: bundled model)"
    )
    c.add_argument("--config", type=Path, help="TOML config for in-process policy and limits")
    c.add_argument("--policy", help="admin policy TOML file for in-process scoring")
    c.add_argument("--client-ip", default="", help="SMTP client IP (envelope)")
    c.add_argument("--helo", default="", help="SMTP HELO name (envelope)")
    c.add_argument("--mail-from", default="", help="envelope sender (envelope)")
    c.add_argument("--rcpt", action="append", default=[], help="envelope recipient (repeatable)")
    c.add_argument("--json", action="store_true", help="one JSON object per line")
    c.add_argument("--timeout", type=seconds, default=10.0, help="per-message deadline with --server (s)")
    add_client_options(c)
    c.set_defaults(func=cmd_classify)


def cmd_serve(args: argparse.Namespace) -> int:
    overrides = {
        "server": {"address": args.address, "port": args.port, "processes": args.processes},
        "model": {"path": args.model},
        "metrics": {"port": args.metrics_port},
        "logging": {"format": args.log_format},
        "policy": {"file": args.policy},
    }
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"spamgate serve: {exc}", file=sys.stderr)
        return exit_code(exc)
    if cfg.server.processes > 1:
        from spamgate.service.runtime.workers import run_workers

        return run_workers(cfg)
    from spamgate.service.runtime.workers import serve_forever

    return serve_forever(cfg)


def iter_messages(paths: list[str]) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) for every file named, every file in folders named (sorted), or stdin."""
    for p in paths:
        if p == "-":
            yield "-", sys.stdin.buffer.read()
            continue
        path = Path(p)
        if path.is_dir():
            for f in sorted(x for x in path.rglob("*") if x.is_file()):
                yield str(f), f.read_bytes()
        else:
            yield str(path), path.read_bytes()


def _print(name: str, d: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"path": name, **d}), flush=True)
    else:
        reasons = ", ".join(f"{r['name']}{r['contribution']:+.2f}" for r in d.get("reasons", [])[:3])
        print(
            f"{name}\t{d['action']}\tp={d['spam_probability']:.4f}\t{d['model_version']}\t{reasons}",
            flush=True,
        )


def _envelope(args: argparse.Namespace) -> Any:
    from spamgate.service.scoring.verdict import Envelope

    return Envelope(args.client_ip, args.helo, args.mail_from, tuple(args.rcpt))


def cmd_classify(args: argparse.Namespace) -> int:
    try:
        messages = iter_messages(args.paths)
        if args.server:
            return _classify_remote(args, messages)
        return _classify_local(args, messages)
    except (SpamgateError, OSError) as exc:  # TlsError, TokensError (an unusable file): 78
        return fail("classify", exc)


def _classify_local(args: argparse.Namespace, messages: Iterator[tuple[str, bytes]]) -> int:
    from spamgate.service.policy.policy_file import PolicyHolder
    from spamgate.service.scoring.engine import Engine
    from spamgate.service.scoring.model_holder import ModelHolder
    from spamgate.service.scoring.verdict import Request, RequestError, verdict_dict

    # ConfigError, PolicyError: 78; ArtifactError: 2 (cmd_classify's handler)
    cfg = load_config(
        args.config,
        {"model": {"path": str(args.model) if args.model else None}, "policy": {"file": args.policy}},
    )
    holder = ModelHolder(cfg.limits)
    holder.load(cfg.model_path)
    policies = PolicyHolder(Path(cfg.policy.file) if cfg.policy.file else None)
    engine = Engine(holder, policies, cfg.server.max_message_bytes)
    status = 0
    for name, raw in messages:
        try:
            v = engine.classify(Request(message=raw, envelope=_envelope(args), correlation_id=name), "local")
        except RequestError as exc:
            print(f"{name}: {exc.message}", file=sys.stderr)
            status = 1
            continue
        _print(name, verdict_dict(v), args.json)
    return status


def _classify_remote(args: argparse.Namespace, messages: Iterator[tuple[str, bytes]]) -> int:
    import grpc

    from spamgate.service.api.client import SpamGateClient, envelope
    from spamgate.service.api.proto_convert import verdict_from_proto
    from spamgate.service.scoring.verdict import verdict_dict

    status = 0
    with SpamGateClient(args.server, timeout=args.timeout, **client_options(args)) as client:
        for name, raw in messages:
            try:
                e = _envelope(args)
                env = envelope(e.client_ip, e.helo, e.mail_from, e.rcpt_to)
                r = client.classify(raw, env, correlation_id=name)
            except grpc.RpcError as exc:
                print(f"{name}: {exc.code().name}: {exc.details()}", file=sys.stderr)
                status = 1
                if exc.code() == grpc.StatusCode.UNAVAILABLE:
                    return 3
                continue
            _print(name, verdict_dict(verdict_from_proto(r)), args.json)
    return status
