"""``python -m moesif_integrations.collector`` (also the ``moesif-collector`` script): runs the
collector; ``... tail`` follows the events a running one stores and ``... counts`` prints its
counters."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType
from typing import List, Optional

from moesif_integrations.collector.appconfig import DEFAULT_CONFIG
from moesif_integrations.collector.server import Collector


class _SigtermError(Exception):
    """Raised in the main thread by the SIGTERM handler to end the serving loop."""


def _on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
    raise _SigtermError()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moesif-collector",
        description=(
            "A local Moesif collector: stores the events it receives in SQLite and shows them "
            "in its inspector at its URL. 'moesif-collector tail' follows the events a running "
            "collector stores; 'moesif-collector counts' prints its counters."
        ),
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help=(
            "address to listen on (clients that reach it by another address or name need "
            "--allow-host)"
        ),
    )
    parser.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
    parser.add_argument("--db", default=":memory:", help="SQLite file (default: in memory)")
    parser.add_argument(
        "--app-id",
        dest="app_ids",
        action="extend",
        nargs="+",
        metavar="ID",
        help="accepted application id (repeatable; default: any non-empty id)",
    )
    parser.add_argument(
        "--allow-host",
        dest="allowed_hosts",
        action="append",
        default=[],
        metavar="NAME",
        help=(
            "also answer requests whose Host header is NAME (any port) or NAME:PORT, for a "
            "collector reached through a name of its own; repeatable (default: only localhost, "
            "127.0.0.1, [::1] and the --host address, with the collector's port)"
        ),
    )
    parser.add_argument("--config", help="JSON file served at /v1/config, re-read on change")
    parser.add_argument("--rules", help="JSON file served at /v1/rules, re-read on change")
    parser.add_argument(
        "--sample-rate",
        type=_percent,
        metavar="N",
        help="serve an app config that samples N%% of the events (0 to 100; not with --config)",
    )
    parser.add_argument("--fail", type=int, metavar="STATUS", help="answer STATUS to every POST")
    parser.add_argument(
        "--retry-after", type=float, metavar="S", help="Retry-After seconds sent with --fail"
    )
    parser.add_argument("--delay", type=float, metavar="S", help="wait S seconds before answering")
    parser.add_argument("--verbose", action="store_true", help="access log on stderr")
    return parser


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 0 to 100")
    return int(value) if value.is_integer() else value


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["tail"], ["counts"]):
        from moesif_integrations.collector.follow import main as follow_main

        return follow_main(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    if args.retry_after is not None and args.fail is None:
        print("moesif-collector: --retry-after needs --fail", file=sys.stderr)
        return 2
    if args.sample_rate is not None and args.config is not None:
        print("moesif-collector: choose --config or --sample-rate, not both", file=sys.stderr)
        return 2
    if args.fail is not None and args.delay is not None:
        print("moesif-collector: choose --fail or --delay, not both", file=sys.stderr)
        return 2
    try:
        collector = Collector(
            host=args.host,
            port=args.port,
            db_path=args.db,
            application_ids=args.app_ids,
            config_path=args.config,
            rules_path=args.rules,
            verbose=args.verbose,
            allowed_hosts=args.allowed_hosts,
        )
        if args.sample_rate is not None:
            collector.set_config({**DEFAULT_CONFIG, "sample_rate": args.sample_rate})
        if args.fail is not None:
            collector.fail(args.fail, retry_after=args.retry_after)
        elif args.delay is not None:
            collector.delay(args.delay)
        collector.start()
    except (OSError, ValueError, TypeError) as exc:
        print(f"moesif-collector: {exc}", file=sys.stderr)
        return 1

    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        url = collector.url
        print(f"Moesif local collector listening on {url} (inspector: {url}/)", flush=True)
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, _SigtermError):
        pass
    finally:
        # A second signal during shutdown must not interrupt it.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        collector.close()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
