"""The overhead benchmark: a bare app against the same app captured by this project and by
moesifwsgi, with delivery to a local collector in another process counted.

    python benchmarks/overhead.py [--requests N] [--rounds R] [--quick] [--json out.json]
        [--only generic,generic-process,flask,moesifwsgi,bottle,pyramid,falcon,falcon-asgi,
                decide]
        [--no-ceiling] [--no-sustained] [--no-pipeline] [--request-path-blocks N]
        [--instructions]

Prints Markdown (progress goes to stderr). See benchmarks/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

# Run as a script: the sibling modules are importable from this directory.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from apps import (  # noqa: E402
    DECISION_INTEGRATIONS,
    FRAMEWORKS,
    BenchSettings,
    BuiltApp,
    missing,
    version_of,
)
from ceiling import CEILINGS, build_app  # noqa: E402
from collector_process import CollectorProcess  # noqa: E402
from drivers import REQUESTS  # noqa: E402
from measure import (  # noqa: E402
    Case,
    PipelineResult,
    SustainedResult,
    default_queue_size,
    make_driver,
    measure_pipeline,
    measure_sustained,
    progress_to_stderr,
    run_rounds,
    warm_up,
)
from report import (  # noqa: E402
    OURS,
    Summary,
    adapter_table,
    ceiling_lines,
    ceiling_table,
    counter_notes,
    flask_table,
    pipeline_table,
    summarise,
    sustained_table,
    target_lines,
)
from request_path import (  # noqa: E402
    InstructionResult,
    RequestPathResult,
    instruction_table,
    measure_instructions,
    measure_request_path,
    request_path_table,
    valgrind_missing,
)

SELECTABLE = (
    "generic",
    "generic-process",
    "flask",
    "moesifwsgi",
    "bottle",
    "pyramid",
    "falcon",
    "falcon-asgi",
    # The request-path rows of sampling and governance (ENABLED false, 50 rules, a sampled-out
    # route, 10% sampling), beside full capture: microscope and instruction counts only.
    "decide",
)
BATCH_SIZE = 100
# Longest wait for the count to move before a run is declared short of events: the batch
# timeout (1 s) plus generous slack for a loaded machine.
STALL_SECONDS = 5.0


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Throughput cost of API capture, delivery to a local collector counted."
    )
    parser.add_argument("--requests", type=int, help="requests per case per round (default 5000)")
    parser.add_argument("--rounds", type=int, help="rounds, cases interleaved (default 5)")
    parser.add_argument(
        "--quick", action="store_true", help="small counts: finishes in about a minute"
    )
    parser.add_argument("--json", metavar="PATH", help="also write every number as JSON")
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help=f"comma-separated subset of {','.join(SELECTABLE)} (bare apps always run)",
    )
    parser.add_argument(
        "--pipeline-events",
        type=int,
        help="events queued for the memory and capacity measures (default 5000)",
    )
    parser.add_argument(
        "--no-pipeline", action="store_true", help="skip the memory and capacity measures"
    )
    parser.add_argument(
        "--no-sustained", action="store_true", help="skip the sustained-load delivery check"
    )
    parser.add_argument(
        "--no-ceiling",
        action="store_true",
        help="skip the ceiling cases (delivery alone: a ready record queued per request)",
    )
    parser.add_argument(
        "--request-path-blocks",
        type=int,
        help="paired blocks of the request-path microscope (default 30; 0 skips it)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count the request path's instructions under valgrind (about two minutes)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    if args.request_path_blocks is None:
        args.request_path_blocks = 10 if quick else 30
    args.requests = args.requests or (1000 if quick else 5000)
    args.rounds = args.rounds or (3 if quick else 5)
    args.pipeline_events = args.pipeline_events or (1000 if quick else 5000)
    args.warmup = max(BATCH_SIZE, (args.requests // 10) // BATCH_SIZE * BATCH_SIZE)
    args.pipeline_rounds = 2 if quick else 5
    # Sustained load: three times what the queue holds. --quick shrinks the queue to keep it
    # short; whether delivery keeps up with the app does not depend on the queue's size.
    args.sustained_queue = 1000 if quick else None
    if args.requests % BATCH_SIZE:
        parser.error(
            f"--requests must be a multiple of the batch size ({BATCH_SIZE}): a half batch "
            "would wait out the batch timeout and time that instead of the work"
        )
    selected = set(SELECTABLE)
    if args.only:
        selected = {name.strip() for name in args.only.split(",") if name.strip()}
        unknown = selected - set(SELECTABLE)
        if unknown:
            parser.error(f"--only: unknown {', '.join(sorted(unknown))}; pick from {SELECTABLE}")
    args.selected = selected
    return args


# ------------------------------------------------------------------------------ planning


def plan(selected: set, notes: List[str]) -> Dict[str, List[str]]:
    """framework name -> integrations to run on it (always starting with "bare")."""
    incumbent_problem = missing("moesifwsgi") if "moesifwsgi" in selected else "not selected"
    if "moesifwsgi" in selected and incumbent_problem:
        notes.append(f"moesifwsgi skipped: {incumbent_problem}")
    planned: Dict[str, List[str]] = {}
    for framework in FRAMEWORKS:
        wanted: List[str] = []
        if framework.name == "flask":
            if "generic" in selected:
                wanted.append("generic")
            if "generic-process" in selected:
                wanted.append("generic-process")
            if "flask" in selected:
                wanted.append("ours")
            if "moesifwsgi" in selected and not incumbent_problem:
                wanted.append("moesifwsgi")
        elif framework.name in selected:
            wanted.append("ours")
            if framework.wsgi and "moesifwsgi" in selected and not incumbent_problem:
                wanted.append("moesifwsgi")
        if not wanted:
            continue
        problem = missing(framework.distribution)
        if problem:
            notes.append(f"{framework.label} skipped: {framework.distribution} not importable")
            continue
        if "ours" in wanted:
            adapter_problem = missing(framework.adapter_module)
            if adapter_problem:
                notes.append(
                    f"{framework.label} adapter skipped: {framework.adapter_module} not "
                    f"importable ({adapter_problem})"
                )
                wanted.remove("ours")
        if wanted:
            planned[framework.name] = ["bare", *wanted]
    return planned


def plan_ceiling(planned: Dict[str, List[str]], notes: List[str]) -> None:
    """Adds the ceiling cases to the Flask app's, whatever --only selected."""
    problem = missing("flask")
    if problem:
        notes.append(f"ceiling skipped: it uses the Flask app, and flask is missing ({problem})")
        return
    planned.setdefault("flask", ["bare"]).extend(CEILINGS)


