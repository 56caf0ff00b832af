"""``python -m moesif_integrations.collector tail`` and ``counts``: a running collector, read
from the terminal through its read API."""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional, TextIO

from moesif_integrations.collector.storage import KINDS
from moesif_integrations.collector.summary import event_line

DEFAULT_URL = "http://127.0.0.1:8000"
_POLL_SECONDS = 0.5
_BATCH = 1000

# Loopback tools: a proxy from the environment must not see these requests.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class CollectorGoneError(Exception):
    """The collector did not answer."""


def read_json(base_url: str, path: str, timeout: float = 10.0) -> Any:
    """GET ``path`` of the collector's read API; CollectorGoneError when nothing answers."""
    try:
        with _opener.open(base_url.rstrip("/") + path, timeout=timeout) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as error:
        with error:
            detail = error.read().decode("utf-8", "replace")
        raise CollectorGoneError(f"{error.code} from {base_url}{path}: {detail}") from None
    except (OSError, ValueError) as error:
        raise CollectorGoneError(f"no collector at {base_url} ({error})") from None


def tail(
    base_url: str,
    last: int = 10,
    count: Optional[int] = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Prints the ``last`` stored events, then each new one as it arrives, one line each; stops
    after ``count`` lines when given. Waits for the collector while it is not up."""
    printed = 0
    since: Optional[int] = None
    waiting = False
    print(f"following events at {base_url} (Ctrl-C stops)", file=err, flush=True)
    while count is None or printed < count:
        try:
            if since is None:
                # The newest ``last`` rows, printed oldest first; then everything after.
                page = read_json(base_url, f"/_collector/page?kind=events&limit={max(last, 1)}")
                rows: List[Dict[str, Any]] = []
                if last > 0:
                    wanted = [row["id"] for row in page["items"]]
                    if wanted:
                        first = min(wanted) - 1
                        rows = read_json(
                            base_url, f"/_collector/events?since={first}&limit={len(wanted)}"
                        )["events"]
                since = int(page["last_id"])
            else:
                answer = read_json(base_url, f"/_collector/events?since={since}&limit={_BATCH}")
                rows = answer["events"]
                since = int(answer["last_id"])
        except CollectorGoneError as error:
            if not waiting:
                print(f"waiting: {error}", file=err, flush=True)
                waiting = True
            time.sleep(_POLL_SECONDS)
            continue
        waiting = False
        for row in rows:
            if count is not None and printed >= count:
                break
            print(event_line(row["received_at"], row["app_id"], row["event"]), file=out)
            printed += 1
        out.flush()
        if len(rows) < _BATCH and (count is None or printed < count):
            time.sleep(_POLL_SECONDS)
    return 0


def format_counts(counts: Dict[str, Any]) -> str:
    """The counters as a few aligned lines: stored per kind, requests per endpoint, stored per
    application id."""
    lines = ["stored: " + ", ".join(f"{kind} {counts.get(kind, 0)}" for kind in KINDS)]
    requests: Dict[str, int] = counts.get("requests") or {}
    if requests:
        width = max(len(path) for path in requests)
        lines.append("requests per endpoint:")
        lines += [f"  {path.ljust(width)}  {n:>8}" for path, n in requests.items()]
    applications: Dict[str, Dict[str, int]] = counts.get("applications") or {}
    if applications:
        width = max(len(app) for app in applications)
        lines.append("stored per application id:")
        for app, by_kind in sorted(applications.items()):
            cells = "  ".join(f"{kind} {by_kind.get(kind, 0):>6}" for kind in KINDS)
            lines.append(f"  {app.ljust(width)}  {cells}")
    return "\n".join(lines)


def build_parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m moesif_integrations.collector {command}")
    parser.add_argument(
        "--url", default=DEFAULT_URL, help=f"the collector's URL (default {DEFAULT_URL})"
    )
    if command == "tail":
        parser.description = "Follows the events a running collector stores, one line each."
        parser.add_argument(
            "-n", "--last", type=int, default=10, metavar="N", help="stored events shown first"
        )
        parser.add_argument(
            "--count", type=int, metavar="N", help="stop after N lines (default: never)"
        )
    else:
        parser.description = "Prints a running collector's counters."
        parser.add_argument("--json", action="store_true", help="print them as JSON")
    return parser


def main(command: str, argv: List[str]) -> int:
    args = build_parser(command).parse_args(argv)
    if command == "tail":
        try:
            return tail(args.url, max(args.last, 0), args.count)
        except KeyboardInterrupt:
            return 0
    try:
        counts = read_json(args.url, "/_collector/counts")
    except CollectorGoneError as error:
        print(f"moesif-collector counts: {error}", file=sys.stderr)
        return 1
    print(json.dumps(counts, indent=2) if args.json else format_counts(counts))
    return 0
