"""``spamgate milter`` and ``spamgate check``: the MTA hooks' command lines.

A configuration error is never treated as an outage: a bad argument, server
address, socket, policy or model makes ``check`` exit 78 (EX_CONFIG) and the
milter refuse to start, each with a one-line reason on stderr; so does a
``check`` with no standard input to read. Only a failure of the service
itself (unreachable, timed out, an error status, a failure while scoring
in-process) follows ``--fail-mode``; an empty message is neither (exit 65).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from spamgate.model.errors import ConfigurationError, SpamgateError
from spamgate.model.exit_codes import EX_CONFIG, EX_TEMPFAIL, exit_code
from spamgate.service.cli.client_args import add_client_options, client_options
from spamgate.service.mta.plan import FAIL_MODES, is_configuration_refusal

# Exit codes of ``spamgate check`` (procmail/maildrop branch on them); 75 and 78 as model.exit_codes.
EXIT_CODES = {"DELIVER": 0, "TAG": 1, "REROUTE": 2, "REJECT": 3, "DELETE": 4}
# sysexits.h EX_DATAERR, ``check``'s answer to an empty message. Not 75: nothing will change on a
# retry, and the MTA retried the same 0 bytes until the queue lifetime ended (attack review F8). Not a
# verdict: 0 with nothing on stdout could have a content_filter script re-inject an empty message, and
# "not scanned" headers would make a message out of nothing. Not 2 (every other command's failure):
# for ``check`` that is REROUTE. An MTA takes 65 as permanent (Postfix pipe(8) bounces, 5.6.0), and an
# empty message only comes from a script that lost the message, which someone has to look at.
EX_DATAERR = 65
# Message bytes sent for scanning, as the milter's ``--max-bytes`` (MilterConfig.max_bytes): the
# default and the least accepted value are the milter's.
MAX_SCAN_BYTES = 10 * 1024 * 1024
MIN_SCAN_BYTES = 1024
# gRPC target schemes passed through as written (anything else must be host:port).
_TARGET_SCHEMES = ("dns:", "unix:", "unix-abstract:", "ipv4:", "ipv6:", "vsock:")


class ConfigProblem(ConfigurationError):
    """A configuration error of an MTA hook (one line, shown as is)."""


def _one_line(errors: list[str]) -> str:
    return "; ".join(e.strip() for e in errors)


def check_server_address(target: str) -> None:
    """Raise ``ConfigProblem`` unless ``target`` is host:port (or a gRPC target with a scheme)."""
    if not target or any(c.isspace() for c in target):
        raise ConfigProblem(f"--server {target!r}: must be HOST:PORT")
    if target.startswith(_TARGET_SCHEMES):
        return
    host, colon, port = target.rpartition(":")
    if not colon or not host.strip("[]") or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigProblem(f"--server {target!r}: must be HOST:PORT with a port in 1..65535")


def check_milter_socket(spec: str) -> None:
    """Raise ``ConfigProblem`` unless ``spec`` is inet:PORT[@HOST], inet6:PORT[@HOST] or unix:/PATH."""
    kind, colon, rest = spec.partition(":")
    if colon and kind in ("inet", "inet6"):
        port = rest.partition("@")[0]
        if port.isdigit() and 1 <= int(port) <= 65535:
            return
        raise ConfigProblem(f"--socket {spec!r}: the port must be in 1..65535")
    path = rest if colon and kind in ("unix", "local") else spec if spec.startswith("/") else ""
    if not path:
        raise ConfigProblem(f"--socket {spec!r}: must be inet:PORT@HOST, inet6:PORT@HOST or unix:/PATH")
    folder = Path(path).parent
    if not folder.is_dir():
        raise ConfigProblem(f"--socket {spec!r}: no folder {str(folder)!r} for the socket")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigProblem(f"--socket {spec!r}: cannot create the socket in {str(folder)!r} (permission)")


def _usage_error(command: str) -> Callable[[str], NoReturn]:
    """An argparse ``error`` that exits EX_CONFIG with one line: ``check``'s exit 2 means REROUTE."""

    def error(message: str) -> NoReturn:
        print(f"spamgate {command}: configuration error: {message}", file=sys.stderr)
        sys.exit(EX_CONFIG)

    return error


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
    m.add_argument("--max-bytes", type=int, default=MAX_SCAN_BYTES, help="message bytes sent for scanning")
    m.add_argument("--no-status-header", action="store_true", help="do not add X-Spam-Status")
    add_client_options(m)
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
    c.add_argument(
        "--max-bytes",
        type=int,
        default=MAX_SCAN_BYTES,
        help="message bytes sent for scanning; the whole message is written (default %(default)s)",
    )
    c.add_argument("--client-ip", default="")
    c.add_argument("--mail-from", default="")
    c.add_argument("--rcpt", action="append", default=[])
    add_client_options(c)
    c.set_defaults(func=cmd_check, usage_error=_usage_error("check"))
    setattr(c, "error", _usage_error("check"))  # noqa: B010 (a method override mypy would refuse)


