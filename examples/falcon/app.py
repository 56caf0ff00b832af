# python -m moesif_integrations.collector --port 8000 &  MOESIF_APPLICATION_ID=local MOESIF_BASE_URI=http://127.0.0.1:8000 gunicorn --chdir examples/falcon app:app  # noqa: E501
"""A small bookshelf API on Falcon (WSGI), captured by the Moesif middleware.

Clients authenticate with an ``X-Api-Key`` header (``key-ada`` or ``key-grace``); the key's
owner becomes the event's user and their team its company. ``GET /books/export`` streams
NDJSON, which passes through unbuffered. Any ``MOESIF_<OPTION>`` environment variable
configures the capture, e.g. ``MOESIF_LOG_BODY=false``. The ASGI twin is ``asgi_app.py``.
"""

from __future__ import annotations

import json
from typing import Iterator

import falcon
from bookshelf import BOOKS, moesif_settings, new_book, owner_of

from moesif_integrations.falcon import MoesifMiddleware


class Authenticate:
    """Who is calling, kept in req.context for the resources and for the Moesif hooks."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.path == "/health":
            return
        owner = owner_of(req.get_header("X-Api-Key"))
        if owner is None:
            raise falcon.HTTPUnauthorized(title="missing or unknown X-Api-Key")
        req.context.user, req.context.team = owner


class Books:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"books": list(BOOKS.values())}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        book = new_book(req.get_media())
        if book is None:
            raise falcon.HTTPBadRequest(title="a book needs a title")
        resp.media = book
        resp.status = falcon.HTTP_201


class Book:
    def on_get(self, req: falcon.Request, resp: falcon.Response, book_id: int) -> None:
        if book_id not in BOOKS:
            raise falcon.HTTPNotFound(title=f"no book {book_id}")
        resp.media = BOOKS[book_id]


class Export:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        def lines() -> Iterator[bytes]:
            for book in list(BOOKS.values()):
                yield json.dumps(book).encode() + b"\n"

        resp.content_type = "application/x-ndjson"
        resp.stream = lines()


class Health:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"ok": True}


# Moesif first: it sees the request before the other middleware and the response after them.
app = falcon.App(middleware=[MoesifMiddleware(moesif_settings()), Authenticate()])
app.add_route("/books", Books())
app.add_route("/books/{book_id:int}", Book())
app.add_route("/books/export", Export())
app.add_route("/health", Health())
