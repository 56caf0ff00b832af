"""Outgoing calls (requests, httpx, urllib3) captured as events against a real local server,
delivered to the local collector."""

from __future__ import annotations

import base64
import gc
import logging
from typing import Any, Dict, Iterator, List

import httpx
import pytest
import requests
import urllib3
from asgi_client import run_coroutine
from harness import collector_settings, shut_down_after_test
from outgoing_server import BIG_SIZE, CHUNKS, JSON_BODY, ThirdParty, third_party
from wsgi_client import call

from moesif_integrations import MoesifClient, MoesifMiddleware
from moesif_integrations.collector import Collector
from moesif_integrations.core.outgoing import patches

APP_ID = "outgoing-app"
ORIGINAL_URLOPEN = urllib3.HTTPConnectionPool.urlopen
ORIGINAL_HANDLE = httpx.HTTPTransport.handle_request
ORIGINAL_HANDLE_ASYNC = httpx.AsyncHTTPTransport.handle_async_request


@pytest.fixture
def server() -> Iterator[ThirdParty]:
    yield from third_party()


@pytest.fixture(autouse=True)
def no_patches_left() -> Iterator[None]:
    yield
    patches.uninstall()


def make_client(collector: Collector, **options: Any) -> MoesifClient:
    settings = collector_settings(
        collector.url, options.pop("APPLICATION_ID", APP_ID), CAPTURE_OUTGOING_REQUESTS=True
    )
    settings.update(options)
    return shut_down_after_test(MoesifClient(settings))


def outgoing(collector: Collector, client: Any, expected: int) -> List[Dict[str, Any]]:
    """The outgoing events at the collector after ``client`` flushed; exactly ``expected``."""
    assert client.flush(5)
    events = [event for event in collector.events() if event["direction"] == "Outgoing"]
    assert len(events) == expected, events
    return events


def raw_body(part: Dict[str, Any]) -> bytes:
    """A base64 body (what non-JSON bodies are sent as) decoded."""
    assert part["transfer_encoding"] == "base64"
    return base64.b64decode(part["body"])


# ---------------------------------------------------------------------- requests


def test_requests_get_and_post_become_outgoing_events(
    collector: Collector, server: ThirdParty
) -> None:
    client = make_client(collector)
    assert requests.get(server.url("/json?page=2")).json() == {"hello": "world"}
    reply = requests.post(server.url("/echo"), json={"name": "ada"})
    assert reply.json() == {"name": "ada"}
    get, post = outgoing(collector, client, 2)
    assert get["request"]["verb"] == "GET"
    assert get["request"]["uri"] == server.url("/json?page=2")
    assert get["response"]["status"] == 200
    assert get["response"]["body"] == {"hello": "world"}
    assert get["response"]["headers"]["Content-Type"] == "application/json"
    assert get["transaction_id"] and get["metadata"] is None
    # Recorded as the app sent it: no transaction id header is added to the call.
    assert "X-Moesif-Transaction-Id" not in get["request"]["headers"]
    assert post["request"]["body"] == {"name": "ada"}
    assert post["request"]["headers"]["Content-Type"] == "application/json"
    assert post["response"]["body"] == {"name": "ada"}


def test_requests_500_and_chunked(collector: Collector, server: ThirdParty) -> None:
    client = make_client(collector)
    assert requests.get(server.url("/fail")).status_code == 500
    assert requests.get(server.url("/chunked")).content == b"".join(CHUNKS)
    failed, chunked = outgoing(collector, client, 2)
    assert failed["response"]["status"] == 500
    assert failed["response"]["body"] == {"error": "boom"}
    assert chunked["response"]["headers"]["Transfer-Encoding"] == "chunked"
    assert raw_body(chunked["response"]) == b"".join(CHUNKS)


def test_requests_redirect_is_one_event_per_hop(collector: Collector, server: ThirdParty) -> None:
    client = make_client(collector)
    reply = requests.get(server.url("/redirect"))
    assert reply.json() == {"hello": "world"} and len(reply.history) == 1
    hop, final = outgoing(collector, client, 2)
    assert (hop["response"]["status"], hop["request"]["uri"]) == (302, server.url("/redirect"))
    assert (final["response"]["status"], final["request"]["uri"]) == (200, server.url("/json"))


