"""The ``spamgate`` command: one entry point, subcommands registered by each part."""

from __future__ import annotations

import argparse
import sys

from spamgate.service.cli import lifecycle_commands, mta_commands, policy_commands
from spamgate.service.cli import serve_commands as service_commands
from spamgate.training import train_commands as training_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spamgate", description="Spam verdicts for mail gateways.")
    sub = parser.add_subparsers(dest="command", required=True)
    training_cli.add_parsers(sub)
    service_commands.add_parsers(sub)
    policy_commands.add_parsers(sub)
    lifecycle_commands.add_parsers(sub)
    mta_commands.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        message = f"unrecognized arguments: {' '.join(extra)}"
        usage_error = getattr(args, "usage_error", None)  # a command whose exit codes mean something else
        if usage_error is not None:
            usage_error(message)
        parser.error(message)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # `spamgate ... | head`: the reader left; not an error worth a traceback.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
