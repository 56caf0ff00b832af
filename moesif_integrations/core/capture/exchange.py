"""One exchange in flight, WSGI or ASGI alike: the record it becomes, its body captures, one
identification routine and one finish.

A protocol's request path (``wsgi.py``, ``asgi.py``) notes the request's facts into an
``Exchange`` and wires its tees; an adapter adds what its framework knows. Whichever way the
response ends, ``finish`` ends the exchange once and hands the record to the sink.
"""

from __future__ import annotations

import logging
from time import time as _time
from typing import Any, Dict, List, Optional, Sequence, Tuple
from uuid import UUID

from ..decide.conditions import Facts, authorization_user
from ..decide.decisions import NO_DECISIONS, Decisions
from ..decide.governance import Block
from ..decide.sampling import weight_of
from ..logs import LogOnce
from ..outgoing import active as outgoing
from ..record import ExchangeRecord, Headers
from .sink import CaptureSink
from .tees import BodyCapture

HookArguments = Sequence[Any]
# Capture.sample_early's answer for an exchange to pass through unrecorded.
SAMPLED_OUT = -1.0
# Where adapters and hooks find the exchange of a WSGI request in flight.
EXCHANGE_ENVIRON_KEY = "moesif.exchange"


class Capture:
    """Captures exchanges for one CaptureSink: the settings every request reads (read once from
    the Settings), SKIP, and what an adapter's subclass adds about its framework
    (``framework_user``, ``framework_route``, ``hook_arguments``)."""

    def __init__(self, sink: CaptureSink) -> None:
        settings = sink.settings
        self.sink = sink
        self.log_body: bool = settings.log_body
        self.request_limit: int = settings.request_max_body_size
        self.response_limit: int = settings.response_max_body_size
        self.add_transaction_id: bool = not settings.disabled_transaction_id
        self.skip_hook = settings.skip
        self.identify_user = settings.identify_user
        self.identify_company = settings.identify_company
        self.get_session_token = settings.get_session_token
        self.get_metadata = settings.get_metadata
        # The integration's outgoing recorder, when it captures outgoing calls: calls made while
        # one of its requests is served carry the request's transaction id.
        self.outgoing: Any = getattr(sink, "outgoing", None)
        self.has_identity_hooks = any(
            hook is not None
            for hook in (
                self.identify_user,
                self.identify_company,
                self.get_session_token,
                self.get_metadata,
            )
        )

    def sample_early(
        self, decisions: Decisions, verb: Optional[str], route: str, ip_address: Optional[str]
    ) -> Optional[float]:
        """Sampling from the route alone, before anything is copied and any hook called: the
        rate when it is decided (0.0: sampled out, recorded only for the governance rules),
        SAMPLED_OUT when the exchange is to pass through unrecorded (counted), None when it is
        decided at the end."""
        sampling = decisions.sampling
        if not sampling.decides_early:
            return None
        rate = sampling.early_rate(verb, route, ip_address)
        if rate is None or rate >= 100 or (rate > 0 and sampling.keeps(rate)):
            return rate
        if decisions.governance.governs:
            return 0.0
        self.sink.sampled_out()
        return SAMPLED_OUT

    def skips(self, *hook_args: Any) -> bool:
        """Whether SKIP (called once, with ``hook_args``) says not to record this request."""
        skip = self.skip_hook
        if skip is not None and self.sink.call_hook("SKIP", skip, *hook_args):
            self.sink.skip()
            return True
        return False

    def hook_arguments(self, exchange: Exchange) -> Optional[Tuple[HookArguments, HookArguments]]:
        """What the identification hooks receive when the exchange identifies itself at its end:
        (for GET_SESSION_TOKEN and GET_METADATA, for IDENTIFY_USER and IDENTIFY_COMPANY). None
        when only the adapter has them (it calls ``Exchange.identify`` itself): no hook runs."""
        return None

    def framework_user(self, environ: Optional[Dict[str, Any]]) -> Optional[str]:
        """The logged-in user as the framework knows it; the server's REMOTE_USER by default."""
        user = environ.get("REMOTE_USER") if environ is not None else None
        return str(user) if user else None

    def framework_route(self, environ: Optional[Dict[str, Any]]) -> Optional[str]:
        """The route template the framework matched, when it knows one."""
        return None


