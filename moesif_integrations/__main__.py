"""``python -m moesif_integrations``: the demo and the local collector."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

_DESCRIPTION = "Moesif API analytics for Python web apps: command-line tools."
# The example apps ``demo --framework`` runs (moesif_integrations/demo/frameworks.py).
FRAMEWORKS = ("flask", "bottle", "pyramid", "falcon", "falcon-asgi")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m moesif_integrations", description=_DESCRIPTION)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="capture a few API calls of a demo app into a local collector and show them",
        description=(
            "Starts a local collector and a small WSGI app wrapped by MoesifMiddleware on "
            "loopback, sends it a varied set of requests and prints the events the collector "
            "received. Needs no account and no network."
        ),
    )
    demo.add_argument("--db", metavar="PATH", help="keep the events in this SQLite file")
    demo.add_argument(
        "--keep",
        action="store_true",
        help="keep the collector (and the demo app) running after the table, until Ctrl-C",
    )
    demo.add_argument(
        "--port", type=int, default=0, help="the collector's port (default: a free one)"
    )
    demo.add_argument(
        "--framework",
        dest="frameworks",
        action="append",
        choices=[*FRAMEWORKS, "all"],
        metavar="NAME",
        help=(
            "instead of the built-in app, run the example app of a framework under a real "
            f"server ({', '.join(FRAMEWORKS)} or all; repeatable) and print one table each"
        ),
    )
    # Listed for --help only: main() hands everything after "collector" to the collector's CLI.
    commands.add_parser(
        "collector",
        help="run the local collector (same options as python -m moesif_integrations.collector)",
        add_help=False,
    )
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["collector"]:
        # The collector's own parser reads the rest, its --help included.
        from .collector.__main__ import main as collector_main

        return collector_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        # Delivery problems should be seen: the package's own logger gets a handler (the root
        # logger is left alone, as everywhere in this package).
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
        package_logger = logging.getLogger("moesif_integrations")
        package_logger.addHandler(handler)
        package_logger.setLevel(logging.WARNING)
        if args.frameworks:
            from .demo.frameworks import run_frameworks

            return run_frameworks(
                args.frameworks, collector_port=args.port, db_path=args.db, keep=args.keep
            )
        from .demo import run_demo

        return run_demo(db_path=args.db, keep=args.keep, collector_port=args.port)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