def build_cases(
    planned: Dict[str, List[str]], settings: BenchSettings, notes: List[str]
) -> List[Case]:
    """Builds every app and checks it answers both requests as intended; a broken integration
    is skipped with a note rather than measured."""
    cases: List[Case] = []
    frameworks = {f.name: f for f in FRAMEWORKS}
    for name, integrations in planned.items():
        framework = frameworks[name]
        for integration in integrations:
            try:
                built = build_app(framework, integration, settings)
                built_cases = [
                    Case(framework, integration, spec, built, make_driver(built, spec))
                    for spec in REQUESTS
                ]
                for case in built_cases:
                    status, body = case.driver.check()
                    if status != case.spec.expected_status:
                        raise RuntimeError(
                            f"{case.spec.method} answered {status}, not "
                            f"{case.spec.expected_status}: {body[:200]!r}"
                        )
            except Exception as exc:
                if integration == "bare":
                    raise
                notes.append(
                    f"{framework.label} {integration} skipped: {type(exc).__name__}: {exc}"
                )
                continue
            cases.extend(built_cases)
    # Drop frameworks left with their bare app only.
    wrapped = {c.framework.name for c in cases if c.wrapped}
    return [c for c in cases if c.framework.name in wrapped]


def shutdown_all(built_apps: Sequence[BuiltApp]) -> None:
    """Stops every integration at once: moesifwsgi's take a second or two each."""
    unique = {id(built): built for built in built_apps}.values()
    threads = [threading.Thread(target=built.shutdown) for built in unique]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def run_pipeline(selected: set, events: int, rounds: int, notes: List[str]) -> List[PipelineResult]:
    if not CollectorProcess.can_pause():
        notes.append("memory and capacity skipped: pausing the collector needs SIGSTOP (POSIX)")
        return []
    frameworks = {f.name: f for f in FRAMEWORKS}
    if missing("flask"):
        notes.append("memory and capacity skipped: they use the Flask app, and flask is missing")
        return []
    flask = frameworks["flask"]
    integrations = [i for i in ("generic", "generic-process", "moesifwsgi") if i in selected]
    if "moesifwsgi" in integrations and missing("moesifwsgi"):
        integrations.remove("moesifwsgi")
    results = []
    for integration in integrations:
        for spec in REQUESTS:
            results.append(
                measure_pipeline(
                    integration,
                    flask.build,
                    spec,
                    events,
                    rounds,
                    BATCH_SIZE,
                    progress_to_stderr,
                    ceiling_batches=50 if integration == "generic" and spec.name == "POST" else 0,
                )
            )
    return results


