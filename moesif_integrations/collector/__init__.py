"""A local Moesif collector: a real HTTP server speaking the collector API (docs/protocol.md).

For development, the demo, the benchmarks and the tests. Standard library only. Run it with
``python -m moesif_integrations.collector`` or drive it in-process through ``Collector``.

Its URL serves the inspector (``/``: a page that lists the events as they arrive, filters
them and shows one whole, masked fields marked; files under ``/_inspector/``). Besides the
collector API (any base path prefix works), it answers a read API that needs no application
id, for other processes:

- ``GET /_collector/events?since=<id>&limit=<n>`` (and ``users``, ``companies``,
  ``subscriptions``, ``actions``): ``{"events": [{"id", "received_at", "app_id", "event"}],
  "last_id": n}``; poll with ``since=last_id``.
- ``GET /_collector/page?kind=events&limit=<n>&before=<id>&after=<id>`` with filters
  (``status=2xx``, ``user``, ``company``, ``path``, ``method``, ``direction``, ``app``, ``q``):
  ``{"items": [summaries, newest first], "total", "last_id"}``, what the inspector lists.
- ``GET /_collector/item?kind=events&id=<id>``: one stored item, whole.
- ``GET /_collector/counts``: stored items per kind, ``requests`` per endpoint,
  ``applications`` (stored items per application id) and ``last_ids``.
- ``POST /_collector/fault`` ``{"mode": "fail"|"delay"|"hang"|"drop"|"heal", "status",
  "retry_after", "count", "seconds", "all"}``; ``POST /_collector/config``, ``/rules`` (JSON
  body) replace what is served; ``POST /_collector/reset`` deletes what was stored. These
  control calls take ``Content-Type: application/json`` only.

Requests whose ``Host`` names another site are refused (``Collector(allowed_hosts=...)``,
``--allow-host NAME``); see ``Collector``.
"""

from __future__ import annotations

from moesif_integrations.collector.faults import Fault
from moesif_integrations.collector.server import Collector
from moesif_integrations.collector.storage import StoredItem

__all__ = ["Collector", "Fault", "StoredItem"]
