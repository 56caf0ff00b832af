"""What the app config and the governance rules decide, as one immutable snapshot.

The request path reads one ``Decisions`` per exchange (``Pipeline.decisions``); a new pair of
documents replaces the snapshot whole, so a request never sees half of a change.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from ..logs import LogOnce
from .conditions import Problems
from .rules import NO_RULES, Governance, compile_governance
from .sampling import KEEP_ALL, Sampling, compile_sampling


class Decisions:
    """Sampling and governance of one app config and rules document pair."""

    __slots__ = ("sampling", "governance", "etag")

    def __init__(
        self, sampling: Sampling, governance: Governance, etag: Optional[str] = None
    ) -> None:
        self.sampling = sampling
        self.governance = governance
        # The X-Moesif-Config-ETag the documents came with.
        self.etag = etag


# Until the first documents arrive: everything sampled at 100%, no rule applied.
NO_DECISIONS = Decisions(KEEP_ALL, NO_RULES)


def compile_decisions(
    config: Any, rules: Any, etag: Optional[str], problems_log: LogOnce
) -> Decisions:
    """The decisions of a config document and a rules document (parsed JSON). What is wrong with
    either is left out and logged once per document, never raised."""
    config_problems = Problems("app config")
    if not isinstance(config, dict):
        config_problems.add("the app config is not an object")
        config = {}
    sampling = compile_sampling(config, config_problems)
    rules_problems = Problems("governance rules")
    governance = compile_governance(rules, config, rules_problems)
    for problems in (config_problems, rules_problems):
        if problems.notes:
            problems_log.log(
                f"document-{problems.what}-{etag}-{hash(tuple(problems.notes))}",
                logging.WARNING,
                "%s: %d part(s) left out: %s",
                problems.what,
                len(problems.notes),
                "; ".join(problems.notes),
            )
    return Decisions(sampling, governance, etag)
