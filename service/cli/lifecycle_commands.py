"""``spamgate models …``, ``spamgate feedback`` and ``spamgate retrain``: the model lifecycle CLI."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from spamgate.model.artifact import ArtifactError, load_artifact
from spamgate.model.errors import ConfigurationError, SpamgateError
from spamgate.model.exit_codes import EX_CONFIG, FAILURE, fail
from spamgate.service.cli.client_args import seconds

DEFAULT_REGISTRY = Path("models")
# service.lifecycle.shipping.DEFAULT_MAX_BYTES (not imported: cheap CLI start)
_DEFAULT_MAX_BYTES = 512 * 1024 * 1024
_DEFAULT_TIMEOUT = 600.0  # service.lifecycle.shipping.DEFAULT_TIMEOUT
_DEFAULT_MIN_RATE = 64 * 1024  # service.lifecycle.shipping.DEFAULT_MIN_RATE
_DEFAULT_VALID_DAYS = 30  # service.lifecycle.ship_index.DEFAULT_VALID_DAYS


def _byte_count(text: str) -> int:
    """``--max-bytes``: a byte count with an optional K, M or G (binary) suffix."""
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
    digits = text[:-1] if scale > 1 else text
    if not digits.isdigit() or int(digits) < 1:
        raise argparse.ArgumentTypeError(f"not a positive byte count: {text!r}")
    return int(digits) * scale


def _valid_days(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--valid-days",
        type=int,
        default=_DEFAULT_VALID_DAYS,
        metavar="DAYS",
        help="gateways refuse the index this many days after it is written (default 30); publish before",
    )


def add_parsers(sub: Any) -> None:
    m = sub.add_parser("models", help="model registry, signing and shipping")
    ms = m.add_subparsers(dest="models_command", required=True)

    def reg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--registry", type=Path, default=DEFAULT_REGISTRY, help="registry folder (default ./models)"
        )
        p.add_argument("--public-key", type=Path, help="refuse versions not signed by this Ed25519 key")

    p = ms.add_parser("list", help="versions, newest last; * marks the active one")
    reg(p)
    p.set_defaults(func=cmd_list)
    p = ms.add_parser("show", help="a version's manifest summary")
    reg(p)
    p.add_argument("version", nargs="?", help="default: the active version")
    p.set_defaults(func=cmd_show)
    p = ms.add_parser("activate", help="verify and activate a version (a running service follows)")
    reg(p)
    p.add_argument("version")
    p.set_defaults(func=cmd_activate)
    p = ms.add_parser("rollback", help="re-activate the previously active version")
    reg(p)
    p.set_defaults(func=cmd_rollback)
    p = ms.add_parser("prune", help="delete old versions (never the active one)")
    reg(p)
    p.add_argument("--keep", type=int, default=5)
    p.set_defaults(func=cmd_prune)
    p = ms.add_parser("add", help="import an artifact folder into the registry")
    reg(p)
    p.add_argument("model_dir", type=Path)
    p.set_defaults(func=cmd_add)
    p = ms.add_parser("keygen", help="create an Ed25519 signing key pair (PREFIX, PREFIX.pub)")
    p.add_argument("--out", type=Path, required=True, metavar="PREFIX")
    p.set_defaults(func=cmd_keygen)
    p = ms.add_parser("sign", help="sign a model version's manifest")
    p.add_argument("--key", type=Path, required=True, metavar="PREFIX")
    p.add_argument("model_dir", type=Path)
    p.set_defaults(func=cmd_sign)
    p = ms.add_parser("verify", help="verify checksums and signature (non-zero exit with the reason)")
    p.add_argument("--public-key", type=Path, required=True)
    p.add_argument("model_dir", type=Path)
    p.set_defaults(func=cmd_verify)
    p = ms.add_parser(
        "publish", help="copy a version to a distribution folder (served as static files), mark it current"
    )
    reg(p)
    p.add_argument("version", nargs="?", help="default: the active version")
    p.add_argument("--to", type=Path, required=True)
    p.add_argument("--key", type=Path, metavar="PREFIX", help="Ed25519 private key: sign the index")
    p.add_argument(
        "--not-current", action="store_true", help="offer the version but leave the index's current as is"
    )
    _valid_days(p)
    p.set_defaults(func=cmd_publish)
    p = ms.add_parser("withdraw", help="recall a published version: gateways never pull or auto-activate it")
    p.add_argument("version")
    p.add_argument("--to", type=Path, required=True, help="the distribution folder")
    p.add_argument("--key", type=Path, metavar="PREFIX", help="Ed25519 private key: sign the index")
    p.add_argument("--current", help="the version to mark current instead (default: the newest offered)")
    _valid_days(p)
    p.set_defaults(func=cmd_withdraw)
    p = ms.add_parser("pull", help="fetch new versions from a distribution folder or HTTP(S) URL")
    reg(p)
    p.add_argument("--from", dest="source", required=True)
    p.add_argument(
        "--activate",
        choices=("auto", "manual"),
        default="manual",
        help="auto: activate the version the publisher marks current (needs --public-key)",
    )
    p.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="without --public-key: also pull over plain http:// and from an old-format index",
    )
    p.add_argument(
        "--max-bytes",
        type=_byte_count,
        default=_DEFAULT_MAX_BYTES,
        metavar="N[K|M|G]",
        help="refuse a pull writing more than this in all (default 512M)",
    )
    p.add_argument(
        "--timeout",
        type=seconds,
        default=_DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="abandon the pull (nothing kept) when it is not done in this time (default 600)",
    )
    p.add_argument(
        "--min-rate",
        type=_byte_count,
        default=_DEFAULT_MIN_RATE,
        metavar="N[K|M|G]",
        help="abandon a file not done within 30 s + its size at this many bytes/s (default 64K)",
    )
    p.set_defaults(func=cmd_pull)

    f = sub.add_parser("feedback", help="report messages as spam or ham")
    lab = f.add_mutually_exclusive_group(required=True)
    lab.add_argument("--spam", action="store_true")
    lab.add_argument("--ham", action="store_true")
    f.add_argument("files", nargs="+")
    where = f.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--server", help="spamgate serve's admin socket (unix:PATH) or host:port (ReportFeedback)"
    )
    where.add_argument("--db", type=Path, help="write to this feedback store directly")
    f.add_argument("--reporter", default="cli")
    from spamgate.service.cli.client_args import add_client_options

    add_client_options(f)
    f.set_defaults(func=cmd_feedback)

    r = sub.add_parser("retrain", help="train a candidate on corpora + feedback; promote only if not worse")
    reg(r)
    from spamgate.service.cli.retrain_command import add_retrain_arguments

    add_retrain_arguments(r)


class _ConfigProblem(ConfigurationError):
    """A command line that cannot work (an unusable key file, options that exclude each other): exit 78."""


def _public_key(args: argparse.Namespace) -> Any:
    """``--public-key`` loaded, or None; ``_ConfigProblem`` when the file is not a usable key."""
    if not getattr(args, "public_key", None):
        return None
    from spamgate.model.signing import KeyFileError, load_public_key

    try:
        return load_public_key(args.public_key)
    except (OSError, KeyFileError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise _ConfigProblem(f"--public-key {args.public_key}: {why}") from exc


def _private_key(path: Path | None) -> Any:
    if path is None:
        return None
    from spamgate.model.signing import KeyFileError, load_private_key

    try:
        return load_private_key(path)
    except (OSError, KeyFileError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise _ConfigProblem(f"--key {path}: {why}") from exc


def _registry(args: argparse.Namespace, key: Any = None) -> Any:
    """The registry, verifying signatures by ``--public-key`` (an unusable key file exits 78)."""
    from spamgate.model.signing import verify_artifact
    from spamgate.service.lifecycle.model_registry import ModelRegistry

    if key is None:
        try:
            key = _public_key(args)
        except _ConfigProblem as exc:
            raise SystemExit(fail("models", exc)) from exc
    return ModelRegistry(args.registry, (lambda path: verify_artifact(path, key)) if key else None)


def _manifest(path: Path) -> dict[str, Any]:
    """A version's manifest as a dict; ``ArtifactError`` saying why when it is not one."""
    try:
        m = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise ArtifactError(f"{path / 'manifest.json'}: unreadable manifest: {exc}") from exc
    if not isinstance(m, dict):
        raise ArtifactError(f"{path / 'manifest.json'}: manifest is not a JSON object")
    return m


