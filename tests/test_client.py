"""MoesifClient: Moesif for scripts, workers and cron jobs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest
from harness import collector_settings, shut_down_after_test

from moesif_integrations import ConfigurationError, MoesifClient
from moesif_integrations.collector import Collector

ROOT = Path(__file__).resolve().parent.parent
APP_ID = "client-app"


def test_the_cron_example_runs_as_a_script_and_every_update_arrives(
    collector: Collector,
) -> None:
    env: Dict[str, Any] = dict(os.environ)
    env.update(MOESIF_APPLICATION_ID=APP_ID, MOESIF_BASE_URI=collector.url)
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "client" / "nightly_sync.py")],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    # Leaving the with block flushed: everything is there when the script has ended.
    assert sorted(user["user_id"] for user in collector.users()) == ["u-1", "u-2", "u-3"]
    assert collector.users()[0]["metadata"]["synced_at"]  # a date, sent as text
    assert sorted(c["company_id"] for c in collector.companies()) == ["acme", "initech"]
    assert [s["subscription_id"] for s in collector.subscriptions()] == ["sub-acme"]
    (action,) = collector.actions()
    assert action["action_name"] == "Nightly Sync" and action["metadata"] == {"rows": 3}


def test_every_profile_call_and_the_context_manager(collector: Collector) -> None:
    client = shut_down_after_test(MoesifClient(collector_settings(collector.url, APP_ID)))
    with client as moesif:
        assert moesif is client
        assert moesif.update_user({"user_id": "u1"})
        assert moesif.update_users_batch([{"user_id": "u2"}, {"user_id": "u3"}])
        assert moesif.update_company({"company_id": "c1"})
        assert moesif.update_companies_batch([{"company_id": "c2"}])
        assert moesif.update_subscription({"subscription_id": "s1", "company_id": "c1"})
        assert moesif.update_subscriptions_batch([{"subscription_id": "s2", "company_id": "c2"}])
        assert moesif.send_action({"action_name": "a1"})
        assert moesif.send_actions_batch([{"action_name": "a2"}, {"action_name": "a3"}])
    counts = {kind: collector.count(kind) for kind in ("users", "companies", "subscriptions")}
    assert counts == {"users": 3, "companies": 2, "subscriptions": 2}
    assert collector.count("actions") == 3
    assert client.stats()["profiles_failed"] == 0
    assert client.shutdown(5)


def test_same_schema_and_nothing_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="LOG_BODDY"):
        MoesifClient({"APPLICATION_ID": APP_ID, "LOG_BODDY": True})
    monkeypatch.setenv("MOESIF_APPLICATION_ID", "from-env")
    # Port 1 refuses: building the client and switching capture on touch no network.
    client = MoesifClient(BASE_URI="http://127.0.0.1:1", CAPTURE_OUTGOING_REQUESTS=True)
    shut_down_after_test(client, timeout=0.1)
    assert client.settings.application_id == "from-env"
    assert client.capturing_outgoing
    client.capture_outgoing(False)
    assert not client.capturing_outgoing
    disabled = MoesifClient(APPLICATION_ID=APP_ID, ENABLED=False)
    assert not disabled.update_user({"user_id": "u1"}) and disabled.stats() == {}
    disabled.capture_outgoing(True)
    assert not disabled.capturing_outgoing
