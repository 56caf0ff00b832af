"""What every integration object offers, written once: lifecycle, counters and profiles.

The generic middleware, the Flask app state, the Bottle plugin, the Pyramid integration and the
Falcon middleware each own one Pipeline (None when ENABLED is false) and inherit these methods.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from .pipeline import Pipeline


class IntegrationMethods:
    pipeline: Optional[Pipeline]

    # -- lifecycle ---------------------------------------------------------------------------

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Delivers what is queued; True when all of it reached the collector in time.

        Blocks: under ASGI call it off the event loop (``loop.run_in_executor``)."""
        return self.pipeline.flush(timeout) if self.pipeline else True

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Flushes within ``timeout`` (default SHUTDOWN_TIMEOUT) and stops the sender threads."""
        return self.pipeline.shutdown(timeout) if self.pipeline else True

    def stats(self) -> Dict[str, int]:
        """Counters: captured, sent, skipped, sampled_out, dropped_*, failed, queued, ..."""
        return self.pipeline.stats() if self.pipeline else {}

    # -- users, companies, subscriptions, actions (moesifwsgi's methods, plus the rest) ----
    # Queued and sent in the background unless sync=True; never raise for network errors;
    # False when capture is disabled or the item could not be queued / delivered.

    def update_user(self, user_profile: Any, *, sync: bool = False) -> bool:
        return (
            self.pipeline.profiles.update_user(user_profile, sync=sync) if self.pipeline else False
        )

    def update_users_batch(self, user_profiles: Any, *, sync: bool = False) -> bool:
        if self.pipeline is None:
            return False
        return self.pipeline.profiles.update_users_batch(user_profiles, sync=sync)

    def update_company(self, company_profile: Any, *, sync: bool = False) -> bool:
        if self.pipeline is None:
            return False
        return self.pipeline.profiles.update_company(company_profile, sync=sync)

    def update_companies_batch(self, companies_profiles: Any, *, sync: bool = False) -> bool:
        if self.pipeline is None:
            return False
        return self.pipeline.profiles.update_companies_batch(companies_profiles, sync=sync)

    def update_subscription(self, subscription: Any, *, sync: bool = False) -> bool:
        if self.pipeline is None:
            return False
        return self.pipeline.profiles.update_subscription(subscription, sync=sync)

    def update_subscriptions_batch(self, subscriptions: Any, *, sync: bool = False) -> bool:
        if self.pipeline is None:
            return False
        return self.pipeline.profiles.update_subscriptions_batch(subscriptions, sync=sync)

    def send_action(self, action: Any, *, sync: bool = False) -> bool:
        return self.pipeline.profiles.send_action(action, sync=sync) if self.pipeline else False

    def send_actions_batch(self, actions: Any, *, sync: bool = False) -> bool:
        if self.pipeline is None:
            return False
        return self.pipeline.profiles.send_actions_batch(actions, sync=sync)
