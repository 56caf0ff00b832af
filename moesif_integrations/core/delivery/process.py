"""DELIVERY_PROCESS: events are built and sent by a process of their own, off the app's GIL.

In the app's process the request path queues each record as its marshal bytes (a C-level call:
the queue holds bytes, not the record's objects, for the garbage collector to walk); one
hand-off thread takes what is queued and writes it to a pipe. A delivery process
(``child.py``), started lazily by the process that captures (so each forked worker has its
own), does everything else: event building, masking, batching, gzip, HTTP and retries, on
another CPU. The app's process keeps its counters: the delivery process reports its own (sent,
failed, ...) and they are added in.

If the delivery process cannot start, this falls back to sending from the app's process, with
one log line. A MASK_EVENT_MODEL hook is a function of the app's process, so with one set the
events are encoded here and only batching and HTTP move out.
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from dataclasses import replace
from typing import Any, Callable, Dict, List, Optional, Union

from ..config.schema import OPTIONS, OptionKind, Settings
from ..counters import Counters
from ..lifecycle import reset_in_forked_child
from ..logs import VISIBLE, LogOnce, logger
from ..record import ExchangeRecord
from . import pipe as wire
from .event_senders import Encode, EventBatchSender, event_queue_rules
from .queue import BYTES_OBJECT_OVERHEAD, BoundedQueue
from .transport import Transport

_CHILD_MODULE = "moesif_integrations.core.delivery.child"
_record_bytes = wire.record_bytes
# Longest wait for a new delivery process to read its settings (a loaded machine's cold start);
# meanwhile the hand-off thread sends from this process.
_READY_TIMEOUT = 30.0
# How long a record may wait in this process's queue, at most, before a helper sender thread
# of this process takes it and sends it from here: while the delivery process is not started,
# not ready or not draining its pipe (its CPU is busy with the app), events still go.
_STALL_BOUND = 0.5
# Fewer usable CPUs than this (affinity, cgroup quota): no delivery process, since it could
# only take its CPU time from the app's process; events are built and sent here.
_MIN_CPUS = 2
# How long records wait in this process before being handed off, at most: the delivery process
# does the batching by BATCH_SIZE and EVENT_BATCH_TIMEOUT. A look every few milliseconds,
# rather than a wake-up from the request path (a GIL switch per request), hands off what came
# meanwhile as one; under load the hand-off thread gets the GIL that often anyway.
_HANDOFF_DELAY = 0.01
# Most records in one hand-off (one marshal call, one pipe write); so many queued wake the
# hand-off thread before its delay is up.
_HANDOFF_MAX = 1000
# What this process queues: a record's marshal bytes, or the record where it is encoded here.
Queued = Union[ExchangeRecord, bytes]


# Delivery processes that died before this one falls back to sending from the app's process.
_MAX_RESTARTS = 3
# Delivery processes forked children inherited: theirs to keep, never to wait for or close.
_inherited: List[Any] = []


def child_settings(settings: Settings) -> Settings:
    """The settings a delivery process runs with: no hooks (functions of the app's process)."""
    hooks = {spec.field_name: None for spec in OPTIONS if spec.kind is OptionKind.HOOK}
    return settings.replace(delivery_process=False, **hooks)


def usable_cpus() -> float:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (cgroup v2
    ``cpu.max``, v1 ``cpu.cfs_quota_us``) where one is set."""
    try:
        cpus: float = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return min(cpus, quota) if quota is not None else cpus


def _cgroup_cpu_quota() -> Optional[float]:
    """The CPU quota (CPUs' worth) of this process's cgroup, if any is set."""
    try:
        with open("/proc/self/cgroup") as cgroups:
            lines = cgroups.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            for where in (f"/sys/fs/cgroup{path}", "/sys/fs/cgroup"):
                text = _read_text(os.path.join(where, "cpu.max"))
                if text:
                    limit, _, period = text.partition(" ")
                    if limit == "max" or not period:
                        return None
                    return int(limit) / int(period)
        elif "cpu" in controllers.split(","):  # cgroup v1
            for where in (f"/sys/fs/cgroup/{controllers}{path}", f"/sys/fs/cgroup/{controllers}"):
                quota_text = _read_text(os.path.join(where, "cpu.cfs_quota_us"))
                period_text = _read_text(os.path.join(where, "cpu.cfs_period_us"))
                if quota_text and period_text:
                    quota = int(quota_text)
                    return None if quota <= 0 else quota / int(period_text)
    return None


def _read_text(path: str) -> Optional[str]:
    try:
        with open(path) as file:
            return file.read().strip()
    except (OSError, ValueError):
        return None


def _looks_like_python(executable: Optional[str]) -> bool:
    name = os.path.basename(executable or "").lower()
    return name.startswith(("python", "pypy"))


class DeliveryProcess:
    """One running delivery process, seen from the app's process: frames out, replies in."""

    def __init__(
        self,
        settings_payload: bytes,
        on_status: Callable[[Dict[str, Any]], None],
        on_gone: Callable[[DeliveryProcess], None],
    ) -> None:
        self._on_status = on_status
        self._on_gone = on_gone
        self._write_lock = threading.Lock()
        self._replies = threading.Condition()
        self._flush_results: Dict[int, bool] = {}
        self._flush_ids = itertools.count(1)
        self.ready = False
        self.gone = False
        self.bye: Optional[bool] = None
        env = dict(os.environ)
        # The same package and dependencies as this process, wherever they were found.
        env["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
        self.popen = subprocess.Popen(
            [sys.executable, "-m", _CHILD_MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,  # raw pipes: nothing buffered or locked that a fork() could catch
            close_fds=True,
            # Out of the terminal's process group: Ctrl-C stops the app, which then flushes.
            start_new_session=True,
            env=env,
        )
        assert self.popen.stdin is not None and self.popen.stdout is not None
        self._stdin = self.popen.stdin
        self._stdout = self.popen.stdout
        self.send(wire.SETTINGS, settings_payload)
        self._reader = threading.Thread(
            target=self._read_replies, name="moesif-integrations-delivery-replies", daemon=True
        )
        try:
            self._reader.start()
        except BaseException:  # Python 3.12+ starts no thread once the interpreter is exiting
            self.popen.kill()
            self.popen.wait()
            self._stdin.close()
            self._stdout.close()
            raise

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_ready(self, timeout: float) -> bool:
        with self._replies:
            self._replies.wait_for(lambda: self.ready or self.gone, timeout)
            return self.ready and not self.gone

    def send(self, kind: bytes, payload: bytes = b"", timeout: Optional[float] = None) -> bool:
        """Writes one frame; False when the process is gone or the pipe stayed busy."""
        if not self._write_lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            return False
        try:
            if self._stdin.closed:
                return False
            wire.write_frame(self._stdin.fileno(), kind, payload)
            return True
        except OSError:  # BrokenPipeError: the delivery process died
            return False
        finally:
            self._write_lock.release()

    def _read_replies(self) -> None:
        stream = self._stdout
        try:
            while True:
                frame = wire.read_frame(stream)  # type: ignore[arg-type]
                if frame is None:
                    break
                self._handle(*frame)
        except Exception:  # a bug here must not go unnoticed, nor kill the app
            logger.warning("reading from the delivery process failed", exc_info=True)
        finally:
            with self._replies:
                self.gone = True
                self._replies.notify_all()
            self._on_gone(self)

    def _handle(self, kind: bytes, payload: bytes) -> None:
        if kind == wire.STATUS:
            self._on_status(wire.loads(payload))
        elif kind == wire.LOG:
            level, text, visible = wire.loads(payload)
            logger.log(level, "%s", text, extra=VISIBLE if visible else None)
        elif kind == wire.FLUSHED:
            request_id, delivered, status = wire.loads(payload)
            self._on_status(status)
            with self._replies:
                self._flush_results[request_id] = delivered
                self._replies.notify_all()
        elif kind == wire.READY:
            with self._replies:
                self.ready = True
                self._replies.notify_all()
        elif kind == wire.BYE:
            delivered, status = wire.loads(payload)
            self._on_status(status)
            with self._replies:
                self.bye = delivered
                self._replies.notify_all()

    def flush(self, timeout: Optional[float]) -> bool:
        """Asks the process to deliver what it holds; True once it says all was delivered."""
        deadline = None if timeout is None else time.monotonic() + timeout
        request_id = next(self._flush_ids)
        payload = wire.dumps((request_id, -1.0 if timeout is None else float(timeout)))
        if not self.send(wire.FLUSH, payload, timeout):
            return False
        with self._replies:
            self._replies.wait_for(
                lambda: request_id in self._flush_results or self.gone,
                None if deadline is None else max(0.0, deadline - time.monotonic()),
            )
            return self._flush_results.pop(request_id, False)

    def close(self, timeout: float) -> bool:
        """Tells the process to finish within ``timeout`` and waits for it (a second more at
        most), then kills it if it has not exited. True when it said all was delivered."""
        deadline = time.monotonic() + timeout + 1.0
        self.send(wire.SHUTDOWN, wire.dumps(float(timeout)), timeout)
        with self._write_lock:
            self._stdin.close()  # end of input: the process ends even if the frame was lost
        with self._replies:
            self._replies.wait_for(
                lambda: self.bye is not None or self.gone, max(0.0, deadline - time.monotonic())
            )
        try:
            self.popen.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        return bool(self.bye)

    def abandon_after_fork(self) -> None:
        """In a forked child: the process is the parent's. Only our copies of its pipes close,
        so that it still sees the end of its input when the parent goes."""
        for pipe in (self._stdin, self._stdout):
            try:
                pipe.close()
            except OSError:
                pass
        _inherited.append(self)


class ProcessDelivery:
    """Event delivery by a delivery process: a bounded queue of marshal bytes in this process,
    one hand-off thread that writes what is queued to the pipe, and the fallback."""

    def __init__(
        self,
        settings: Settings,
        encode: Encode[ExchangeRecord],
        counters: Counters,
        on_config_etag: Optional[Callable[[str], None]] = None,
    ) -> None:
        self._settings = settings
        self._settings_payload = pickle.dumps(child_settings(settings))
        # A MASK_EVENT_MODEL hook runs here, so its events are encoded here.
        self._encode_here = settings.mask_event_model is not None
        self._encode = encode
        self.counters = counters
        self._problems = LogOnce()
        # Sends from this process when the delivery process cannot start; also keeps the
        # config ETag either process last saw.
        self._sender = EventBatchSender(settings, counters, on_config_etag)
        self.queue: BoundedQueue[Queued] = BoundedQueue(
            replace(
                event_queue_rules(settings),
                batch_items=_HANDOFF_MAX,
                # Early only when the queue is half way to a bound.
                due_items=max(1, min(_HANDOFF_MAX, settings.event_queue_size // 2)),
                due_bytes=max(1, settings.event_queue_max_bytes // 2),
                max_wait=_HANDOFF_DELAY,
                # Consumer 0 hands off; the others send from this process what waited too long.
                consumers=1 + settings.event_worker_count,
                thread_name="moesif-integrations-handoff-{}",
                helper_wait=_STALL_BOUND,
            ),
            counters,
            self._run_handoff,
            settings.shutdown_timeout,
            # At shutdown, once all is handed off: the delivery process finishes in what is
            # left of the budget.
            after_stop=self._close_process,
        )
        self._process: Optional[DeliveryProcess] = None
        self._pid = os.getpid()
        self._reset_state()
        reset_in_forked_child(self)

    def put(self, record: ExchangeRecord) -> bool:
        """Queues the record's marshal bytes (the record itself where it must be encoded here);
        False (and counted) when the queue is full or closed. No wake-up per record: the
        hand-off thread takes what is queued every few milliseconds."""
        if self._encode_here:
            return self.queue.put(record, record.approximate_size())
        try:
            data = _record_bytes(record)
        except ValueError:  # a value marshal refuses: the record is queued, encoded here
            return self.queue.put(record, record.approximate_size())
        return self.queue.put(data, len(data) + BYTES_OBJECT_OVERHEAD)

    @property
    def captured(self) -> int:
        """Records accepted into the queue since start."""
        return self.queue.accepted

    def _reset_state(self) -> None:
        """No delivery process yet: at construction and in a forked child."""
        previous = self._process
        if previous is not None and self._pid != os.getpid():
            previous.abandon_after_fork()
        self._pid = os.getpid()  # the process that owns the delivery process started next
        self._process = None
        self._status_lock = threading.Lock()
        # The current delivery process's counters as last reported, and what it holds.
        self._process_counters: Dict[str, int] = {}
        self._process_queued = 0
        self._starts = 0
        self._sends_here = False
        # A delivery process started but not ready yet, and since when.
        self._starting: Optional[DeliveryProcess] = None
        self._starting_since = 0.0

    def after_fork_in_child(self) -> None:
        # The parent's delivery process is the parent's; this child starts its own.
        self._reset_state()

    @property
    def process(self) -> Optional[DeliveryProcess]:
        """The delivery process started last, if any (it may be starting still, or have exited
        since)."""
        starting = self._starting
        return starting if starting is not None else self._process

    # ------------------------------------------------------------------ hand-off thread

    def _run_handoff(self, number: int) -> None:
        # The connection is only for sending here: none is opened while a process delivers.
        with Transport(self._settings, self.queue.stopping) as transport:
            if number:
                self.queue.serve(number, lambda batch: self._send_here(transport, batch))
            else:
                self.queue.serve(number, lambda batch: self._hand_off(transport, batch))

    def _hand_off(self, transport: Transport, batch: List[Queued]) -> None:
        process = self._running_process()
        if process is None:
            self._send_here(transport, batch)
            return
        marshalled: List[bytes] = []
        records: List[ExchangeRecord] = []  # MASK_EVENT_MODEL, or values marshal refused
        for item in batch:
            if isinstance(item, bytes):
                marshalled.append(item)
            else:
                records.append(item)
        if marshalled and not process.send(wire.RECORDS, wire.dumps(marshalled)):
            self._lost("the pipe to it broke", len(batch))
            return
        if records:
            encoded = [event for event in map(self._encode, records) if event is not None]
            if not process.send(wire.ENCODED, wire.dumps(encoded)):
                self._lost("the pipe to it broke", len(records))

    def _send_here(self, transport: Transport, batch: List[Queued]) -> None:
        """The fallback: build and send from this process, as without DELIVERY_PROCESS."""
        records = [
            wire.record_from_bytes(item) if isinstance(item, bytes) else item for item in batch
        ]
        queue = self.queue
        polite = not queue.has_due_batch()
        size = self._settings.batch_size
        for start in range(0, len(records), size):
            self._sender.send(
                transport,
                records[start : start + size],
                self._encode,
                polite=polite,
                deadline=queue.deadline,
            )

    def _running_process(self) -> Optional[DeliveryProcess]:
        """The delivery process when it is ready for records; None while this process must
        send them itself (not started yet, starting, or not to be used)."""
        process = self._process
        if process is not None and not process.gone:
            return process
        if self._sends_here:
            return None
        starting = self._starting
        if starting is not None:
            return self._started(starting)
        cpus = usable_cpus()
        if cpus < _MIN_CPUS:
            self._fall_back(
                f"this process may use {cpus:g} CPU (affinity, cgroup quota), and a delivery "
                "process would take its time from the app"
            )
            return None
        if self._starts > _MAX_RESTARTS:
            self._fall_back(f"it exited {self._starts} times")
            return None
        self._starts += 1
        if not _looks_like_python(sys.executable):
            # uWSGI and mod_wsgi embed Python: their sys.executable is the server itself.
            self._fall_back(f"sys.executable ({sys.executable!r}) is not a Python interpreter")
            return None
        try:
            process = DeliveryProcess(self._settings_payload, self._take_status, self._process_gone)
        except (OSError, ValueError, RuntimeError) as exc:
            # RuntimeError: the app's process is exiting (no new thread), before its first
            # hand-off; what it captured is sent from here.
            self._fall_back(f"it could not start: {exc}")
            return None
        self._starting = process
        self._starting_since = time.monotonic()
        # Usually ready within this: then the first records already go to it.
        process.wait_ready(_STALL_BOUND)
        return self._started(process)

    def _started(self, process: DeliveryProcess) -> Optional[DeliveryProcess]:
        """The starting process once it said it is ready; None (records sent from here) until
        then, and for good if it exited or did not answer within _READY_TIMEOUT."""
        if not process.wait_ready(0.0):
            if not process.gone and time.monotonic() - self._starting_since < _READY_TIMEOUT:
                return None
            self._starting = None
            process.close(0.0)
            self._fall_back(
                "it exited at start"
                if process.gone
                else f"it did not answer within {_READY_TIMEOUT:.0f}s"
            )
            return None
        self._starting = None
        with self._status_lock:
            self._process_counters = {}
            self._process_queued = 0
        self._process = process
        logger.debug("delivery process %d started", process.pid)
        return process

    def _fall_back(self, why: str) -> None:
        self._sends_here = True
        self._problems.log(
            "delivery-process",
            logging.WARNING,
            "DELIVERY_PROCESS: %s; events are built and sent from this process instead",
            why,
        )

    def _lost(self, why: str, count: int) -> None:
        self.counters.add("failed", count)
        self._problems.log(
            "delivery-process-lost",
            logging.WARNING,
            "DELIVERY_PROCESS: %s; %d events lost, a new delivery process starts",
            why,
            count,
        )

    # ------------------------------------------------------------------ replies

    @property
    def last_etag(self) -> Optional[str]:
        """The config ETag the collector last answered, to either process: the delivery
        process reports it with its counters."""
        return self._sender.last_etag

    def _take_status(self, status: Dict[str, Any]) -> None:
        """Adds what the delivery process counted since its last report to this one's counters."""
        counters: Dict[str, int] = status["counters"]
        with self._status_lock:
            last = self._process_counters
            for name, value in counters.items():
                change = value - last.get(name, 0)
                if change and name != "captured":
                    self.counters.add(name, change)
            self._process_counters = counters
            self._process_queued = status["queued"]
        etag = status.get("etag")
        if etag:
            self._sender.note_etag(etag)

    def _process_gone(self, process: DeliveryProcess) -> None:
        if process.bye is not None or self.queue.closed:
            return  # it was told to finish
        with self._status_lock:
            held, self._process_queued = self._process_queued, 0
        if held:
            self.counters.add("failed", held)
        self._problems.log(
            "delivery-process-died",
            logging.WARNING,
            "DELIVERY_PROCESS: the delivery process exited unexpectedly (code %s); "
            "%d events it held were lost, a new one starts with the next events",
            process.popen.poll(),
            held,
        )

    # ------------------------------------------------------------------ lifecycle

    def queued(self) -> int:
        """Records waiting here, being handed off, or held by the delivery process."""
        return self.queue.queued() + self._process_queued

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Hands off what is queued, then waits until the delivery process delivered it; True
        when all that went within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        handed_off = self.queue.flush(timeout)
        process = self._process
        if not handed_off or process is None or process.gone:
            return handed_off
        return process.flush(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Hands off and stops within ``timeout`` (default SHUTDOWN_TIMEOUT), then tells the
        delivery process to finish within what is left of it."""
        return self.queue.shutdown(timeout)

    def _close_process(self, timeout: float) -> bool:
        starting = self._starting
        if starting is not None:  # never ready: it holds nothing
            self._starting = None
            starting.close(0.0)
        process = self._process
        return process is None or process.gone or process.close(timeout)