def cmd_milter(args: argparse.Namespace) -> int:
    try:
        from spamgate.service.mta.milter import MilterConfig, run
    except ImportError as exc:
        print(
            f"spamgate milter: pymilter is not installed ({exc}); `make setup` installs it", file=sys.stderr
        )
        return 2
    import milter

    from spamgate.service.runtime.logs import setup_logging

    try:
        check_server_address(args.server)
        check_milter_socket(args.socket)
        try:
            cfg = MilterConfig(
                args.server,
                args.timeout,
                args.fail_mode,
                args.max_bytes,
                not args.no_status_header,
                **client_options(args),
            )
        except ValueError as exc:  # MilterConfig refuses a --timeout or --max-bytes out of range
            raise ConfigProblem(str(exc)) from exc
        cfg.client().close()  # an unusable TLS or token file is a configuration error, found now
    except ConfigurationError as exc:  # ConfigProblem, TlsError, TokensError
        print(f"spamgate milter: configuration error: {exc}", file=sys.stderr)
        return exit_code(exc)
    setup_logging("json")
    print(f"spamgate milter on {args.socket} → {args.server} (fail mode {args.fail_mode})", flush=True)
    try:
        run(args.socket, cfg)
    except milter.error as exc:
        print(f"spamgate milter: cannot start on {args.socket}: {exc} (in use?)", file=sys.stderr)
        return 2
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Exit codes: 0-4 the verdict (``EXIT_CODES``), 65 an empty message, 75 unavailable in tempfail
    mode, 78 configuration (also no standard input to read, and a server refusal that means the hook's
    configuration: ``service.mta.plan.is_configuration_refusal``, a TLS handshake the hook failed too)."""
    from spamgate.service.mta.plan import Plan, plan, rewrite_message, unscanned_status

    try:
        classify = _prepare(args)
        raw = _read_message()
    except ConfigurationError as exc:
        return _configuration_error(exc)
    if not raw:
        print(f"spamgate check: no message on standard input (0 bytes); exit {EX_DATAERR}", file=sys.stderr)
        return EX_DATAERR
    try:
        # Only the first --max-bytes are scanned, as by the milter: a message above the server's limit
        # (27.3 MB against 25 MiB) was refused, RESOURCE_EXHAUSTED, and exit 75 had the MTA retry it
        # until the queue lifetime ended (attack review F8). The verdict applies to the whole message.
        resp = classify(raw[: args.max_bytes])
    except ConfigurationError as exc:  # one that shows only on the first call is no outage either
        return _configuration_error(exc)
    except Exception as exc:  # the filter failed on this message: the fail mode decides
        refused = _refused_as_configured(exc)
        if refused is not None:
            return _configuration_error(refused)
        why = _failure(exc)
        if args.fail_mode == "tempfail":
            print(f"spamgate check: spam filter unavailable ({why}); exit 75, retry later", file=sys.stderr)
            return EX_TEMPFAIL
        print(f"spamgate check: spam filter unavailable ({why}); passed unscanned", file=sys.stderr)
        # Through rewrite_message like every verdict: the header block's own line end (an LF line on a
        # CRLF message made a mixed header block), the sender's own X-Spam-Status removed, a leading mbox
        # "From " line kept first (the status line went above it: MTA attack review).
        unscanned = Plan("DELIVER", (unscanned_status("spam filter unavailable"),), "", "", "", "", "")
        sys.stdout.buffer.write(rewrite_message(raw, unscanned))
        return 0
    p = plan(resp)
    sys.stdout.buffer.write(rewrite_message(raw, p))
    sys.stdout.buffer.flush()
    return EXIT_CODES[p.action]


def _read_message() -> bytes:
    """Standard input's bytes; ``ConfigProblem`` if there is none to read: ``spamgate check <&-`` left
    ``sys.stdin`` None and raised AttributeError, a traceback and exit 1, which reads as TAG (F8)."""
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:
        raise ConfigProblem("cannot read the message from standard input: it is closed")
    try:
        data: bytes = stream.read()
    except (OSError, ValueError) as exc:  # a folder (IsADirectoryError), a descriptor closed under us
        raise ConfigProblem(f"cannot read the message from standard input: {exc}") from exc
    return data


def _configuration_error(exc: ConfigurationError) -> int:
    print(f"spamgate check: configuration error: {exc}", file=sys.stderr)
    return exit_code(exc)


def _refused_as_configured(exc: BaseException) -> ConfigurationError | None:
    """A ``ConfigProblem`` for a server refusal that means the hook's configuration, else None."""
    import grpc

    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        code = exc.code()
        if code is not None and is_configuration_refusal(code.name, str(exc.details())):
            return ConfigProblem(f"the server refused the call: {_failure(exc)}")
    return None


