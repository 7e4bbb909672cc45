"""Entry point: registers the commands and dispatches. Each command lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

_COMMANDS = ["demo", "data", "train", "tune", "evaluation", "report", "env"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mritune",
        description=(
            "Tune, cross-validate and honestly evaluate fastai image classifiers for brain-tumour "
            "MRI (or any folder of labelled images)."
        ),
        epilog="Run `mritune COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"mritune {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(f"mritune.cli.{name}").register(sub)
    return parser


def _version() -> str:
    from mritune import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    from mritune.errors import MrituneError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", message=".*experimental.*")
    try:
        return int(args.func(args) or 0)
    except MrituneError as exc:
        print(f"mritune {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"mritune {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
