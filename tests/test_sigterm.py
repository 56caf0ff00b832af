"""The SIGTERM handler the integration sets where nothing else handles SIGTERM: never over a
handler the app or the server set, only from the main thread, and never when turned off.
Delivery on a real SIGTERM is tested under waitress in test_servers.py."""

from __future__ import annotations

import signal
import threading
from typing import Any, Dict, Iterator, List

import pytest

from moesif_integrations import MoesifMiddleware
from moesif_integrations.core import lifecycle

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="no SIGTERM here")

SETTINGS = {"APPLICATION_ID": "sigterm-app", "BASE_URI": "http://127.0.0.1:9"}


def app(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
    start_response("204 No Content", [])
    return []


@pytest.fixture(autouse=True)
def restore_sigterm() -> Iterator[None]:
    before = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def made(**options: Any) -> MoesifMiddleware:
    middleware = MoesifMiddleware(app, {**SETTINGS, **options})
    middleware.shutdown(timeout=0)
    return middleware


def test_set_where_only_the_default_action_was() -> None:
    made()
    assert signal.getsignal(signal.SIGTERM) is lifecycle._on_sigterm


def test_a_handler_the_app_or_server_set_is_kept() -> None:
    def theirs(signum: int, frame: Any) -> None:
        pass

    signal.signal(signal.SIGTERM, theirs)
    made()
    assert signal.getsignal(signal.SIGTERM) is theirs
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    made()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN


def test_turned_off_it_is_not_set() -> None:
    made(FLUSH_ON_SIGTERM=False)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_an_integration_made_off_the_main_thread_sets_nothing_and_raises_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    problems: List[BaseException] = []

    def make() -> None:
        try:
            made()
        except BaseException as exc:  # pragma: no cover - the failure this test looks for
            problems.append(exc)

    with caplog.at_level("INFO", logger="moesif_integrations"):
        thread = threading.Thread(target=make)
        thread.start()
        thread.join()
    assert problems == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert any("outside the main thread" in r.getMessage() for r in caplog.records)
