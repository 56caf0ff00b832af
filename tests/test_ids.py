"""Transaction ids: well-formed UUID4 text, never repeated, also across fork()."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid
from typing import Any, List

import pytest
from wsgi_client import call

from moesif_integrations import MoesifMiddleware
from moesif_integrations.core.capture.ids import new_transaction_id, transaction_id_for


def test_ids_are_distinct_uuid4_text() -> None:
    ids = [new_transaction_id() for _ in range(1000)]  # several batches of the pool
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_a_client_id_is_kept_only_when_it_is_a_uuid() -> None:
    mine = "3F1C2A9E-5B7D-4E8F-9A0B-1C2D3E4F5A6B"
    assert transaction_id_for(mine) == mine.lower()
    assert transaction_id_for("not-a-uuid") != "not-a-uuid"
    assert uuid.UUID(transaction_id_for(None)).version == 4


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_never_hands_out_its_parents_ids() -> None:
    new_transaction_id()  # the parent's pool now holds ids made before the fork
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.write(write_end, "\n".join(new_transaction_id() for _ in range(10)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child_ids = set(pipe.read().decode().split("\n"))
    os.waitpid(pid, 0)
    parent_ids = {new_transaction_id() for _ in range(10)}
    assert len(child_ids) == 10
    assert not child_ids & parent_ids


_SEEDED_IDS = """
import random, sys
sys.path[:0] = {paths!r}
random.seed(1234)
from moesif_integrations.core.capture.ids import new_transaction_id
print(" ".join(new_transaction_id() for _ in range(3)))
"""


def test_workers_that_seed_random_alike_still_make_distinct_ids() -> None:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = _SEEDED_IDS.format(paths=[root])
    outputs = [
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        ).stdout.split()
        for _ in range(2)
    ]
    assert len(outputs[0]) == 3
    assert not set(outputs[0]) & set(outputs[1])


def test_wrapping_an_app_leaves_its_seeded_random_sequence_unchanged() -> None:
    def app(environ: Any, start_response: Any) -> List[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [repr(random.random()).encode()]

    def draws(wsgi_app: Any) -> List[bytes]:
        random.seed(99)
        return [call(wsgi_app, "GET", "/").body for _ in range(200)]  # several id batches

    wrapped = MoesifMiddleware(
        app, {"APPLICATION_ID": "seeded-app", "BASE_URI": "http://127.0.0.1:9"}
    )
    try:
        assert draws(wrapped) == draws(app)
    finally:
        wrapped.shutdown(timeout=0)
