"""The ceiling cases: what delivery alone leaves of the bare app's throughput.

``ceiling`` and ``ceiling-process``, timed in the same interleaved rounds as every other case:
the bare Flask app plus, per request, one ``pipeline.delivery.put(record)`` of a ready record into
this project's real delivery pipeline (sender threads, or ``DELIVERY_PROCESS`` on). The request path
costs next to nothing; building, serialising, gzip and HTTP to the collector are real and
counted, as for any wrapped case. The record is the one the generic middleware queued for one
real request of the same kind.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List

from apps import BenchSettings, BuiltApp, Framework, wrap_generic, wrap_generic_process
from drivers import REQUESTS, RequestSpec
from measure import make_driver

# The ceiling cases, and the middleware whose pipeline each one feeds.
CEILINGS: Dict[str, Callable[..., Any]] = {
    "ceiling": wrap_generic,
    "ceiling-process": wrap_generic_process,
}


def build_app(framework: Framework, integration: str, settings: BenchSettings) -> BuiltApp:
    """``framework.build``, or a ceiling case on top of the framework's bare app."""
    if integration not in CEILINGS:
        return framework.build(integration, settings)
    if framework.name != "flask":
        raise ValueError(f"the ceiling cases use the Flask app, not {framework.label}")
    built = framework.build("bare", settings)
    flask_app = built.app
    bare = flask_app.wsgi_app
    middleware = CEILINGS[integration](bare, settings)
    # One record per request kind (the same GET and POST as every case); the pipeline only
    # reads a record, so the same one is queued again and again.
    records = {spec.method: captured_record(middleware, spec) for spec in REQUESTS}
    put = middleware.pipeline.delivery.put

    def app(environ: Dict[str, Any], start_response: Any) -> Any:
        result = bare(environ, start_response)
        put(records[environ["REQUEST_METHOD"]])
        return result

    # Where the generic middleware and moesifwsgi go on a Flask app.
    flask_app.wsgi_app = app
    return BuiltApp(flask_app, asgi=False, integration=middleware)


def captured_record(middleware: Any, spec: RequestSpec) -> Any:
    """The record ``middleware`` queues for one request of ``spec``, kept instead of queued."""
    delivery = middleware.pipeline.delivery
    kept: List[Any] = []

    def keep(record: Any) -> bool:
        kept.append(record)
        return True

    # An attribute of the instance hides the method for this one request.
    delivery.put = keep
    try:
        status, body = make_driver(BuiltApp(middleware, asgi=False), spec).check()
    finally:
        del delivery.put
    if status != spec.expected_status or len(kept) != 1:
        raise RuntimeError(
            f"{spec.method} through the middleware answered {status} and queued {len(kept)} "
            f"records, not 1: {body[:200]!r}"
        )
    return kept[0]
