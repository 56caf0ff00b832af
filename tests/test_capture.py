"""The bounded capture and the request-body tee, with the read styles servers and frameworks use."""

from __future__ import annotations

import io

from moesif_integrations.core.capture.tees import BodyCapture, InputTee
from moesif_integrations.core.capture.wsgi import (
    _HEADER_KEYS_LIMIT,
    _HeaderKeys,
    environ_header_items,
)


def test_capture_keeps_a_bounded_prefix_and_counts_everything() -> None:
    capture = BodyCapture(5)
    for chunk in (b"abc", b"defg", b"hij"):
        capture.add(chunk)
    assert capture.value() == b"abcde"
    assert capture.size == 10


def test_a_reused_buffer_is_copied_not_referenced() -> None:
    capture = BodyCapture(4)
    buffer = bytearray(b"wxyz12")
    capture.add(memoryview(buffer), reused=True)
    buffer[:] = b"000000"
    assert capture.value() == b"wxyz"
    assert capture.size == 6


def test_every_read_style_is_teed() -> None:
    body = b"line one\nline two\n" + bytes(range(256))
    for read in ("read", "read1", "readinto", "readline", "readlines", "iterate"):
        tee = InputTee(io.BufferedReader(io.BytesIO(body)), BodyCapture(10_000))  # type: ignore[arg-type]
        got = b""
        if read == "read":
            got = tee.read(7) + tee.read()
        elif read == "read1":
            while chunk := tee.read1(5):
                got += chunk
        elif read == "readinto":
            buffer = bytearray(13)
            while count := tee.readinto(buffer):
                got += bytes(buffer[:count])
        elif read == "readline":
            while line := tee.readline():
                got += line
        elif read == "readlines":
            got = b"".join(tee.readlines())
        else:
            got = b"".join(tee)
        assert got == body, read
        assert tee.capture.value() == body, read
        assert tee.reads > 0


def test_readinto_on_an_input_with_only_read() -> None:
    class ReadOnly:
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def read(self, size: int = -1) -> bytes:
            return self._data.read(size)

    tee = InputTee(ReadOnly(b"0123456789"), BodyCapture(4))  # type: ignore[arg-type]
    buffer = bytearray(6)
    assert tee.readinto(buffer) == 6 and bytes(buffer) == b"012345"
    assert tee.capture.value() == b"0123" and tee.capture.size == 6


def test_unread_body_is_drained_after_the_response() -> None:
    tee = InputTee(io.BytesIO(b"short body"), BodyCapture(100))  # type: ignore[arg-type]
    tee.drain_unread(10)
    assert tee.capture.value() == b"short body"


def test_header_keys_are_remembered_boundedly() -> None:
    keys = _HeaderKeys()
    assert [keys[k] for k in ("HTTP_HOST", "CONTENT_TYPE", "CONTENT_LENGTH")] == [True] * 3
    assert [keys[k] for k in ("PATH_INFO", "wsgi.input", "HTTP")] == [False] * 3
    for n in range(_HEADER_KEYS_LIMIT + 10):
        assert keys[f"HTTP_X_{n}"]
    assert len(keys) == _HEADER_KEYS_LIMIT


def test_environ_header_items_keeps_headers_in_order() -> None:
    environ = {
        "REQUEST_METHOD": "POST",
        "HTTP_HOST": "example.com",
        "CONTENT_TYPE": "application/json",
        "wsgi.input": object(),
        "HTTP_X_ONE": "1",
        "CONTENT_LENGTH": "2",
        "SERVER_PORT": "80",
    }
    assert environ_header_items(environ) == [
        ("HTTP_HOST", "example.com"),
        ("CONTENT_TYPE", "application/json"),
        ("HTTP_X_ONE", "1"),
        ("CONTENT_LENGTH", "2"),
    ]