class Exchange(ExchangeRecord):
    """One request in flight, and the record it becomes: one object per request, not two.

    Beyond the record's facts it holds what only the request needs: its capture, the WSGI
    environ (None under ASGI), the request body's copy with its tee and declared length, and the
    response body's copy. ``finish`` ends it exactly once, whatever the server and the app do;
    then it keeps nothing but facts and is submitted as the record.
    """

    __slots__ = (
        "capture",
        "environ",
        "request_capture",
        "tee",
        "declared_length",
        "response_capture",
        "finished",
        "identified",
        "decisions",
        "rule_headers",
        "outgoing_token",
    )

    def __init__(
        self,
        capture: Capture,
        request_time: float,
        method: str,
        scheme: str,
        host: str,
        path: str,
        query: str,
        request_headers: Headers,
        request_headers_cgi: bool,
        remote_addr: Optional[str],
        transaction_id: Optional[str],
    ) -> None:
        ExchangeRecord.__init__(
            self,
            request_time,
            method,
            scheme,
            host,
            path,
            query,
            request_headers,
            request_headers_cgi,
            remote_addr,
            transaction_id,
        )
        self.capture = capture
        self.environ: Optional[Dict[str, Any]] = None
        # Set by capture_request_body() when a body may come.
        self.request_capture: Optional[BodyCapture] = None
        # What the app reads the body through (InputTee, asgi.ReceiveTee); None when the body
        # came whole or none is expected.
        self.tee: Any = None
        self.declared_length = -1
        self.response_capture: Optional[BodyCapture] = (
            BodyCapture(capture.response_limit) if capture.log_body else None
        )
        self.finished = False
        # The sampling and rules in force when the request came (see ``begin_decided``).
        self.decisions: Decisions = NO_DECISIONS
        # Headers the governance rules add to the app's response.
        self.rule_headers: Optional[List[Tuple[str, str]]] = None
        # True once the identification hooks ran (an adapter may run them in its request
        # context; otherwise finish() does).
        self.identified = False
        recorder = capture.outgoing
        self.outgoing_token = (
            outgoing.enter(recorder, transaction_id) if recorder is not None else None
        )

    @property
    def record(self) -> ExchangeRecord:
        """The record this exchange fills (itself); hooks reach it through environ."""
        return self

    # ------------------------------------------------------------------ the request

    def capture_request_body(self, content_length: Any) -> BodyCapture:
        """The request body's bounded copy, for a request that may have one. ``content_length``
        as declared (text, bytes or None) is noted, -1 when absent or malformed: a bad header
        never raises."""
        try:
            length = int(content_length) if content_length else -1
        except (TypeError, ValueError):
            length = -1
        self.declared_length = length if length >= 0 else -1
        body = self.request_capture = BodyCapture(self.capture.request_limit)
        return body

    def decided(self, decisions: Decisions, rate: Optional[float]) -> None:
        """Notes the decisions in force and the rate ``Capture.sample_early`` decided."""
        self.decisions = decisions
        if rate is not None:
            self.sample_rate = rate
            if rate:
                self.weight = weight_of(rate)

    def governance(
        self,
        args: Optional[HookArguments] = None,
        user_args: Optional[HookArguments] = None,
        body: Optional[bytes] = None,
    ) -> Optional[Block]:
        """Applies the governance rules before the app runs: the Block that answers for the app
        (noted in the record), or None when the app is to run (the headers rules add are in
        ``rule_headers``). A rule on the user or company calls the identification hooks now,
        with ``args`` / ``user_args`` as ``identify`` takes them; a rule on the body reads
        ``body`` (what an ASGI adapter received ahead), else ``body_for_rules()``. Never raises:
        a failure lets the app run."""
        rules = self.decisions.governance
        if not rules.governs:
            return None
        try:
            if rules.needs_body and body is None:
                body = self.body_for_rules()
            facts = Facts(self, body)
            user_id = company_id = None
            if rules.needs_identity:
                user_id, company_id = self._identify_for_rules(args, user_args)
            verdict = rules.verdict(facts, user_id, company_id)
        except Exception:
            self.capture_failed("governance")
            return None
        if verdict is None:
            return None
        block = verdict.block
        if block is not None:
            self.blocked_by = block.rule_id
        elif verdict.headers:
            self.rule_headers = verdict.headers
        return block

    def body_for_rules(self) -> Optional[bytes]:
        """The request body as far as the rules may read it (at most the capture limit), the app
        still reading all of it afterwards; none unless the protocol reads ahead."""
        return None

    def _identify_for_rules(
        self, args: Optional[HookArguments], user_args: Optional[HookArguments]
    ) -> Tuple[Optional[str], Optional[str]]:
        """User and company from the event's chain before the app runs: IDENTIFY_USER and
        IDENTIFY_COMPANY (with empty response headers; what they answer is kept for the event),
        the framework's user, the authorization header."""
        capture = self.capture
        if args is None and (
            capture.identify_user is not None or capture.identify_company is not None
        ):
            given = capture.hook_arguments(self)
            if given is not None:
                args, user_args = given
                self.forget_hook_extras()
        call = capture.sink.call_hook
        if args is not None:
            hook_args = args if user_args is None else user_args
            if capture.identify_user is not None:
                user = call("IDENTIFY_USER", capture.identify_user, *hook_args)
                self.user_id = hook_answer_text("IDENTIFY_USER", user)
            if capture.identify_company is not None:
                company = call("IDENTIFY_COMPANY", capture.identify_company, *hook_args)
                self.company_id = hook_answer_text("IDENTIFY_COMPANY", company)
        user_id = self.user_id
        if user_id is None:
            user_id = capture.framework_user(self.environ)
        if user_id is None:
            settings = capture.sink.settings
            user_id = authorization_user(
                self,
                settings.authorization_header_name,
                settings.authorization_user_id_field.lower(),
            )
        return user_id, self.company_id

    def forget_hook_extras(self) -> None:
        """Drops what ``hook_arguments`` left for hooks that must be built afresh at the end."""

    def capture_failed(self, where: str) -> None:
        self.capture.sink.capture_failed(where)

    # ------------------------------------------------------------------ identification

    def identify(
        self, args: Optional[HookArguments] = None, user_args: Optional[HookArguments] = None
    ) -> None:
        """Notes who made the request, once: the route the framework matched, then the
        identification hooks (IDENTIFY_USER, IDENTIFY_COMPANY, GET_SESSION_TOKEN, GET_METADATA,
        each called once), then the framework's user when IDENTIFY_USER gave none.

        An adapter calls it where the framework's request context is at hand, with what its
        hooks receive (``args``; ``user_args`` for IDENTIFY_USER and IDENTIFY_COMPANY when they
        differ); otherwise ``finish`` calls it with ``capture.hook_arguments``.
        """
        if self.identified:
            return
        self.identified = True
        capture = self.capture
        # The record's rarer facts stay class defaults unless there is something to note.
        if self.route is None:
            route = capture.framework_route(self.environ)
            if route is not None:
                self.route = route
        if capture.has_identity_hooks:
            if args is None:
                given = capture.hook_arguments(self)
                if given is not None:
                    args, user_args = given
            if args is not None:
                self._call_identity_hooks(args, args if user_args is None else user_args)
        if self.user_id is None:
            user = capture.framework_user(self.environ)
            if user is not None:
                self.user_id = user

    def _call_identity_hooks(self, args: HookArguments, user_args: HookArguments) -> None:
        capture = self.capture
        call = capture.sink.call_hook
        # Called before the app for a governance rule, they are called again only when they
        # answered nothing then.
        if capture.identify_user is not None and self.user_id is None:
            user = call("IDENTIFY_USER", capture.identify_user, *user_args)
            self.user_id = hook_answer_text("IDENTIFY_USER", user)
        if capture.identify_company is not None and self.company_id is None:
            company = call("IDENTIFY_COMPANY", capture.identify_company, *user_args)
            self.company_id = hook_answer_text("IDENTIFY_COMPANY", company)
        if capture.get_session_token is not None:
            token = call("GET_SESSION_TOKEN", capture.get_session_token, *args)
            self.session_token = hook_answer_text("GET_SESSION_TOKEN", token)
        if capture.get_metadata is not None:
            self.metadata = call("GET_METADATA", capture.get_metadata, *args)

    # ------------------------------------------------------------------ the end

    def finish(self, error: bool = False) -> None:
        """Ends the exchange, once: notes the time and the status, takes the bodies, identifies
        when no adapter did, lets go of the request and submits the record."""
        if self.finished:
            return
        self.finished = True
        token = self.outgoing_token
        if token is not None:
            outgoing.leave(token)
        try:
            self._note_end(error)
            self._take_bodies(error)
            self.identify()
            self._release()
            self.capture.sink.submit(self)
        except Exception:
            self.capture.sink.capture_failed("response")

    def _note_end(self, error: bool) -> None:
        """The response time (the last byte, the close or the error) and the status: 500 when
        the app failed or answered nothing."""
        self.response_time = _time()
        if error or not self.status:
            self.status = 500

    def _take_bodies(self, error: bool) -> None:
        """The bodies' copies into the record: of the request body, what the app read (nothing
        more is read for the capture: a declared body that never comes must neither hold the
        worker nor delay the response); its size as declared when that is more."""
        body = self.request_capture
        if body is not None:
            self.request_body = body.value()
            self.request_body_size = max(body.size, self.declared_length)
        body = self.response_capture
        if body is not None:
            self.response_body = body.value()
            self.response_body_size = body.size

    def _release(self) -> None:
        """The submitted record keeps nothing of the request but its facts. The environ and an
        exchange registered in it (EXCHANGE_ENVIRON_KEY) point at each other: breaking the cycle
        lets reference counting free both, instead of leaving the work to the cyclic garbage
        collector."""
        environ = self.environ
        if environ is not None and environ.get(EXCHANGE_ENVIRON_KEY) is self:
            del environ[EXCHANGE_ENVIRON_KEY]
        self.environ = self.tee = self.request_capture = self.response_capture = None


_identity_problems = LogOnce()


def hook_answer_text(hook_name: str, value: Any) -> Optional[str]:
    """An identification hook's answer as the event's text: a str as it is, an int or a UUID as
    its text; anything else (a dict, bytes, a model object) is refused, with one warning, rather
    than recorded as its Python repr."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, UUID)) and not isinstance(value, bool):
        return str(value)
    _identity_problems.log(
        f"identity-{hook_name}",
        logging.WARNING,
        "%s returned a %s, not a str, int or UUID; the event is recorded without it",
        hook_name,
        type(value).__name__,
    )
    return None
