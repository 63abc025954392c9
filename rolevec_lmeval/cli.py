"""``rolevec`` command line: one sub-command per pipeline stage.

Each sub-command lives in its own module exposing ``add_parser(subparsers)``; the parser sets
``func`` (called with the parsed args, returns an exit code). Modules are imported lazily so that
``rolevec --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from rolevec_lmeval.errors import RoleVecError

# command name -> module implementing add_parser(subparsers)
COMMANDS: dict[str, str] = {
    "model": "rolevec_lmeval.embedded",
    "extract": "rolevec_lmeval.extract",
    "data": "rolevec_lmeval.mmlu_cache",
    "tasks": "rolevec_lmeval.tasks",
    "report": "rolevec_lmeval.report",
    "check": "rolevec_lmeval.check",
    "sweep": "rolevec_lmeval.sweep",
    "scope": "rolevec_lmeval.scope",
    "export": "rolevec_lmeval.export",
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rolevec", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = [a for a in (argv or []) if not a.startswith("-")][:1]
    for name, module in COMMANDS.items():
        if wanted and wanted[0] != name and wanted[0] in COMMANDS:
            sub.add_parser(name, help=f"see: rolevec {name} --help")
            continue
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here rather than at interpreter exit
        return code
    except (RoleVecError, FileNotFoundError, FileExistsError) as exc:
        print(f"rolevec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `rolevec tasks | head`: the reader left; exit quietly like other CLI tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
