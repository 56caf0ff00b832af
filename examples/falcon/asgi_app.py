# python -m moesif_integrations.collector --port 8000 &  MOESIF_APPLICATION_ID=local MOESIF_BASE_URI=http://127.0.0.1:8000 uvicorn --app-dir examples/falcon asgi_app:app  # noqa: E501
"""The bookshelf API of ``app.py`` on ``falcon.asgi.App``: the same middleware class and hooks.

``GET /books/export`` streams NDJSON from an async generator (``?pause=0.5`` spaces the lines
out, to watch it stream); the event is recorded when the stream ends. Events are delivered by
background threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
from typing import AsyncIterator

import falcon
import falcon.asgi
from bookshelf import BOOKS, moesif_settings, new_book, owner_of

from moesif_integrations.falcon import MoesifMiddleware


class Authenticate:
    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        if req.path == "/health":
            return
        owner = owner_of(req.get_header("X-Api-Key"))
        if owner is None:
            raise falcon.HTTPUnauthorized(title="missing or unknown X-Api-Key")
        req.context.user, req.context.team = owner


class Books:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {"books": list(BOOKS.values())}

    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        book = new_book(await req.get_media())
        if book is None:
            raise falcon.HTTPBadRequest(title="a book needs a title")
        resp.media = book
        resp.status = falcon.HTTP_201


class Book:
    async def on_get(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, book_id: int
    ) -> None:
        if book_id not in BOOKS:
            raise falcon.HTTPNotFound(title=f"no book {book_id}")
        resp.media = BOOKS[book_id]


class Export:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        pause = req.get_param_as_float("pause", min_value=0, max_value=5) or 0.0

        async def lines() -> AsyncIterator[bytes]:
            for number, book in enumerate(list(BOOKS.values())):
                if number and pause:
                    await asyncio.sleep(pause)
                yield json.dumps(book).encode() + b"\n"

        resp.content_type = "application/x-ndjson"
        resp.stream = lines()


class Health:
    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.media = {"ok": True}


# Moesif first: it sees the request before the other middleware and the response after them.
app = falcon.asgi.App(middleware=[MoesifMiddleware(moesif_settings()), Authenticate()])
app.add_route("/books", Books())
app.add_route("/books/{book_id:int}", Book())
app.add_route("/books/export", Export())
app.add_route("/health", Health())
