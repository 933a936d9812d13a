"""``spamgate models …``, ``spamgate feedback`` and ``spamgate retrain``: the model lifecycle CLI."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from model.artifact import ArtifactError, load_artifact

DEFAULT_REGISTRY = Path("models")


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
    p = ms.add_parser("publish", help="copy a version to a distribution folder (served as static files)")
    reg(p)
    p.add_argument("version", nargs="?", help="default: the active version")
    p.add_argument("--to", type=Path, required=True)
    p.set_defaults(func=cmd_publish)
    p = ms.add_parser("pull", help="fetch new versions from a distribution folder or HTTP(S) URL")
    reg(p)
    p.add_argument("--from", dest="source", required=True)
    p.add_argument(
        "--activate",
        choices=("auto", "manual"),
        default="manual",
        help="auto: activate the newest pulled version",
    )
    p.set_defaults(func=cmd_pull)

    f = sub.add_parser("feedback", help="report messages as spam or ham")
    lab = f.add_mutually_exclusive_group(required=True)
    lab.add_argument("--spam", action="store_true")
    lab.add_argument("--ham", action="store_true")
    f.add_argument("files", nargs="+")
    where = f.add_mutually_exclusive_group(required=True)
    where.add_argument("--server", help="host:port of spamgate serve (ReportFeedback)")
    where.add_argument("--db", type=Path, help="write to this feedback store directly")
    f.add_argument("--reporter", default="cli")
    f.set_defaults(func=cmd_feedback)

    r = sub.add_parser("retrain", help="train a candidate on corpora + feedback; promote only if not worse")
    reg(r)
    r.add_argument(
        "--corpus", action="append", default=[], help="base corpus (repeatable; layouts as in train)"
    )
    r.add_argument("--feedback", type=Path, help="feedback store (SQLite)")
    r.add_argument("--holdout", type=float, default=0.15, help="newest fraction held back for the gate")
    r.add_argument("--roca-tolerance", type=float, default=0.05, help="relative slack on 1-ROCA%%")
    r.add_argument("--fpr-tolerance", type=float, default=0.0005, help="absolute slack on balanced FPR")
    r.add_argument(
        "--warm-start",
        action="store_true",
        help="start from the active model's weights (SGD losses only; the exact solvers ignore it)",
    )
    r.add_argument("--no-activate", action="store_true", help="write the candidate but never activate it")
    r.add_argument("--jobs", type=int, default=-1)
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_retrain)


def _registry(args: argparse.Namespace) -> Any:
    from service.model_registry import ModelRegistry
    from service.server import signature_check

    return ModelRegistry(args.registry, signature_check(str(args.public_key)) if args.public_key else None)


def _fail(cmd: str, exc: Exception) -> int:
    print(f"spamgate {cmd}: {exc}", file=sys.stderr)
    return 2


def cmd_list(args: argparse.Namespace) -> int:
    r = _registry(args)
    active = r.active()
    for v in r.versions():
        m = json.loads((r.path(v) / "manifest.json").read_text())
        gate = m.get("gate", {})
        signed = "signed" if (r.path(v) / "signature.ed25519").exists() else "unsigned"
        extra = f" gate={'promote' if gate.get('promote') else 'hold'}" if gate else ""
        print(
            f"{'*' if v == active else ' '} {v}  {m.get('created', '')}  {m['training']['messages']} msgs  "
            f"{signed}{extra}"
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    r = _registry(args)
    version = args.version or r.active()
    if not version:
        return _fail("models show", ValueError("no active version"))
    m = json.loads((r.path(version) / "manifest.json").read_text())
    summary = {k: m.get(k) for k in ("version", "created", "feature_version", "operating_points", "gate")}
    summary["training"] = {
        k: m["training"].get(k) for k in ("messages", "corpora", "command", "train_seconds")
    }
    summary["validation"] = {k: m["validation"].get(k) for k in ("roc_auc", "one_minus_roca_pct", "ece")}
    print(json.dumps(summary, indent=1))
    return 0


def cmd_activate(args: argparse.Namespace) -> int:
    from service.model_registry import RegistryError

    try:
        _registry(args).activate(args.version)
    except (RegistryError, ArtifactError) as exc:
        return _fail("models activate", exc)
    print(f"active: {args.version}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from service.model_registry import RegistryError

    try:
        version = _registry(args).rollback()
    except (RegistryError, ArtifactError) as exc:
        return _fail("models rollback", exc)
    print(f"rolled back; active: {version}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from service.model_registry import RegistryError

    try:
        gone = _registry(args).prune(args.keep)
    except RegistryError as exc:
        return _fail("models prune", exc)
    print(f"deleted {len(gone)} version(s): {' '.join(gone)}")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    try:
        version = _registry(args).add(args.model_dir)
    except (ArtifactError, OSError) as exc:
        return _fail("models add", exc)
    print(f"added {version}")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from model.signing import generate_keypair

    try:
        priv, pub = generate_keypair(args.out)
    except OSError as exc:
        return _fail("models keygen", exc)
    print(f"private key: {priv} (keep it secret)\npublic key:  {pub} (give it to gateways)")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from model.signing import load_private_key, sign_artifact

    try:
        load_artifact(args.model_dir)  # never sign something that does not verify
        path = sign_artifact(args.model_dir, load_private_key(args.key))
    except (ArtifactError, OSError, ValueError) as exc:
        return _fail("models sign", exc)
    print(f"signed: {path}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from model.signing import load_public_key, verify_artifact

    try:
        art = load_artifact(args.model_dir)
        verify_artifact(args.model_dir, load_public_key(args.public_key))
    except (ArtifactError, OSError, ValueError) as exc:
        return _fail("models verify", exc)
    print(f"OK: {art.version}: checksums and signature valid")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from service.shipping import ShippingError, publish

    r = _registry(args)
    version = args.version or r.active()
    if not version:
        return _fail("models publish", ValueError("no version given and none active"))
    try:
        publish(r.path(version), args.to)
    except (ArtifactError, ShippingError, OSError) as exc:
        return _fail("models publish", exc)
    print(f"published {version} to {args.to}")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from service.model_registry import RegistryError
    from service.shipping import ShippingError, pull

    r = _registry(args)
    try:
        new = pull(args.source, r)
        if new and args.activate == "auto":
            r.activate(new[-1])
    except (ShippingError, RegistryError, ArtifactError, OSError) as exc:
        return _fail("models pull", exc)
    print(f"pulled {len(new)} version(s): {' '.join(new) or '-'}; active: {r.active()}")
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    import grpc

    label = "spam" if args.spam else "ham"
    try:
        if args.db:
            from service.feedback import FeedbackStore

            store = FeedbackStore(args.db)
            for f in args.files:
                s = store.add(Path(f).read_bytes(), label, args.reporter)
                print(f"{f}: stored {label}{' (duplicate)' if s.duplicate else ''} {s.sha256[:16]}")
            store.close()
            return 0
        from service.client import SpamGateClient
        from service.proto_gen import spamgate_pb2 as pb

        lab = pb.FEEDBACK_LABEL_SPAM if args.spam else pb.FEEDBACK_LABEL_HAM
        with SpamGateClient(args.server) as c:
            for f in args.files:
                resp = c.stub.ReportFeedback(
                    pb.FeedbackRequest(message=Path(f).read_bytes(), label=lab, reporter=args.reporter),
                    timeout=30,
                )
                dup = " (duplicate)" if resp.duplicate else ""
                print(f"{f}: stored {label}{dup} {resp.message_sha256[:16]}")
    except grpc.RpcError as exc:
        return _fail("feedback", Exception(f"{exc.code().name}: {exc.details()}"))
    except (OSError, ValueError) as exc:
        return _fail("feedback", exc)
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    import shlex

    from model.features import FeatureConfig
    from service.model_registry import RegistryError
    from training.corpora import CorpusError, LabelledMessage, read_corpus
    from training.fit import TrainConfig
    from training.retrain import GateConfig, after, corpus_summary, retrain

    try:
        r = _registry(args)
        active = r.load(r.active()) if r.active() else None
        messages: list[LabelledMessage] = []
        corpora = []
        for c in args.corpus:
            msgs = list(read_corpus(c))
            messages.extend(msgs)
            corpora.append(corpus_summary(Path(c).name, msgs))
        if args.feedback:
            from service.feedback import FeedbackStore

            store = FeedbackStore(args.feedback)
            fb = after(messages, list(store.labelled()))
            store.close()
            messages.extend(fb)
            corpora.append(corpus_summary(f"feedback:{args.feedback.name}", fb))
        if not messages:
            raise ValueError("nothing to train on: give --corpus and/or --feedback")
        features = active.features if active else FeatureConfig()
        train_cfg = TrainConfig(**active.manifest["training"]["train_config"]) if active else TrainConfig()
        gate = GateConfig(args.roca_tolerance, args.fpr_tolerance, args.holdout)
        args.registry.mkdir(parents=True, exist_ok=True)
        path, decision = retrain(
            messages,
            active,
            args.registry,
            features,
            train_cfg,
            gate,
            corpora,
            warm_start=args.warm_start,
            n_jobs=args.jobs,
            progress=not args.quiet,
            command=shlex.join(["spamgate", *sys.argv[1:]]),
        )
        if decision["promote"] and not args.no_activate:
            r.activate(path.name)
    except (CorpusError, RegistryError, ArtifactError, OSError, ValueError) as exc:
        return _fail("retrain", exc)
    print(json.dumps({"candidate": path.name, **decision}, indent=1))
    print(
        f"{'PROMOTED' if decision['promote'] and not args.no_activate else 'NOT promoted'}: {decision['why']}"
    )
    return 0 if decision["promote"] else 1