def test_requests_stream_stays_streamed_and_captures_what_was_read(
    collector: Collector, server: ThirdParty
) -> None:
    client = make_client(collector)
    with requests.get(server.url("/chunked"), stream=True) as reply:
        assert not reply.raw.closed
        chunks = list(reply.iter_content(chunk_size=None))
    assert b"".join(chunks) == b"".join(CHUNKS)
    with requests.get(server.url("/big"), stream=True) as reply:
        first = reply.raw.read(10)
        assert first == b"x" * 10
        # Nothing is sent while the caller still reads.
        assert client.stats()["captured"] == 1
    streamed, partial = outgoing(collector, client, 2)
    assert raw_body(streamed["response"]) == b"".join(CHUNKS)
    assert partial["response"]["status"] == 200
    # What the caller read, not what the server had (the rest was never read).
    assert raw_body(partial["response"]) == b"x" * 10


def test_requests_big_body_is_cut_at_the_limit(collector: Collector, server: ThirdParty) -> None:
    client = make_client(collector, RESPONSE_MAX_BODY_SIZE=1000)
    assert len(requests.get(server.url("/big")).content) == BIG_SIZE
    (event,) = outgoing(collector, client, 1)
    assert "body" not in event["response"] or len(str(event["response"]["body"])) < 2000
    assert event["response"]["headers"]["Content-Length"] == str(BIG_SIZE)


def test_unread_response_is_sent_at_garbage_collection(
    collector: Collector, server: ThirdParty
) -> None:
    client = make_client(collector)
    reply = requests.get(server.url("/json"), stream=True)
    assert client.stats()["captured"] == 0
    del reply
    gc.collect()
    assert client.stats()["captured"] == 1
    (event,) = outgoing(collector, client, 1)
    assert event["response"]["status"] == 200 and "body" not in event["response"]


def test_open_response_is_sent_at_flush(collector: Collector, server: ThirdParty) -> None:
    client = make_client(collector)
    reply = requests.get(server.url("/json"), stream=True)
    (event,) = outgoing(collector, client, 1)
    assert event["response"]["status"] == 200
    # The caller's response is untouched: it still reads the whole body.
    assert reply.json() == {"hello": "world"}
    reply.close()
    outgoing(collector, client, 1)


def test_connection_refused_reaches_the_caller_and_becomes_an_event(
    collector: Collector, server: ThirdParty
) -> None:
    client = make_client(collector)
    with pytest.raises(requests.ConnectionError):
        requests.get("http://127.0.0.1:1/nothing", timeout=2)
    with pytest.raises(httpx.ConnectError):
        httpx.get("http://127.0.0.1:1/nothing", timeout=2)
    for event in outgoing(collector, client, 2):
        assert event["response"]["status"] == 0
        assert "Connect" in event["metadata"]["error"] or "refused" in event["metadata"]["error"]


def test_read_timeout_stays_the_callers(collector: Collector, server: ThirdParty) -> None:
    client = make_client(collector)
    with pytest.raises(requests.ReadTimeout):
        requests.get(server.url("/slow"), timeout=0.2)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(server.url("/slow"), timeout=0.2)
    for event in outgoing(collector, client, 2):
        assert event["request"]["uri"] == server.url("/slow")
        assert "Timeout" in event["metadata"]["error"]


# ---------------------------------------------------------------------- urllib3


def test_urllib3_preloaded_streamed_and_gzip(collector: Collector, server: ThirdParty) -> None:
    client = make_client(collector)
    pool = urllib3.PoolManager()
    assert pool.request("GET", server.url("/json")).data == JSON_BODY
    streamed = pool.request("GET", server.url("/chunked"), preload_content=False)
    assert b"".join(streamed.stream(4)) == b"".join(CHUNKS)
    streamed.release_conn()
    assert pool.request("GET", server.url("/gzip")).data == JSON_BODY
    raw = pool.request("GET", server.url("/gzip"), preload_content=False, decode_content=False)
    assert raw.read() != JSON_BODY
    raw.release_conn()
    preloaded, chunked, gzipped, raw_gzip = outgoing(collector, client, 4)
    assert preloaded["response"]["body"] == {"hello": "world"}
    assert raw_body(chunked["response"]) == b"".join(CHUNKS)
    # Decoded by urllib3 (then without Content-Encoding) or as sent: the body reads the same.
    assert gzipped["response"]["body"] == {"hello": "world"}
    assert raw_gzip["response"]["body"] == {"hello": "world"}
    assert raw_gzip["response"]["headers"]["Content-Encoding"] == "gzip"