def run_request_path(selected: set, blocks: int, notes: List[str]) -> List[RequestPathResult]:
    """The request-path microscope on the Flask app, for this project's WSGI integrations."""
    if missing("flask"):
        notes.append("request path skipped: it uses the Flask app, and flask is missing")
        return []
    flask = next(f for f in FRAMEWORKS if f.name == "flask")
    integrations = request_path_integrations(selected)
    results = []
    with CollectorProcess("request-path") as collector:
        for integration in integrations:
            for spec in REQUESTS:
                results.append(
                    measure_request_path(
                        integration, flask.build, spec, collector.url, blocks, progress_to_stderr
                    )
                )
    return results


def request_path_integrations(selected: set) -> List[str]:
    """The integrations the request-path measures compare on the Flask app."""
    integrations = [
        name for option, name in (("generic", "generic"), ("flask", "ours")) if option in selected
    ]
    if "decide" in selected:
        if "generic" not in integrations:
            integrations.insert(0, "generic")  # full capture, the rows' reference
        integrations.extend(DECISION_INTEGRATIONS)
    return integrations


def run_instructions(selected: set, notes: List[str]) -> List[InstructionResult]:
    problem = valgrind_missing() or missing("flask")
    if problem:
        notes.append(f"instruction counts skipped: {problem}")
        return []
    integrations = request_path_integrations(selected)
    return measure_instructions(
        "flask", integrations, [spec.name for spec in REQUESTS], progress_to_stderr
    )


# ------------------------------------------------------------------------------ reporting


def header(argv: Sequence[str], args: argparse.Namespace) -> List[str]:
    versions = ", ".join(
        f"{name} {version_of(name)}"
        for name in (
            "moesif-integrations",
            "moesifwsgi",
            "moesifapi",
            "flask",
            "werkzeug",
            "bottle",
            "pyramid",
            "falcon",
        )
    )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    command = " ".join(["python benchmarks/overhead.py", *argv])
    return [
        "# Overhead benchmark",
        "",
        f"- command: `{command}`",
        f"- Python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, load average {load}",
        f"- versions: {versions}",
        f"- {args.requests:,} requests per case per round, {args.rounds} rounds (cases "
        f"interleaved), warm-up {args.warmup:,}; medians; × bare = paired per-round ratio of "
        "throughputs; a wrapped run ends when its last event reached the collector",
    ]


