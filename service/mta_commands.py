"""``spamgate milter`` and ``spamgate check``: the MTA hooks' command lines."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from service.mta import FAIL_MODES

# Exit codes of ``spamgate check`` (procmail/maildrop branch on them).
EXIT_CODES = {"DELIVER": 0, "TAG": 1, "REROUTE": 2, "REJECT": 3, "DELETE": 4}
EX_TEMPFAIL = 75  # sysexits.h: the MTA retries later


def add_parsers(sub: Any) -> None:
    m = sub.add_parser("milter", help="run the milter for Postfix/Sendmail (needs pymilter)")
    m.add_argument(
        "--socket", default="inet:8894@127.0.0.1", help="inet:PORT@HOST or unix:/path (default %(default)s)"
    )
    m.add_argument("--server", default="127.0.0.1:50051", help="spamgate serve address")
    m.add_argument(
        "--timeout", type=float, default=5.0, help="seconds per verdict before the fail mode applies"
    )
    m.add_argument(
        "--fail-mode",
        choices=FAIL_MODES,
        default="tempfail",
        help="when spamgate is down: accept unscanned (open) or 451 (tempfail)",
    )
    m.add_argument("--max-bytes", type=int, default=10 * 1024 * 1024, help="message bytes sent for scanning")
    m.add_argument("--no-status-header", action="store_true", help="do not add X-Spam-Status")
    m.set_defaults(func=cmd_milter)

    c = sub.add_parser(
        "check", help="pipe filter: message on stdin, tagged message on stdout, exit code per verdict"
    )
    where = c.add_mutually_exclusive_group()
    where.add_argument("--server", help="spamgate serve address (default: score in-process)")
    where.add_argument("--model", help="artifact folder for in-process scoring (default: bundled)")
    c.add_argument("--policy", help="policy file for in-process scoring")
    c.add_argument("--timeout", type=float, default=10.0)
    c.add_argument("--fail-mode", choices=FAIL_MODES, default="tempfail")
    c.add_argument("--client-ip", default="")
    c.add_argument("--mail-from", default="")
    c.add_argument("--rcpt", action="append", default=[])
    c.set_defaults(func=cmd_check)


def cmd_milter(args: argparse.Namespace) -> int:
    try:
        from service.milter import MilterConfig, run
    except ImportError as exc:
        print(
            f"spamgate milter: pymilter is not installed ({exc}); `make setup` installs it", file=sys.stderr
        )
        return 2
    from service.logs import setup_logging

    try:
        cfg = MilterConfig(
            args.server, args.timeout, args.fail_mode, args.max_bytes, not args.no_status_header
        )
    except ValueError as exc:
        print(f"spamgate milter: {exc}", file=sys.stderr)
        return 2
    setup_logging("json")
    print(f"spamgate milter on {args.socket} → {args.server} (fail mode {args.fail_mode})", flush=True)
    run(args.socket, cfg)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import grpc

    from service.mta import plan, rewrite_message, unscanned_status

    raw = sys.stdin.buffer.read()
    try:
        resp = _classify(args, raw)
    except (grpc.RpcError, OSError, ValueError) as exc:
        if args.fail_mode == "tempfail":
            print(f"spamgate check: {exc}", file=sys.stderr)
            return EX_TEMPFAIL
        name, value = unscanned_status("spam filter unavailable")
        sys.stdout.buffer.write(f"{name}: {value}\n".encode() + raw)
        return 0
    p = plan(resp)
    sys.stdout.buffer.write(rewrite_message(raw, p))
    sys.stdout.buffer.flush()
    return EXIT_CODES[p.action]


def _classify(args: argparse.Namespace, raw: bytes) -> Any:
    from service.client import SpamGateClient, envelope

    env = envelope(args.client_ip, "", args.mail_from, args.rcpt)
    if args.server:
        with SpamGateClient(args.server, timeout=args.timeout) as c:
            return c.classify(raw, env)
    from pathlib import Path

    from service.config import load_config
    from service.policy_file import PolicyHolder
    from service.proto_gen import spamgate_pb2 as pb
    from service.registry import ModelHolder
    from service.server import Engine, request_from_proto, verdict_to_proto

    cfg = load_config(None, {"model": {"path": args.model}, "policy": {"file": args.policy}})
    holder = ModelHolder()
    holder.load(cfg.model_path)
    engine = Engine(
        holder, PolicyHolder(Path(args.policy) if args.policy else None), cfg.server.max_message_bytes
    )
    req = pb.ClassifyRequest(message=raw, envelope=env)
    return verdict_to_proto(engine.classify(request_from_proto(req), "check"))
