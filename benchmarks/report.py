"""Summaries and Markdown tables from the measured cases. Medians and paired ratios only."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median
from typing import Any, Dict, List, Optional, Sequence

from measure import Case, PipelineResult, SustainedResult

TARGET_RATIO = 0.8
# This project's integrations on the Flask app: the target is about these.
OURS = ("generic", "generic-process", "ours")
# The rows of the Flask table and of the ceiling table, in order.
FLASK_ROWS = ("bare", *OURS, "moesifwsgi")
CEILING_ROWS = ("bare", "ceiling", "ceiling-process")

INTEGRATION_LABELS = {
    "generic": "MoesifMiddleware (this project, generic WSGI)",
    "generic-process": "MoesifMiddleware, DELIVERY_PROCESS on (this project)",
    "moesifwsgi": "moesifwsgi {version} (incumbent)",
    "ceiling": "ceiling (sender threads)",
    "ceiling-process": "ceiling (DELIVERY_PROCESS)",
}
ADAPTER_LABELS = {
    "flask": "Moesif Flask extension",
    "bottle": "MoesifPlugin",
    "pyramid": "tween (config.include)",
    "falcon": "Falcon MoesifMiddleware",
    "falcon-asgi": "Falcon MoesifMiddleware",
}


@dataclass
class Summary:
    """One case, summarised against the bare app of its framework and request."""

    key: str
    framework: str
    integration: str
    request: str
    requests_per_round: int
    rounds: int
    rps: float  # median over rounds, delivery counted
    rps_requests_only: float  # median over rounds, until the last call returned
    ratio: Optional[float]  # median of per-round (bare time / this time)
    added_us: Optional[float]  # median of per-round (this time - bare time) / requests
    cpu_us: float  # median over rounds: process CPU (all threads) per request
    added_cpu_us: Optional[float]  # median of per-round (this CPU - bare CPU) / requests
    delivered: Optional[int]
    sent: Optional[int]
    p50_ms: float
    p99_ms: float

    @property
    def delivery(self) -> Optional[float]:
        if self.delivered is None or not self.sent:
            return None
        return self.delivered / self.sent

    def as_json(self) -> Dict[str, Any]:
        data = dict(self.__dict__)
        data["delivered_per_sent"] = self.delivery
        return data


def _percentile(values: List[int], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index] / 1e6


def summarise(cases: Sequence[Case]) -> List[Summary]:
    bare = {(c.framework.name, c.spec.name): c for c in cases if not c.wrapped}
    summaries = []
    for case in cases:
        baseline = bare.get((case.framework.name, case.spec.name))
        ratio = added = added_cpu = None
        if baseline is not None and case.wrapped:
            pairs = list(zip(baseline.rounds, case.rounds))
            ratio = median(b.total_seconds / r.total_seconds for b, r in pairs)
            added = median((r.total_seconds - b.total_seconds) / r.requests * 1e6 for b, r in pairs)
            added_cpu = median((r.cpu_seconds - b.cpu_seconds) / r.requests * 1e6 for b, r in pairs)
        delivered = sent = None
        if case.wrapped:
            delivered = sum(r.delivered or 0 for r in case.rounds)
            sent = sum(r.requests for r in case.rounds)
        summaries.append(
            Summary(
                key=case.key,
                framework=case.framework.name,
                integration=case.integration,
                request=case.spec.name,
                requests_per_round=case.rounds[0].requests if case.rounds else 0,
                rounds=len(case.rounds),
                rps=median(r.requests / r.total_seconds for r in case.rounds),
                rps_requests_only=median(r.requests / r.request_seconds for r in case.rounds),
                ratio=ratio,
                added_us=added,
                cpu_us=median(r.cpu_seconds / r.requests * 1e6 for r in case.rounds),
                added_cpu_us=added_cpu,
                delivered=delivered,
                sent=sent,
                p50_ms=_percentile(case.latencies, 0.50),
                p99_ms=_percentile(case.latencies, 0.99),
            )
        )
    return summaries


# ---------------------------------------------------------------------------------- tables


def counter_notes(stats: Dict[str, Dict[str, int]]) -> List[str]:
    """Anything this project's counters say went wrong during the timed rounds."""
    notes = []
    for app, counters in stats.items():
        bad = {
            name: value
            for name, value in counters.items()
            if value and name not in ("captured", "sent", "skipped", "sampled_out")
        }
        if bad:
            listed = ", ".join(f"{name} {value}" for name, value in sorted(bad.items()))
            notes.append(f"{app}: counters during the rounds: {listed}")
    return notes


