"""The WSGI app a real server serves for ``servers.py``: ``served_app:application``.

Which app and integration come from the environment (``BENCH_FRAMEWORK``,
``BENCH_INTEGRATION``, ``BENCH_COLLECTOR``), so each server worker builds its own, as an app
module does.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from apps import FRAMEWORKS, BenchSettings  # noqa: E402

_framework = next(f for f in FRAMEWORKS if f.name == os.environ["BENCH_FRAMEWORK"])
application = _framework.build(
    os.environ["BENCH_INTEGRATION"], BenchSettings(os.environ["BENCH_COLLECTOR"])
).app