def render(
    argv: Sequence[str], args: argparse.Namespace, measured: Measured, notes: List[str]
) -> str:
    incumbent = version_of("moesifwsgi")
    labels = {f.name: f.label for f in FRAMEWORKS}
    summaries, pipeline = measured.summaries, measured.pipeline
    lines = header(argv, args)
    flask_lines = flask_table(summaries, incumbent)
    if flask_lines:
        lines += ["", "## Flask: a JSON GET and a 1 KB JSON POST", "", *flask_lines]
        targets = target_lines([s for s in summaries if s.framework == "flask"])
        if targets:
            lines += ["", *targets]
    ceiling = ceiling_table(summaries, incumbent)
    if ceiling:
        lines += ["", "## Ceiling: what delivery alone leaves", "", *ceiling]
        lines += ["", *ceiling_lines(summaries)]
    adapter_lines = adapter_table(summaries, labels, incumbent)
    if adapter_lines:
        lines += ["", "## Every adapter against its bare framework app", "", *adapter_lines]
    sustained_lines = sustained_table(measured.sustained, labels)
    if sustained_lines:
        first = measured.sustained[0]
        lines += [
            "",
            f"## Sustained load: {first.requests:,} GETs back to back, queue of "
            f"{first.queue_size:,} events",
            "",
            *sustained_lines,
        ]
    if measured.request_path:
        lines += ["", *request_path_table(measured.request_path, "Flask app")]
    if measured.instructions:
        lines += [
            "",
            *instruction_table(measured.instructions, measured.request_path, "Flask app"),
        ]
    pipeline_lines = pipeline_table(pipeline, incumbent)
    if pipeline_lines:
        lines += [
            "",
            f"## Delivery pipeline ({args.pipeline_events:,} queued events, Flask app)",
            "",
            *pipeline_lines,
        ]
    if notes:
        lines += ["", "Notes:", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


@dataclass
class Measured:
    summaries: List[Summary]
    counters: Dict[str, Dict[str, int]]
    sustained: List[SustainedResult]
    pipeline: List[PipelineResult]
    request_path: List[RequestPathResult]
    instructions: List[InstructionResult]

    def ceiling_json(self) -> List[Dict[str, Any]]:
        """The ceiling table's rows (none: the ceiling did not run)."""
        rows = [
            s.as_json()
            for s in self.summaries
            if s.framework == "flask" and s.integration in ("bare", *CEILINGS)
        ]
        return rows if any(row["integration"] in CEILINGS for row in rows) else []


def run_sustained(
    cases: Sequence[Case], collector: CollectorProcess, queue_size: Optional[int]
) -> List[SustainedResult]:
    """The sustained-load check for each of this project's integrations, on the GET (the
    cheapest request, so the fastest stream of events)."""
    results = []
    size = queue_size or default_queue_size()
    seen = set()
    for case in cases:
        if case.integration not in OURS or case.app_key in seen:
            continue
        seen.add(case.app_key)
        results.append(
            measure_sustained(
                case.framework,
                case.integration,
                REQUESTS[0],
                collector,
                3 * size,
                queue_size,
                progress_to_stderr,
            )
        )
    return results


def measure_all(args: argparse.Namespace, notes: List[str]) -> Measured:
    """Every measurement of the run: the interleaved rounds, then the pipeline measures."""
    progress = progress_to_stderr
    planned = plan(args.selected, notes)
    summaries: List[Summary] = []
    stats: Dict[str, Dict[str, int]] = {}
    sustained: List[SustainedResult] = []
    if not args.no_ceiling:
        plan_ceiling(planned, notes)
    if planned:
        with CollectorProcess("main") as collector:
            settings = BenchSettings(collector.url, batch_size=BATCH_SIZE)
            cases = build_cases(planned, settings, notes)
            progress(f"{len(cases)} cases: {', '.join(c.key for c in cases)}")
            try:
                notes += warm_up(cases, args.warmup, collector.client, STALL_SECONDS, progress)
                stats = run_rounds(
                    cases, args.requests, args.rounds, collector.client, STALL_SECONDS, progress
                )
                notes += counter_notes(stats)
                if not args.no_sustained:
                    sustained = run_sustained(cases, collector, args.sustained_queue)
            finally:
                shutdown_all([c.built for c in cases])
                for case in cases:
                    case.driver.close()
            summaries = summarise(cases)
    request_path: List[RequestPathResult] = []
    if args.request_path_blocks > 0:
        request_path = run_request_path(args.selected, args.request_path_blocks, notes)
    instructions: List[InstructionResult] = []
    if args.instructions:
        instructions = run_instructions(args.selected, notes)
    pipeline: List[PipelineResult] = []
    if not args.no_pipeline:
        pipeline = run_pipeline(args.selected, args.pipeline_events, args.pipeline_rounds, notes)
    return Measured(summaries, stats, sustained, pipeline, request_path, instructions)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    notes: List[str] = []
    # The settings schema also reads MOESIF_<KEY> variables: the benchmark measures defaults.
    ignored = sorted(key for key in os.environ if key.startswith("MOESIF_"))
    for key in ignored:
        del os.environ[key]
    if ignored:
        notes.append(f"ignored environment variables: {', '.join(ignored)}")
    # moesifwsgi calls logging.basicConfig, which does nothing once the root logger has a
    # handler: this keeps its INFO chatter off the report.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    began = time.perf_counter()
    # moesifapi prints to stdout; the report alone goes there.
    with contextlib.redirect_stdout(sys.stderr):
        measured = measure_all(args, notes)
    report = render(argv, args, measured, notes)
    sys.stdout.write(report)
    progress_to_stderr(f"finished in {time.perf_counter() - began:.0f}s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(
                {
                    "command": ["python", "benchmarks/overhead.py", *argv],
                    "python": platform.python_version(),
                    "requests": args.requests,
                    "rounds": args.rounds,
                    "warmup": args.warmup,
                    "cases": [s.as_json() for s in measured.summaries],
                    "ceiling": measured.ceiling_json(),
                    "counters": measured.counters,
                    "sustained": [r.__dict__ for r in measured.sustained],
                    "pipeline": [r.as_json() for r in measured.pipeline],
                    "request_path": [r.as_json() for r in measured.request_path],
                    "instructions": [r.as_json() for r in measured.instructions],
                    "notes": notes,
                    "report": report,
                },
                handle,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