def _num(value: Optional[float], digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _delivery(summary: Summary) -> str:
    if summary.delivered is None:
        return "–"
    return f"{summary.delivered:,}/{summary.sent:,}"


def scenario_label(summary: Summary, framework_label: str, moesifwsgi_version: str) -> str:
    if summary.integration == "bare":
        return f"bare {framework_label} app"
    if summary.integration == "ours":
        return f"{ADAPTER_LABELS.get(summary.framework, 'adapter')} (this project)"
    return INTEGRATION_LABELS[summary.integration].format(version=moesifwsgi_version)


def flask_table(
    summaries: Sequence[Summary], moesifwsgi_version: str, order: Sequence[str] = FLASK_ROWS
) -> List[str]:
    """The Flask cases named in ``order``, in that order per request; none without a case
    other than the bare app."""
    rows = [s for s in summaries if s.framework == "flask" and s.integration in order]
    if all(s.integration == "bare" for s in rows):
        return []
    rows.sort(key=lambda s: (s.request, order.index(s.integration)))
    lines = [
        "| scenario | request | req/s | added µs/req | × bare | delivered/sent | p99 ms "
        "| CPU µs/req (added) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in rows:
        cpu = _num(s.cpu_us, 1)
        if s.added_cpu_us is not None:
            cpu += f" ({s.added_cpu_us:+,.1f})"
        lines.append(
            f"| {scenario_label(s, 'Flask', moesifwsgi_version)} | {s.request} | {_num(s.rps)} "
            f"| {_num(s.added_us, 1)} | {_num(s.ratio, 2) if s.ratio else '1.00'} "
            f"| {_delivery(s)} | {_num(s.p99_ms, 3)} | {cpu} |"
        )
    return lines


def target_lines(summaries: Sequence[Summary]) -> List[str]:
    lines = []
    for s in summaries:
        if s.integration in OURS and s.ratio is not None:
            verdict = "met" if s.ratio >= TARGET_RATIO else "MISSED"
            lines.append(
                f"- {s.framework} {s.integration} {s.request}: {s.ratio:.2f}× bare "
                f"(target ≥ {TARGET_RATIO}×: {verdict}){_shortfall(s)}"
            )
    return lines


def _shortfall(summary: Summary) -> str:
    if summary.delivered == summary.sent:
        return ""
    return f"; only {_delivery(summary)} events delivered"


def ceiling_table(summaries: Sequence[Summary], moesifwsgi_version: str) -> List[str]:
    return flask_table(summaries, moesifwsgi_version, CEILING_ROWS)


# Each ceiling case, the integration that captures what it only queues, and its pipeline.
_CEILING_OF = (
    ("ceiling", "generic", "sender threads"),
    ("ceiling-process", "generic-process", "DELIVERY_PROCESS"),
)


def ceiling_lines(summaries: Sequence[Summary]) -> List[str]:
    """The ceiling table in words: the share delivery alone leaves, beside the share left with
    the capture."""
    by_key = {(s.integration, s.request): s for s in summaries if s.framework == "flask"}
    lines = []
    for request in ("GET", "POST"):
        for ceiling, captured, pipeline in _CEILING_OF:
            s = by_key.get((ceiling, request))
            if s is None or s.ratio is None:
                continue
            real = by_key.get((captured, request))
            beside = ""
            if real is not None and real.ratio is not None:
                beside = f" (capture included, `{captured}`: {real.ratio:.2f}×)"
            lines.append(
                f"- {request}, {pipeline}: if capturing cost nothing, delivery alone would keep "
                f"{s.ratio:.2f}× of bare{beside}{_shortfall(s)}"
            )
    return lines


def adapter_table(
    summaries: Sequence[Summary], framework_labels: Dict[str, str], moesifwsgi_version: str
) -> List[str]:
    by_key = {(s.framework, s.integration, s.request): s for s in summaries}
    with_incumbent = any(s.integration == "moesifwsgi" for s in summaries)
    lines = [
        "| framework | request | bare req/s | this project: req/s | × bare | added µs/req | p99 ms "
        + (
            f"| moesifwsgi {moesifwsgi_version}: req/s | × bare | added µs/req |"
            if with_incumbent
            else "|"
        ),
        "|---|---|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if with_incumbent else ""),
    ]
    any_row = False
    for name, label in framework_labels.items():
        for request in ("GET", "POST"):
            bare = by_key.get((name, "bare", request))
            ours = by_key.get((name, "ours", request))
            incumbent = by_key.get((name, "moesifwsgi", request))
            if bare is None or (ours is None and incumbent is None):
                continue
            any_row = True
            if ours is not None:
                ours_cells = (
                    f"{_num(ours.rps)} | {_num(ours.ratio, 2)} | {_num(ours.added_us, 1)} "
                    f"| {_num(ours.p99_ms, 3)}"
                )
                if ours.delivered != ours.sent:
                    ours_cells += f" (delivered {_delivery(ours)})"
            else:
                ours_cells = "not run | | |"
            if incumbent is not None:
                incumbent_cells = (
                    f"{_num(incumbent.rps)} | {_num(incumbent.ratio, 2)} "
                    f"| {_num(incumbent.added_us, 1)}"
                )
            else:
                incumbent_cells = "n/a | | "
            row = f"| {label} | {request} | {_num(bare.rps)} | {ours_cells} |"
            lines.append(row + (f" {incumbent_cells} |" if with_incumbent else ""))
    return lines if any_row else []


PIPELINE_LABELS = {
    "generic": "this project (generic middleware)",
    "generic-process": "this project (generic middleware, DELIVERY_PROCESS on)",
    "moesifwsgi": "moesifwsgi {version}",
}
# The integrations whose events wait in a delivery process: its columns are theirs.
WITH_DELIVERY_PROCESS = ("generic-process",)


def _delivery_process_cell(result: PipelineResult, value: Optional[float], digits: int) -> str:
    """A delivery process's cell: "–" without one, "n/a" when not measured (no /proc)."""
    if result.integration not in WITH_DELIVERY_PROCESS:
        return "–"
    return "n/a" if value is None else _num(value, digits)


def pipeline_table(results: Sequence[PipelineResult], moesifwsgi_version: str) -> List[str]:
    if not results:
        return []
    lines = [
        "| integration | events of | memory per queued event: app process (bytes) "
        "| memory per queued event: delivery process (RSS growth, bytes) "
        "| drain capacity (events/s) | CPU µs/event: request path "
        "| CPU µs/event: background threads (app process) | CPU µs/event: delivery process "
        "| delivered/sent |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ceilings = []
    for r in results:
        label = PIPELINE_LABELS.get(r.integration, r.integration).format(version=moesifwsgi_version)
        lines.append(
            f"| {label} | {r.spec} | {_num(r.memory_bytes_per_event)} "
            f"| {_delivery_process_cell(r, r.delivery_process_rss_bytes_per_event, 0)} "
            f"| {_num(r.capacity)} | {_num(r.request_path_us, 1)} | {_num(r.background_us, 1)} "
            f"| {_delivery_process_cell(r, r.delivery_process_us, 1)} "
            f"| {r.delivered:,}/{r.sent:,} |"
        )
        if r.collector_ceiling:
            ceilings.append(r)
    for r in ceilings:
        lines.append(
            f"| collector ceiling (pre-encoded batches, 2 connections) | {r.spec} | – | – "
            f"| {_num(r.collector_ceiling)} | – | – | – | – |"
        )
    return lines


def sustained_table(results: Sequence[SustainedResult], labels: Dict[str, str]) -> List[str]:
    if not results:
        return []
    lines = [
        "| framework | integration | app req/s while requesting | delivered/sent "
        "| dropped (queue full) |",
        "|---|---|---:|---:|---:|",
    ]
    for r in results:
        integration = {
            "generic": "MoesifMiddleware (generic)",
            "generic-process": "MoesifMiddleware, DELIVERY_PROCESS on",
        }.get(r.integration) or ADAPTER_LABELS.get(r.framework, r.integration)
        dropped = "–" if r.dropped is None else f"{r.dropped:,}"
        lines.append(
            f"| {labels.get(r.framework, r.framework)} | {integration} | {_num(r.request_rate)} "
            f"| {r.delivered:,}/{r.requests:,} | {dropped} |"
        )
    return lines
