"""Users, companies, subscriptions and actions, against the real local collector."""

from __future__ import annotations

import datetime
import decimal
import logging
import os
import socket
import time
from dataclasses import replace
from typing import Any, Callable, Dict, Iterator, List

import pytest
from moesifapi.models import CampaignModel, CompanyModel, SubscriptionModel, UserModel

from moesif_integrations import MoesifMiddleware
from moesif_integrations.collector import Collector
from moesif_integrations.core.config.schema import Settings
from moesif_integrations.core.counters import Counters
from moesif_integrations.core.delivery import profile_senders
from moesif_integrations.core.delivery.profile_senders import ProfileClient

APP_ID = "profiles-app-id"
ClientFactory = Callable[..., ProfileClient]


@pytest.fixture
def make_client(collector: Collector) -> Iterator[ClientFactory]:
    made: List[ProfileClient] = []

    def factory(base_uri: str = "", **options: Any) -> ProfileClient:
        settings = Settings(
            application_id=APP_ID,
            base_uri=base_uri or collector.url,
            **{"retry_backoff": 0.02, "max_retries": 1, **options},
        )
        client = ProfileClient(settings, Counters())
        made.append(client)
        return client

    yield factory
    collector.heal()
    for client in made:
        client.queue.shutdown(timeout=1)


@pytest.fixture
def client(make_client: ClientFactory) -> ProfileClient:
    return make_client()


