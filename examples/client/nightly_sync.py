"""A cron job that pushes the day's accounts to Moesif, with no web app around it.

    MOESIF_APPLICATION_ID=... python examples/client/nightly_sync.py

Settings come from the environment (MOESIF_<OPTION>) as for every integration; leaving the
``with`` block flushes what was queued, so nothing is lost when the script ends.
"""

from __future__ import annotations

import datetime

from moesif_integrations import MoesifClient


def accounts() -> list[dict]:
    """Stands in for the app's own database query."""
    return [
        {"user_id": "u-1", "company_id": "acme", "email": "ada@acme.test", "plan": "pro"},
        {"user_id": "u-2", "company_id": "acme", "email": "alan@acme.test", "plan": "pro"},
        {"user_id": "u-3", "company_id": "initech", "email": "pat@initech.test", "plan": "free"},
    ]


def main() -> None:
    rows = accounts()
    with MoesifClient() as moesif:
        moesif.update_users_batch(
            [
                {
                    "user_id": row["user_id"],
                    "company_id": row["company_id"],
                    "metadata": {"email": row["email"], "synced_at": datetime.date.today()},
                }
                for row in rows
            ]
        )
        for company in sorted({row["company_id"] for row in rows}):
            moesif.update_company({"company_id": company, "metadata": {"source": "nightly"}})
        moesif.update_subscription(
            {"subscription_id": "sub-acme", "company_id": "acme", "status": "active"}
        )
        moesif.send_action({"action_name": "Nightly Sync", "metadata": {"rows": len(rows)}})


if __name__ == "__main__":
    main()
