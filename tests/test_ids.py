"""Transaction ids: well-formed UUID4 text, never repeated, also across fork()."""

from __future__ import annotations

import os
import uuid

import pytest

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