def test_urllib3_redirects_followed_by_the_pool_manager(
    collector: Collector, server: ThirdParty
) -> None:
    client = make_client(collector)
    assert urllib3.PoolManager().request("GET", server.url("/redirect")).data == JSON_BODY
    hop, final = outgoing(collector, client, 2)
    assert [hop["response"]["status"], final["response"]["status"]] == [302, 200]


# ---------------------------------------------------------------------- httpx


def test_httpx_sync_plain_streamed_redirect_and_500(
    collector: Collector, server: ThirdParty
) -> None:
    client = make_client(collector)
    with httpx.Client() as http:
        assert http.post(server.url("/echo"), content=b'{"a": 1}').json() == {"a": 1}
        with http.stream("GET", server.url("/chunked")) as reply:
            assert b"".join(reply.iter_raw()) == b"".join(CHUNKS)
        assert http.get(server.url("/redirect"), follow_redirects=True).status_code == 200
        assert http.get(server.url("/fail")).status_code == 500
        assert http.get(server.url("/gzip")).json() == {"hello": "world"}
    echo, chunked, hop, final, failed, gzipped = outgoing(collector, client, 6)
    assert echo["request"]["body"] == {"a": 1} and echo["response"]["body"] == {"a": 1}
    assert raw_body(chunked["response"]) == b"".join(CHUNKS)
    assert (hop["response"]["status"], final["response"]["status"]) == (302, 200)
    assert failed["response"]["status"] == 500
    assert gzipped["response"]["body"] == {"hello": "world"}


def test_httpx_async(collector: Collector, server: ThirdParty) -> None:
    client = make_client(collector)

    async def calls() -> None:
        async with httpx.AsyncClient() as http:
            assert (await http.get(server.url("/json"))).json() == {"hello": "world"}
            async with http.stream("GET", server.url("/chunked")) as reply:
                assert b"".join([part async for part in reply.aiter_bytes()]) == b"".join(CHUNKS)
            with pytest.raises(httpx.ReadTimeout):
                await http.get(server.url("/slow"), timeout=0.2)

    run_coroutine(calls())
    plain, streamed, timed_out = outgoing(collector, client, 3)
    assert plain["response"]["body"] == {"hello": "world"}
    assert raw_body(streamed["response"]) == b"".join(CHUNKS)
    assert "ReadTimeout" in timed_out["metadata"]["error"]


# ---------------------------------------------------------------------- options


def test_hooks_receive_the_clients_objects(collector: Collector, server: ThirdParty) -> None:
    seen: List[Any] = []

    def metadata(req: Any, res: Any) -> Dict[str, Any]:
        seen.append((req, res))
        return {"client": type(res).__module__.split(".")[0]}

    client = make_client(
        collector,
        IDENTIFY_USER_OUTGOING=lambda req, res: "user-7",
        IDENTIFY_COMPANY_OUTGOING=lambda req, res: "company-3",
        GET_SESSION_TOKEN_OUTGOING=lambda req, res: "token-1",
        GET_METADATA_OUTGOING=metadata,
        SKIP_OUTGOING=lambda req, res: "skip-me" in str(req.url),
    )
    requests.get(server.url("/json"))
    httpx.get(server.url("/json"))
    requests.get(server.url("/json?skip-me=1"))
    via_requests, via_httpx = outgoing(collector, client, 2)
    assert client.stats()["skipped"] == 1
    for event in (via_requests, via_httpx):
        assert (event["user_id"], event["company_id"], event["session_token"]) == (
            "user-7",
            "company-3",
            "token-1",
        )
    assert via_requests["metadata"] == {"client": "urllib3"}
    assert via_httpx["metadata"] == {"client": "httpx"}
    (urllib3_req, urllib3_res), (httpx_req, httpx_res) = seen
    assert urllib3_req.method == "GET" and urllib3_req.url == server.url("/json")
    assert isinstance(urllib3_res, urllib3.HTTPResponse) and urllib3_res.status == 200
    assert isinstance(httpx_req, httpx.Request) and isinstance(httpx_res, httpx.Response)