def free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def hello(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


# ---------------------------------------------------------------------- each kind, single


def test_single_items_of_each_kind_go_to_their_single_endpoints(
    client: ProfileClient, collector: Collector
) -> None:
    assert client.update_user({"user_id": "u1", "metadata": {"plan": "gold"}})
    assert client.update_company({"company_id": "c1", "company_domain": "acme.com"})
    assert client.update_subscription(
        {"subscription_id": "s1", "company_id": "c1", "status": "active"}
    )
    assert client.send_action({"action_name": "Signed Up", "user_id": "u1"})
    assert client.queue.flush(timeout=5)

    assert collector.users() == [{"user_id": "u1", "metadata": {"plan": "gold"}}]
    assert collector.companies() == [{"company_id": "c1", "company_domain": "acme.com"}]
    assert collector.subscriptions() == [
        {"subscription_id": "s1", "company_id": "c1", "status": "active"}
    ]
    (action,) = collector.actions()
    assert action["action_name"] == "Signed Up" and action["user_id"] == "u1"
    for path in ("/v1/users", "/v1/companies", "/v1/subscriptions", "/v1/actions"):
        assert collector.request_count(path) == 1
        assert collector.request_count(path + "/batch") == 0
    stats = client.counters.snapshot()
    assert stats["profiles_sent"] == 4
    assert stats["profiles_failed"] == 0 and stats["profiles_dropped"] == 0


def test_requests_carry_the_application_id_and_user_agent(
    client: ProfileClient, collector: Collector
) -> None:
    assert client.update_user({"user_id": "u1"}, sync=True)
    headers = collector.last_request_headers("/v1/users")
    assert headers["x-moesif-application-id"] == APP_ID
    assert headers["user-agent"].startswith("moesif-integrations-python/")
    assert headers["content-type"].startswith("application/json")


# ---------------------------------------------------------------------- each kind, batch


def test_batches_of_each_kind_go_to_their_batch_endpoints(
    client: ProfileClient, collector: Collector
) -> None:
    assert client.update_users_batch([{"user_id": "u1"}, {"user_id": "u2"}])
    assert client.update_companies_batch([{"company_id": "c1"}, {"company_id": "c2"}])
    assert client.update_subscriptions_batch(
        [
            {"subscription_id": "s1", "company_id": "c1"},
            {"subscription_id": "s2", "company_id": "c2"},
        ]
    )
    assert client.send_actions_batch([{"action_name": "a"}, {"action_name": "b"}])
    assert client.queue.flush(timeout=5)

    assert [u["user_id"] for u in collector.users()] == ["u1", "u2"]
    assert [c["company_id"] for c in collector.companies()] == ["c1", "c2"]
    assert [s["subscription_id"] for s in collector.subscriptions()] == ["s1", "s2"]
    assert [a["action_name"] for a in collector.actions()] == ["a", "b"]
    for path in ("/v1/users", "/v1/companies", "/v1/subscriptions", "/v1/actions"):
        assert collector.request_count(path + "/batch") == 1
        assert collector.request_count(path) == 0
    assert client.counters.get("profiles_sent") == 8


def test_sync_batch_is_split_into_batch_size_calls(
    make_client: ClientFactory, collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(profile_senders, "_BATCH_ITEMS", 3)
    client = make_client()
    users = [{"user_id": f"u{n}"} for n in range(7)]
    assert client.update_users_batch(users, sync=True)
    assert [u["user_id"] for u in collector.users()] == [f"u{n}" for n in range(7)]
    assert collector.request_count("/v1/users/batch") == 3  # 3 + 3 + 1
    assert collector.request_count("/v1/users") == 0


def test_items_queued_while_the_sender_is_busy_are_coalesced(
    client: ProfileClient, collector: Collector
) -> None:
    collector.delay(0.4, count=1)
    assert client.update_user({"user_id": "first"})
    collector.wait_for_requests(1, "/v1/users", timeout=5)  # the sender is now waiting on it
    for n in range(5):
        assert client.update_user({"user_id": f"later-{n}"})
    assert client.queue.flush(timeout=5)
    assert [u["user_id"] for u in collector.users()] == ["first"] + [f"later-{n}" for n in range(5)]
    assert collector.request_count("/v1/users") == 1
    assert collector.request_count("/v1/users/batch") == 1


def test_empty_batch_sends_nothing(client: ProfileClient, collector: Collector) -> None:
    assert client.update_users_batch([])
    assert client.update_companies_batch([], sync=True)
    assert client.queue.flush(timeout=5)
    assert collector.request_counts()["/v1/users/batch"] == 0
    assert collector.request_counts()["/v1/companies/batch"] == 0


# ---------------------------------------------------------------------- models and values


def test_moesifapi_models_are_accepted(client: ProfileClient, collector: Collector) -> None:
    modified = datetime.datetime(2026, 1, 2, 3, 4, 5, 678000)
    user = UserModel(
        user_id="u-model",
        company_id="c-model",
        modified_time=modified,
        metadata={"email": "ada@example.com"},
        campaign=CampaignModel(utm_source="newsletter", referrer="https://example.com"),
    )
    company = CompanyModel(company_id="c-model", company_domain="example.com")
    subscription = SubscriptionModel(
        subscription_id="s-model",
        company_id="c-model",
        current_period_start=datetime.datetime(2026, 1, 1),
        current_period_end=datetime.datetime(2026, 2, 1),
        status="active",
    )
    assert client.update_user(user, sync=True)
    assert client.update_companies_batch([company, {"company_id": "c-dict"}], sync=True)
    assert client.update_subscription(subscription, sync=True)

    assert collector.users() == [
        {
            "user_id": "u-model",
            "company_id": "c-model",
            "modified_time": "2026-01-02T03:04:05.678000",
            "metadata": {"email": "ada@example.com"},
            # unset fields of the models are left out, not sent as nulls
            "campaign": {"utm_source": "newsletter", "referrer": "https://example.com"},
        }
    ]
    assert collector.companies() == [
        {"company_id": "c-model", "company_domain": "example.com"},
        {"company_id": "c-dict"},
    ]
    assert collector.subscriptions() == [
        {
            "subscription_id": "s-model",
            "company_id": "c-model",
            "current_period_start": "2026-01-01T00:00:00",
            "current_period_end": "2026-02-01T00:00:00",
            "status": "active",
        }
    ]


def test_datetimes_anywhere_become_iso_strings(client: ProfileClient, collector: Collector) -> None:
    utc = datetime.timezone.utc
    assert client.update_user(
        {
            "user_id": "u1",
            "modified_time": datetime.datetime(2026, 3, 4, 5, 6, 7, tzinfo=utc),
            "metadata": {
                "signed_up": datetime.date(2025, 12, 31),
                "logins": [datetime.datetime(2026, 3, 1, 12, 0)],
                "nested": {"at": datetime.time(8, 30)},
                "balance": decimal.Decimal("12.50"),
            },
        }
    )
    assert client.update_subscription(
        {
            "subscription_id": "s1",
            "company_id": "c1",
            "current_period_start": datetime.datetime(2026, 3, 1),
            "items": [{"plan_id": "p1", "created_at": datetime.datetime(2026, 2, 28, 23, 59)}],
        }
    )
    assert client.queue.flush(timeout=5)
    (user,) = collector.users()
    assert user["modified_time"] == "2026-03-04T05:06:07+00:00"
    assert user["metadata"] == {
        "signed_up": "2025-12-31",
        "logins": ["2026-03-01T12:00:00"],
        "nested": {"at": "08:30:00"},
        "balance": 12.5,
    }
    (subscription,) = collector.subscriptions()
    assert subscription["current_period_start"] == "2026-03-01T00:00:00"
    assert subscription["items"] == [{"plan_id": "p1", "created_at": "2026-02-28T23:59:00"}]


def test_json_text_is_accepted_as_moesifapi_did(
    client: ProfileClient, collector: Collector
) -> None:
    assert client.update_user('{"user_id": "from-text", "metadata": {"a": 1}}', sync=True)
    assert client.update_users_batch(['{"user_id": "t1"}', b'{"user_id": "t2"}'], sync=True)
    assert [u["user_id"] for u in collector.users()] == ["from-text", "t1", "t2"]
    with pytest.raises(ValueError, match="JSON object"):
        client.update_user('["not", "an", "object"]')
    with pytest.raises(ValueError, match="must be JSON"):
        client.update_user("user_id=u1")


def test_the_queued_item_is_a_snapshot_of_the_call(
    client: ProfileClient, collector: Collector
) -> None:
    collector.delay(0.3, count=1)
    profile: Dict[str, Any] = {"user_id": "u1", "metadata": {"plan": "free"}}
    assert client.update_user(profile)
    profile["metadata"]["plan"] = "changed after the call"
    profile["user_id"] = "someone else"
    assert client.queue.flush(timeout=5)
    assert collector.users() == [{"user_id": "u1", "metadata": {"plan": "free"}}]


def test_an_action_without_a_time_gets_the_time_of_the_call(
    client: ProfileClient, collector: Collector
) -> None:
    before = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert client.send_action({"action_name": "no time", "request": {"uri": "https://x/y"}})
    assert client.send_action(
        {"action_name": "own time", "request": {"time": "2026-01-01T00:00:00.000"}}
    )
    assert client.send_action({"action_name": "no request"})
    assert client.queue.flush(timeout=5)
    stamped, own, bare = collector.actions()
    assert stamped["request"]["uri"] == "https://x/y"
    stamped_at = datetime.datetime.fromisoformat(stamped["request"]["time"])
    assert (
        before - datetime.timedelta(seconds=1)
        <= stamped_at
        <= before + datetime.timedelta(seconds=10)
    )
    assert own["request"] == {"time": "2026-01-01T00:00:00.000"}
    assert set(bare["request"]) == {"time"}


# ---------------------------------------------------------------------- caller's errors


@pytest.mark.parametrize(
    ("method", "item", "field"),
    [
        ("update_user", {"metadata": {}}, "user_id"),
        ("update_user", {"user_id": ""}, "user_id"),
        ("update_user", {"user_id": None, "company_id": "c"}, "user_id"),
        ("update_user", UserModel(company_id="c"), "user_id"),
        ("update_company", {"company_domain": "x.com"}, "company_id"),
        ("update_subscription", {"company_id": "c1"}, "subscription_id"),
        ("update_subscription", {"subscription_id": "s1"}, "company_id"),
        ("send_action", {"user_id": "u1"}, "action_name"),
    ],
)
def test_a_missing_required_field_raises_value_error_naming_it(
    client: ProfileClient, collector: Collector, method: str, item: Any, field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        getattr(client, method)(item)
    with pytest.raises(ValueError, match=field):
        getattr(client, method)(item, sync=True)
    assert client.queue.flush(timeout=5)
    assert sum(collector.request_counts().values()) == 0


def test_one_bad_item_refuses_the_whole_batch(client: ProfileClient, collector: Collector) -> None:
    with pytest.raises(ValueError, match=r"users\[1\].*user_id"):
        client.update_users_batch([{"user_id": "ok"}, {"company_id": "c1"}, {"user_id": "ok2"}])
    assert client.queue.flush(timeout=5)
    assert client.queue.queued() == 0
    assert collector.request_counts()["/v1/users/batch"] == 0


@pytest.mark.parametrize("bad", [42, ["user_id"], object()])
def test_something_that_is_not_a_profile_raises_type_error(client: ProfileClient, bad: Any) -> None:
    with pytest.raises(TypeError, match="must be a dict"):
        client.update_user(bad)


def test_a_batch_must_be_a_list(client: ProfileClient) -> None:
    with pytest.raises(TypeError, match="batch of users"):
        client.update_users_batch({"user_id": "u1"})
    with pytest.raises(TypeError, match="batch of companies"):
        client.update_companies_batch('[{"company_id": "c1"}]')


def test_a_value_json_cannot_carry_is_counted_not_raised(
    client: ProfileClient, collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "moesif_integrations")
    bad = {"user_id": "bad", "metadata": {"thing": object()}}
    assert client.update_user(bad) is False
    # The good item of the batch is still sent; False says not all of the call went.
    batch = [{"user_id": "good"}, bad, {"user_id": "nan", "x": 1e999}]
    assert client.update_users_batch(batch) is False
    assert client.update_user(bad, sync=True) is False
    assert client.queue.flush(timeout=5)
    # A non-finite number goes as null, as JSON cannot say more of it: that item is sent.
    assert [u["user_id"] for u in collector.users()] == ["good", "nan"]
    assert collector.users()[1]["x"] is None
    assert client.counters.get("profiles_failed") == 3
    lines = [r for r in caplog.records if "serialised" in r.getMessage()]
    assert len(lines) == 1  # once, not once per item
    assert "bad" not in lines[0].getMessage()


# ---------------------------------------------------------------------- network trouble


def test_collector_down_is_counted_and_logged_once_not_raised(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "moesif_integrations")
    client = make_client(base_uri=free_port(), max_retries=1, retry_backoff=0.01)
    assert client.update_user({"user_id": "u1"})
    # Nothing was delivered: False (unless the sender gave up before the flush began).
    client.queue.flush(timeout=5)
    assert client.update_companies_batch([{"company_id": "c1"}, {"company_id": "c2"}])
    client.queue.flush(timeout=5)
    assert client.update_user({"user_id": "u2"}, sync=True) is False
    stats = client.counters.snapshot()
    assert stats["profiles_failed"] == 4 and stats["profiles_sent"] == 0
    unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(unreachable) == 1
    assert APP_ID not in caplog.text


def test_calls_return_at_once_with_a_hanging_collector(
    make_client: ClientFactory, collector: Collector
) -> None:
    collector.hang()
    client = make_client(read_timeout=0.5, max_retries=0)
    started = time.perf_counter()
    assert client.update_user({"user_id": "u1", "metadata": {"when": datetime.datetime.now()}})
    assert client.update_users_batch([{"user_id": f"u{n}"} for n in range(50)])
    assert client.update_company({"company_id": "c1"})
    assert client.send_action({"action_name": "a"})
    assert time.perf_counter() - started < 0.05
    # The sender gives up after its read timeout; the failures are counted, and the flush
    # that waited for them says that not everything went.
    assert not client.queue.flush(timeout=5)
    assert client.counters.get("profiles_failed") == 53
    assert client.counters.get("profiles_sent") == 0


def test_sync_call_to_a_hanging_collector_returns_false_after_the_timeout(
    make_client: ClientFactory, collector: Collector
) -> None:
    collector.hang()
    client = make_client(read_timeout=0.3, max_retries=3, retry_backoff=0.05)
    started = time.monotonic()
    assert client.update_user({"user_id": "u1"}, sync=True) is False
    # Retries are cut short by the sync call's budget (connect + read timeout).
    assert time.monotonic() - started < 2.0
    assert client.counters.get("profiles_failed") == 1


def test_flush_gives_up_at_its_timeout(make_client: ClientFactory, collector: Collector) -> None:
    collector.hang()
    client = make_client(read_timeout=30)
    assert client.update_user({"user_id": "u1"})
    started = time.monotonic()
    assert client.queue.flush(timeout=0.3) is False
    assert time.monotonic() - started < 1.0
    assert client.queue.queued() == 1


def test_transient_failures_are_retried(make_client: ClientFactory, collector: Collector) -> None:
    collector.fail(503, count=2)
    client = make_client(max_retries=3, retry_backoff=0.02)
    assert client.update_user({"user_id": "u1"}, sync=True)
    assert [u["user_id"] for u in collector.users()] == ["u1"]
    assert collector.request_count("/v1/users") == 3


def test_a_wrong_application_id_is_logged_as_an_error(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "moesif_integrations")
    with Collector(application_ids={"the-right-id"}) as strict:
        client = make_client(base_uri=strict.url)
        assert client.update_user({"user_id": "u1"}, sync=True) is False
        assert client.update_user({"user_id": "u2"}, sync=True) is False
        assert strict.request_count("/v1/users") == 2  # 401 is not retried
        assert strict.users() == []
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "401" in r.getMessage()]
    assert len(errors) == 1
    assert APP_ID not in caplog.text
    assert client.counters.get("profiles_failed") == 2


def test_a_full_queue_drops_the_whole_call_and_counts_it(
    make_client: ClientFactory, collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector.hang()
    rules = replace(profile_senders._QUEUE_RULES, max_items=3)
    monkeypatch.setattr(profile_senders, "_QUEUE_RULES", rules)
    client = make_client(read_timeout=0.3, max_retries=0)
    assert client.update_users_batch([{"user_id": f"u{n}"} for n in range(4)]) is False
    assert client.counters.get("profiles_dropped") == 4
    assert client.queue.queued() == 0
    assert client.update_users_batch([{"user_id": f"u{n}"} for n in range(3)])
    assert client.queue.queued() == 3


def test_calls_after_shutdown_are_dropped(client: ProfileClient, collector: Collector) -> None:
    assert client.update_user({"user_id": "before"})
    assert client.queue.shutdown(timeout=5)
    assert client.update_user({"user_id": "after"}) is False
    assert client.counters.get("profiles_dropped") == 1
    assert [u["user_id"] for u in collector.users()] == ["before"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_sends_its_own_updates(client: ProfileClient, collector: Collector) -> None:
    assert client.update_user({"user_id": "parent"})
    assert client.queue.flush(timeout=5)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            client.update_user({"user_id": "child"})
            code = 0 if client.queue.flush(timeout=5) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sorted(u["user_id"] for u in collector.wait_for("users", 2)) == ["child", "parent"]


# ---------------------------------------------------------------------- the middleware


def test_middleware_update_user_works_as_in_moesifwsgi(collector: Collector) -> None:
    middleware = MoesifMiddleware(hello, {"APPLICATION_ID": APP_ID, "BASE_URI": collector.url})
    try:
        middleware.update_user({"user_id": "u1", "modified_time": datetime.datetime(2026, 1, 1)})
        middleware.update_users_batch([UserModel(user_id="u2"), {"user_id": "u3"}])
        middleware.update_company(CompanyModel(company_id="c1"))
        middleware.update_companies_batch([{"company_id": "c2"}])
        middleware.update_subscription({"subscription_id": "s1", "company_id": "c1"})
        middleware.update_subscriptions_batch([{"subscription_id": "s2", "company_id": "c2"}])
        middleware.send_action({"action_name": "Clicked"})
        middleware.send_actions_batch([{"action_name": "Bought"}])
        assert middleware.flush(timeout=5)  # the middleware's flush covers profile updates
        assert collector.users()[0] == {"user_id": "u1", "modified_time": "2026-01-01T00:00:00"}
        assert [u["user_id"] for u in collector.users()] == ["u1", "u2", "u3"]
        assert [c["company_id"] for c in collector.companies()] == ["c1", "c2"]
        assert [s["subscription_id"] for s in collector.subscriptions()] == ["s1", "s2"]
        assert [a["action_name"] for a in collector.actions()] == ["Clicked", "Bought"]
        assert middleware.stats()["profiles_sent"] == 9
        with pytest.raises(ValueError, match="user_id"):
            middleware.update_user({"email": "no-id@example.com"})
    finally:
        middleware.shutdown(timeout=1)


def test_middleware_shutdown_delivers_queued_updates(collector: Collector) -> None:
    middleware = MoesifMiddleware(hello, {"APPLICATION_ID": APP_ID, "BASE_URI": collector.url})
    collector.delay(0.2, count=1)
    assert middleware.update_user({"user_id": "u1"})
    assert middleware.shutdown(timeout=5)
    assert collector.users() == [{"user_id": "u1"}]


def test_disabled_middleware_sends_nothing(collector: Collector) -> None:
    middleware = MoesifMiddleware(
        hello, {"APPLICATION_ID": APP_ID, "BASE_URI": collector.url, "ENABLED": False}
    )
    assert middleware.update_user({"user_id": "u1"}) is False
    assert middleware.update_user({"user_id": "u1"}, sync=True) is False
    assert collector.request_counts()["/v1/users"] == 0
