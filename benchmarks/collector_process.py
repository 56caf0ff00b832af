"""The local collector in a process of its own, and a small client for its read API.

Delivery is measured against a collector in ANOTHER process, so the collector's own CPU is never
charged to the app. The benchmark reads the event count over HTTP (``GET /_collector/counts``),
resets it between scenarios, and pauses the process (SIGSTOP) to hold senders still while it
measures a full queue.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

_LISTENING = re.compile(r"listening on (http://\S+)")


class CollectorProcess:
    """``python -m moesif_integrations.collector --port 0 --db <file>``, started and stopped."""

    def __init__(self, label: str = "collector") -> None:
        self.label = label
        self._dir = tempfile.TemporaryDirectory(prefix=f"bench-{label}-")
        self.db_path = os.path.join(self._dir.name, "events.db")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "moesif_integrations.collector",
                "--port",
                "0",
                "--db",
                self.db_path,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.url = self._read_url()
        self.client = ReadApiClient(self.url)
        self.paused = False

    def _read_url(self, timeout: float = 30.0) -> str:
        assert self.process.stdout is not None
        found: List[str] = []
        lines: List[str] = []

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                lines.append(line)
                match = _LISTENING.search(line)
                if match:
                    found.append(match.group(1))
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        if not found:
            self.close()
            raise RuntimeError(f"the collector did not start: {''.join(lines)!r}")
        # Keep draining its output so a chatty collector never blocks on a full pipe.
        threading.Thread(target=self._drain_output, daemon=True).start()
        return found[0]

    def _drain_output(self) -> None:
        assert self.process.stdout is not None
        for _line in self.process.stdout:
            pass

    def pause(self) -> None:
        """Freezes the collector: connections still open (the kernel accepts them), nothing
        is answered, so every sender waits on its request."""
        if hasattr(signal, "SIGSTOP"):
            os.kill(self.process.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.paused:
            os.kill(self.process.pid, signal.SIGCONT)
            self.paused = False

    @staticmethod
    def can_pause() -> bool:
        return hasattr(signal, "SIGSTOP")

    def close(self) -> None:
        self.resume()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "client", None) is not None:
            self.client.close()
        self._dir.cleanup()

    def __enter__(self) -> CollectorProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class ReadApiClient:
    """Keep-alive client of the collector's read API (one connection, this thread only)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port
        self._conn: Optional[http.client.HTTPConnection] = None

    def _request(self, method: str, path: str, body: Optional[bytes] = None) -> Any:
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=30)
            try:
                headers = {"Content-Type": "application/json"} if body is not None else {}
                self._conn.request(method, path, body=body, headers=headers)
                response = self._conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 2:
                    raise
                continue
            if response.status >= 300:
                raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
            return json.loads(data) if data else None
        raise AssertionError("unreachable")

    def event_count(self) -> int:
        counts: Dict[str, Any] = self._request("GET", "/_collector/counts")
        return int(counts["events"])

    def events(self, limit: int) -> List[Dict[str, Any]]:
        answer = self._request("GET", f"/_collector/events?limit={limit}")
        return [row["event"] for row in answer["events"]]

    def reset(self) -> None:
        self._request("POST", "/_collector/reset", b"{}")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class DeliveryWait:
    """Waits until the collector holds ``expected`` events more than at the start.

    Polls every ``interval`` seconds. Gives up when the count has not moved for
    ``stall_seconds``. ``finished_at`` is the ``time.perf_counter()`` of the poll that saw the
    final count (the count reached, or the last one before the stall).
    """

    def __init__(self, client: ReadApiClient, interval: float = 0.002) -> None:
        self.client = client
        self.interval = interval

    def until(self, target: int, stall_seconds: float) -> Tuple[int, float]:
        client = self.client
        last = client.event_count()
        finished_at = time.perf_counter()
        moved_at = finished_at
        while last < target:
            time.sleep(self.interval)
            count = client.event_count()
            now = time.perf_counter()
            if count != last:
                last = count
                finished_at = moved_at = now
            elif now - moved_at > stall_seconds:
                break
        return last, finished_at
