"""Conformance harness for the Falcon middleware on ``falcon.asgi.App``, driven by Falcon's own
test client (``falcon.testing.TestClient`` and ``ASGIConductor`` for the streamed probe)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, AsyncIterator, List

import falcon
import falcon.asgi
import falcon.testing
from asgi_client import run_coroutine
from harness import BIG_SIZE, STREAM_CHUNKS, StreamProbe
from harness_falcon import FalconHarness, add_standard_routes

from moesif_integrations.falcon import MoesifMiddleware


class Item:
    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, item_id: str
    ) -> None:
        resp.media = {"id": item_id}


class Items:
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {"received": await req.get_media()}
        resp.status = falcon.HTTP_201


class Form:
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        form = await req.get_media()
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = f"hello {form['name']}"


class Upload:
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {"size": len(await req.stream.read())}


class Big:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = "application/octet-stream"
        resp.data = b"x" * BIG_SIZE


class Stream:
    def __init__(self, produced: List[bytes]) -> None:
        self.produced = produced

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for chunk in STREAM_CHUNKS:
                await asyncio.sleep(0.01)  # a real producer waits for its data
                self.produced.append(chunk)
                yield chunk

        resp.content_type = falcon.MEDIA_TEXT
        resp.stream = chunks()


class Error:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        raise RuntimeError("view failed")


class Health:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = "ok"


def standard_app(middleware: MoesifMiddleware, produced: List[bytes]) -> falcon.asgi.App:
    app = falcon.asgi.App(middleware=[middleware])
    return add_standard_routes(app, sys.modules[__name__], produced)


class FalconAsgiHarness(FalconHarness):
    name = "falcon_asgi"

    def make_app(self) -> Any:
        return standard_app(self.middleware, self.produced)

    def stream_probe(self) -> StreamProbe:
        async def probe() -> StreamProbe:
            async with falcon.testing.ASGIConductor(self.app) as conductor:
                async with conductor.simulate_get_stream("/stream") as result:
                    first = b""
                    while not first:
                        first = await result.stream.read()
                    produced = len(self.produced)
                    rest = b""
                    for _ in range(1000):  # bounded: a broken stream fails the test, not hangs
                        if len(first + rest) >= len(b"".join(STREAM_CHUNKS)):
                            break
                        rest += await result.stream.read()
                        await asyncio.sleep(0.005)
            return StreamProbe(first, produced, first + rest)

        return run_coroutine(probe())


HARNESS = FalconAsgiHarness
