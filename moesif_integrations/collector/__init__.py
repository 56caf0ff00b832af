"""A local Moesif collector: a real HTTP server speaking the collector API (docs/protocol.md).

For development, the demo, the benchmarks and the tests. Standard library only. Run it with
``python -m moesif_integrations.collector`` or drive it in-process through ``Collector``.

Besides the collector API (any base path prefix works), it answers a read API that needs no
application id, for other processes:

- ``GET /_collector/events?since=<id>&limit=<n>`` (and ``users``, ``companies``,
  ``subscriptions``, ``actions``): ``{"events": [{"id", "received_at", "app_id", "event"}],
  "last_id": n}``; poll with ``since=last_id``.
- ``GET /_collector/counts``: stored items per kind and ``requests`` per endpoint.
- ``POST /_collector/fault`` ``{"mode": "fail"|"delay"|"hang"|"drop"|"heal", "status",
  "retry_after", "count", "seconds", "all"}``; ``POST /_collector/config``, ``/rules`` (JSON
  body) replace what is served; ``POST /_collector/reset`` deletes what was stored.
"""

from __future__ import annotations

from moesif_integrations.collector.faults import Fault
from moesif_integrations.collector.server import Collector
from moesif_integrations.collector.storage import StoredItem

__all__ = ["Collector", "Fault", "StoredItem"]