def _failure(exc: BaseException) -> str:
    import grpc

    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        return f"{exc.code().name}: {exc.details()}"
    return re.sub(r"\s+", " ", f"{type(exc).__name__}: {exc}")[:300]


def _prepare(args: argparse.Namespace) -> Callable[[bytes], Any]:
    """Check everything that is configuration; return the call that scores one message.

    Raises ``ConfigurationError`` only: nothing here depends on whether the service is up, so
    whatever fails here (a model named here that cannot be loaded is a ``DataError``) is the
    hook's configuration, and exit 2 would read as REROUTE.
    """
    from spamgate.service.api.client import SpamGateClient, envelope
    from spamgate.service.api.proto_convert import verdict_from_proto
    from spamgate.service.scoring.verdict import Envelope, Verdict

    if not args.timeout > 0:
        raise ConfigProblem(f"--timeout must be > 0, got {args.timeout}")
    if args.max_bytes < MIN_SCAN_BYTES:
        raise ConfigProblem(f"--max-bytes must be >= {MIN_SCAN_BYTES}, got {args.max_bytes}")
    env = envelope(args.client_ip, "", args.mail_from, args.rcpt)
    if args.server:
        check_server_address(args.server)
        if args.policy:
            raise ConfigProblem(
                "--policy is for in-process scoring; with --server the server's policy applies"
            )
        client = SpamGateClient(args.server, timeout=args.timeout, **client_options(args))  # TlsError, …

        def remote(raw: bytes) -> Verdict:
            with client as c:
                return verdict_from_proto(c.classify(raw, env))

        return remote
    connection = client_options(args)
    if any(connection.values()):
        raise ConfigProblem("--tls, --tls-* and --token-file are for --server")
    from spamgate.service.policy.policy_file import PolicyHolder
    from spamgate.service.policy.settings import PolicyError
    from spamgate.service.runtime.config import ConfigError, load_config
    from spamgate.service.scoring.engine import Engine
    from spamgate.service.scoring.model_holder import ModelHolder
    from spamgate.service.scoring.request_fields import checked_request

    try:
        cfg = load_config(None, {"model": {"path": args.model}, "policy": {"file": args.policy}})
        holder = ModelHolder()
        holder.load(cfg.model_path)
        policies = PolicyHolder(Path(args.policy) if args.policy else None)
    except (ConfigError, PolicyError) as exc:
        raise ConfigProblem(_one_line(exc.errors)) from exc
    except (SpamgateError, OSError) as exc:  # ArtifactError: the model named here cannot be loaded
        raise ConfigProblem(f"model {args.model or 'bundled'}: {exc}") from exc
    engine = Engine(holder, policies, cfg.server.max_message_bytes)

    plain = Envelope(env.client_ip, env.helo, env.mail_from, tuple(env.rcpt_to))

    def local(raw: bytes) -> Verdict:
        return engine.classify(checked_request(raw, plain), "check")

    return local