def _section(manifest: dict[str, Any], key: str) -> dict[str, Any]:
    value = manifest.get(key)
    return value if isinstance(value, dict) else {}


def cmd_list(args: argparse.Namespace) -> int:
    """One line per version; entries that are not valid versions are listed as such (and ignored)."""
    r = _registry(args)
    active = r.active()
    for v in r.versions():
        try:
            m = _manifest(r.path(v))
        except SpamgateError as exc:
            print(f"! {v}  invalid: {exc}")
            continue
        if m.get("version") != v:
            print(f"! {v}  invalid: manifest says version {m.get('version')!r}")
            continue
        gate, training = _section(m, "gate"), _section(m, "training")
        signed = "signed" if (r.path(v) / "signature.ed25519").exists() else "unsigned"
        extra = f" gate={'promote' if gate.get('promote') else 'hold'}" if gate else ""
        mark = "*" if v == active else " "
        print(f"{mark} {v}  {m.get('created', '')}  {training.get('messages', '?')} msgs  {signed}{extra}")
    for name, why in r.invalid_entries():
        print(f"! {name}  invalid: {why}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from spamgate.service.lifecycle.model_registry import RegistryError

    r = _registry(args)
    version = args.version or r.active()
    try:
        if not version:
            raise RegistryError("no active version")
        m = _manifest(r.path(version))  # RegistryError for an invalid name
    except SpamgateError as exc:
        return fail("models show", exc)
    summary = {k: m.get(k) for k in ("version", "created", "feature_version", "operating_points", "gate")}
    training, validation = _section(m, "training"), _section(m, "validation")
    summary["training"] = {k: training.get(k) for k in ("messages", "corpora", "command", "train_seconds")}
    summary["validation"] = {k: validation.get(k) for k in ("roc_auc", "one_minus_roca_pct", "ece")}
    print(json.dumps(summary, indent=1))
    return 0


def cmd_activate(args: argparse.Namespace) -> int:
    try:
        _registry(args).activate(args.version)
    except (SpamgateError, OSError) as exc:
        return fail("models activate", exc)
    print(f"active: {args.version}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    try:
        version = _registry(args).rollback()
    except (SpamgateError, OSError) as exc:
        return fail("models rollback", exc)
    print(f"rolled back; active: {version}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    try:
        gone = _registry(args).prune(args.keep)
    except (SpamgateError, OSError) as exc:
        return fail("models prune", exc)
    print(f"deleted {len(gone)} version(s): {' '.join(gone)}")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    try:
        version = _registry(args).add(args.model_dir)
    except (SpamgateError, OSError) as exc:
        return fail("models add", exc)
    print(f"added {version}")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from spamgate.model.signing import generate_keypair

    try:
        priv, pub = generate_keypair(args.out)
    except OSError as exc:
        return fail("models keygen", exc)
    print(f"private key: {priv} (keep it secret)\npublic key:  {pub} (give it to gateways)")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from spamgate.model.signing import load_private_key, sign_artifact

    try:
        load_artifact(args.model_dir)  # never sign something that does not verify
        path = sign_artifact(args.model_dir, load_private_key(args.key))
    except (SpamgateError, OSError) as exc:  # KeyFileError: 78
        return fail("models sign", exc)
    print(f"signed: {path}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from spamgate.model.signing import load_public_key, verify_artifact

    try:
        art = load_artifact(args.model_dir)
        verify_artifact(args.model_dir, load_public_key(args.public_key))
    except (SpamgateError, OSError) as exc:  # KeyFileError: 78; SignatureError: 2
        return fail("models verify", exc)
    print(f"OK: {art.version}: checksums and signature valid")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from spamgate.service.lifecycle.model_registry import RegistryError
    from spamgate.service.lifecycle.shipping import publish

    r = _registry(args)
    try:
        key = _private_key(args.key)
        version = args.version or r.active()
        if not version:
            raise RegistryError("no version given and none active")
        publish(r.path(version), args.to, key, make_current=not args.not_current, valid_days=args.valid_days)
    except (SpamgateError, OSError) as exc:  # _ConfigProblem (the key): 78
        return fail("models publish", exc)
    signed = "signed index" if key is not None else "UNSIGNED index"
    print(f"published {version} to {args.to} ({signed}{'' if args.not_current else ', current'})")
    return 0


def cmd_withdraw(args: argparse.Namespace) -> int:
    from spamgate.service.lifecycle.shipping import withdraw

    try:
        index = withdraw(args.to, args.version, _private_key(args.key), args.current, args.valid_days)
    except (SpamgateError, OSError) as exc:  # _ConfigProblem (the key): 78
        return fail("models withdraw", exc)
    print(f"withdrew {args.version}; current: {index.current or '-'}")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    """Exit 0 pulled (or nothing new), 1 the pull failed (nothing kept) or the version to activate was
    withdrawn once (what was fetched is kept), 78 an unusable command line."""
    from spamgate.service.lifecycle.shipping import (
        ShippingError,
        activation_refusal,
        plain_http_refusal,
        pull,
    )

    try:
        key = _public_key(args)
        if key is not None and args.allow_unsigned:
            raise _ConfigProblem("--allow-unsigned and --public-key exclude each other")
        if key is None and args.activate == "auto":
            raise _ConfigProblem(
                "--activate auto needs --public-key: an unsigned version is never activated automatically"
            )
        refusal = None if key is not None or args.allow_unsigned else plain_http_refusal(args.source)
        if refusal is not None:
            raise _ConfigProblem(refusal)
    except _ConfigProblem as exc:
        return fail("models pull", exc)
    r = _registry(args, key)
    try:
        result = pull(
            args.source,
            r,
            key,
            allow_unsigned=args.allow_unsigned,
            max_bytes=args.max_bytes,
            timeout=args.timeout,
            min_rate=args.min_rate,
        )
        if args.activate == "auto" and result.current and result.current != r.active():
            refusal = activation_refusal(result, result.current)
            if refusal is not None:
                raise ShippingError(refusal)
            r.activate(result.current)  # verified again (signature by the key) on the way
    except (SpamgateError, OSError) as exc:
        # pull's own outcome for a failed pull is 1 (nothing kept); a configuration error stays 78
        code = fail("models pull", exc)
        return code if code == EX_CONFIG else 1
    active = r.active()
    print(
        f"pulled {len(result.new)} version(s): {' '.join(result.new) or '-'}; "
        f"publisher's current: {result.current or '-'}; active: {active or '-'}"
        + ("" if result.signed else " (UNSIGNED: no --public-key; activate by hand after checking)")
    )
    for v in result.withdrawn_here:
        print(f"warning: {v} is withdrawn by the publisher{' and is ACTIVE here' if v == active else ''}")
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    import grpc

    label = "spam" if args.spam else "ham"
    try:
        if args.db:
            from spamgate.service.lifecycle.feedback_store import FeedbackStore

            store = FeedbackStore(args.db)
            for f in args.files:
                s = store.add(Path(f).read_bytes(), label, args.reporter)
                print(f"{f}: stored {label}{' (duplicate)' if s.duplicate else ''} {s.sha256[:16]}")
            store.close()
            return 0
        from spamgate.service.api.client import SpamGateClient
        from spamgate.service.cli.client_args import client_options

        with SpamGateClient(args.server, **client_options(args)) as c:
            for f in args.files:
                resp = c.report_feedback(Path(f).read_bytes(), bool(args.spam), args.reporter, timeout=30)
                dup = " (duplicate)" if resp.duplicate else ""
                print(f"{f}: stored {label}{dup} {resp.message_sha256[:16]}")
    except grpc.RpcError as exc:
        print(f"spamgate feedback: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return FAILURE
    except (SpamgateError, OSError) as exc:  # TlsError, TokensError: 78; BadReport (an empty file): 2
        return fail("feedback", exc)
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from spamgate.service.cli.retrain_command import cmd_retrain as run

    return run(args)