def test_a_raising_hook_is_logged_once_and_the_call_goes_on(
    collector: Collector, server: ThirdParty, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(req: Any, res: Any) -> Any:
        raise RuntimeError("hook bug")

    client = make_client(collector, GET_METADATA_OUTGOING=broken, IDENTIFY_USER_OUTGOING=broken)
    with caplog.at_level(logging.WARNING, logger="moesif_integrations"):
        for _ in range(3):
            assert requests.get(server.url("/json")).json() == {"hello": "world"}
    outgoing(collector, client, 3)
    assert client.stats()["hook_errors"] == 6
    lines = [r for r in caplog.records if "GET_METADATA_OUTGOING raised" in r.getMessage()]
    assert len(lines) == 1


def test_log_body_outgoing_off_and_headers_masked(collector: Collector, server: ThirdParty) -> None:
    client = make_client(collector, LOG_BODY_OUTGOING=False)
    requests.post(
        server.url("/echo"), json={"a": 1}, headers={"Authorization": "Bearer secret-token"}
    )
    (event,) = outgoing(collector, client, 1)
    assert "body" not in event["request"] and "body" not in event["response"]
    assert "secret-token" not in str(event["request"]["headers"])


def test_mask_event_model_applies(collector: Collector, server: ThirdParty) -> None:
    def mask(event: Any) -> Any:
        event.response.body["hello"] = "masked"
        return event

    client = make_client(collector, MASK_EVENT_MODEL=mask)
    requests.get(server.url("/json"))
    (event,) = outgoing(collector, client, 1)
    assert event["response"]["body"] == {"hello": "masked"}


def test_a_hook_that_calls_out_is_not_captured(collector: Collector, server: ThirdParty) -> None:
    def metadata(req: Any, res: Any) -> Dict[str, Any]:
        return {"looked_up": requests.get(server.url("/json")).json()["hello"]}

    client = make_client(collector, GET_METADATA_OUTGOING=metadata)
    requests.get(server.url("/echo"))
    (event,) = outgoing(collector, client, 1)
    assert event["metadata"] == {"looked_up": "world"}


# ---------------------------------------------------------------------- the collector


def test_calls_to_the_collector_are_never_captured(collector: Collector) -> None:
    client = make_client(collector)
    assert requests.get(collector.url + "/v1/config").status_code in (200, 304, 401)
    httpx.get(collector.url + "/v1/config")
    assert client.update_user({"user_id": "u1"}, sync=True)
    outgoing(collector, client, 0)


def test_delivery_process_is_never_captured(collector: Collector, server: ThirdParty) -> None:
    client = make_client(collector, DELIVERY_PROCESS=True)
    requests.get(server.url("/json"))
    (event,) = outgoing(collector, client, 1)
    assert event["request"]["uri"] == server.url("/json")
    assert "X-Moesif-Transaction-Id" not in event["request"]["headers"]
    assert len(collector.events()) == 1


# ---------------------------------------------------------------------- incoming requests


def test_an_outgoing_call_carries_its_incoming_request(
    collector: Collector, server: ThirdParty
) -> None:
    def app(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
        body = requests.get(server.url("/json")).content
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    middleware = shut_down_after_test(
        MoesifMiddleware(
            app, collector_settings(collector.url, APP_ID, CAPTURE_OUTGOING_REQUESTS=True)
        )
    )
    result = call(middleware, "GET", "/proxy")
    assert result.body == JSON_BODY
    # Outside a request, the same integration is the default: no incoming id.
    requests.get(server.url("/json"))
    assert middleware.flush(5)
    events = collector.events()
    (incoming,) = [event for event in events if event["direction"] == "Incoming"]
    inside, outside = [event for event in events if event["direction"] == "Outgoing"]
    assert inside["metadata"] == {"incoming_transaction_id": incoming["transaction_id"]}
    assert outside["metadata"] is None


def test_asgi_request_joins_its_outgoing_call(collector: Collector, server: ThirdParty) -> None:
    falcon_asgi = pytest.importorskip("falcon.asgi")
    from asgi_client import call_asgi

    from moesif_integrations.falcon import MoesifMiddleware as FalconMiddleware

    class Proxy:
        async def on_get(self, req: Any, resp: Any) -> None:
            async with httpx.AsyncClient() as http:
                resp.data = (await http.get(server.url("/json"))).content

    middleware = shut_down_after_test(
        FalconMiddleware(collector_settings(collector.url, APP_ID, CAPTURE_OUTGOING_REQUESTS=True))
    )
    app = falcon_asgi.App(middleware=[middleware])
    app.add_route("/proxy", Proxy())
    assert call_asgi(app, "GET", "/proxy", [b""], [])["body"] == JSON_BODY
    assert middleware.flush(5)
    events = collector.events()
    (incoming,) = [event for event in events if event["direction"] == "Incoming"]
    (out,) = [event for event in events if event["direction"] == "Outgoing"]
    assert out["metadata"] == {"incoming_transaction_id": incoming["transaction_id"]}


# ---------------------------------------------------------------------- the patches


def test_patches_are_installed_once_and_uninstall_restores_the_originals(
    collector: Collector, server: ThirdParty
) -> None:
    assert not patches.installed()
    first = make_client(collector)
    patched = urllib3.HTTPConnectionPool.urlopen
    assert patched is not ORIGINAL_URLOPEN
    assert patched.__wrapped__ is ORIGINAL_URLOPEN  # type: ignore[attr-defined]
    second = make_client(collector, APPLICATION_ID="second")
    assert urllib3.HTTPConnectionPool.urlopen is patched
    second.capture_outgoing(False)
    assert urllib3.HTTPConnectionPool.urlopen is patched  # the first still captures
    first.capture_outgoing(False)
    assert urllib3.HTTPConnectionPool.urlopen is ORIGINAL_URLOPEN
    first.capture_outgoing(True)
    assert patches.installed()
    patches.uninstall()
    assert urllib3.HTTPConnectionPool.urlopen is ORIGINAL_URLOPEN
    assert httpx.HTTPTransport.handle_request is ORIGINAL_HANDLE
    assert httpx.AsyncHTTPTransport.handle_async_request is ORIGINAL_HANDLE_ASYNC
    requests.get(server.url("/json"))
    outgoing(collector, first, 0)


def test_two_integrations_in_one_process(collector: Collector, server: ThirdParty) -> None:
    def tagged(name: str) -> Any:
        return lambda req, res: {"by": name}

    def app(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
        requests.get(server.url("/json"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    web = shut_down_after_test(
        MoesifMiddleware(
            app,
            collector_settings(
                collector.url,
                "web",
                CAPTURE_OUTGOING_REQUESTS=True,
                GET_METADATA_OUTGOING=tagged("web"),
            ),
        )
    )
    script = make_client(collector, APPLICATION_ID="script", GET_METADATA_OUTGOING=tagged("script"))
    call(web, "GET", "/")  # the request's integration: web
    requests.get(server.url("/json"))  # outside a request: the latest default, script
    script.capture_outgoing(False)
    requests.get(server.url("/json"))  # script stopped: web is the default again
    assert web.flush(5) and script.flush(5)
    calls = [event for event in collector.events() if event["direction"] == "Outgoing"]
    tags = [event["metadata"]["by"] for event in sorted(calls, key=lambda e: e["request"]["time"])]
    assert tags == ["web", "script", "web"]


def test_capture_off_by_default(collector: Collector, server: ThirdParty) -> None:
    client = shut_down_after_test(MoesifClient(collector_settings(collector.url, APP_ID)))
    assert not client.capturing_outgoing and not patches.installed()
    requests.get(server.url("/json"))
    outgoing(collector, client, 0)
