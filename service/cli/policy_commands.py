"""``spamgate policy check | explain``: validate a policy offline, and show what it does to a message."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from spamgate.model.artifact import Artifact, load_artifact
from spamgate.model.bundled import bundled_model_path
from spamgate.model.errors import SpamgateError
from spamgate.model.exit_codes import fail
from spamgate.service.policy.settings import Policy


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("policy", help="validate and explain admin policies")
    psub = p.add_subparsers(dest="policy_command", required=True)
    c = psub.add_parser("check", help="validate a policy file; print its thresholds for a model")
    c.add_argument("file", type=Path)
    c.add_argument("--model", type=Path, help="model to resolve FPR thresholds against (default: bundled)")
    c.set_defaults(func=cmd_check)
    e = psub.add_parser("explain", help="show which rule decides a message and why")
    e.add_argument("message", help="message file, or - for stdin")
    e.add_argument("--policy", type=Path, help="policy file (default: built-in)")
    e.add_argument("--model", type=Path, help="model (default: bundled)")
    e.add_argument("--client-ip", default="")
    e.add_argument("--helo", default="")
    e.add_argument("--mail-from", default="")
    e.add_argument("--rcpt", action="append", default=[])
    e.set_defaults(func=cmd_explain)


def _load(policy: Path | None, model: Path | None) -> tuple[Policy, Artifact]:
    from spamgate.service.policy.policy_file import parse_policy

    return (parse_policy(policy) if policy else Policy()), load_artifact(model or bundled_model_path())


def cmd_check(args: argparse.Namespace) -> int:
    try:
        policy, artifact = _load(args.file, args.model)
    except SpamgateError as exc:  # PolicyError: 78; ArtifactError: 2
        return fail("policy check", exc)
    print(f"{args.file}: valid, version {policy.version}")
    which = (
        "new-site points (measured at sites the model was not trained on)"
        if artifact.site_reports == 0 and artifact.new_site_operating_points
        else "own-site points"
    )
    print(f"model {artifact.version}; FPR targets resolve against its {which}")
    for name, settings in [(policy.name, policy.settings), *((d.name, d.settings) for d in policy.domains)]:
        print(f"[{name}]")
        resolved = settings.resolve(artifact.policy_points)
        if not resolved:
            print("  every action off: all mail is delivered")
        for action, p, label in resolved:
            print(f"  {action.name:<8} p >= {p:.6f}   ({label})")
        if artifact.points_for(False) != artifact.policy_points:
            # Input with no header block at all (a message's text alone) resolves against other points.
            for action, p, _ in settings.resolve(artifact.points_for(False)):
                print(f"  {action.name:<8} p >= {p:.6f}   (text with no header block: text-only points)")
    sizes = {
        **{f"allow.{k}": v for k, v in policy.allow.sizes().items() if v},
        **{f"block.{k}": v for k, v in policy.block.sizes().items() if v},
    }
    print("lists: " + (", ".join(f"{k}={v}" for k, v in sizes.items()) or "none"))
    print(
        f"block action: {policy.block_action.name}; trusted authserv-ids: "
        f"{', '.join(sorted(policy.trusted_authserv_ids)) or 'none'}"
    )
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from spamgate.service.scoring.model_holder import ModelHolder
    from spamgate.service.scoring.verdict import Envelope, Request, build_verdict

    try:
        policy, artifact = _load(args.policy, args.model)
        raw = sys.stdin.buffer.read() if args.message == "-" else Path(args.message).read_bytes()
        holder = ModelHolder()
        holder.load(artifact.path or bundled_model_path())
        env = Envelope(args.client_ip, args.helo, args.mail_from, tuple(args.rcpt))
        v = build_verdict(Request(message=raw, envelope=env), holder, policy, max_message_bytes=1 << 40)
    except (SpamgateError, OSError) as exc:  # PolicyError: 78; RequestError (an empty message): 2
        return fail("policy explain", exc)
    print(f"verdict: {v.action.name}  (policy {v.policy_version}, strictest group decides)")
    if v.scanned:
        print(f"model {v.model_version}: spam probability {v.spam_probability:.6f}")
        for r in v.reasons:
            print(f"  {r.contribution:+8.3f}  {r.kind:<9} {r.name}")
    else:
        print("not scanned: lists decided for every recipient")
    for g in v.groups:
        who = ", ".join(g.recipients) or "(no recipients given)"
        why = g.list_decision or g.threshold or "no threshold reached"
        print(f"group [{g.policy}] {who}: {g.action.name} because {why}")
    return 0
