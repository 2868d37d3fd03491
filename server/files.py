"""GET /files/...: the documents and exports behind the graph's signed URLs (services/signed_urls.py).

- /files/<invoice|credit-note|receipt|payout-statement>/<id>/<name>.pdf: the PDF, made once per
  state of its object and kept (services/pdfs.py), with its digest as a strong ETag;
- /files/exports/<kind>/<name>.csv: an export streamed as it is read (services/exports.py).

A link that is not signed with FILES_SIGNING_KEY, was changed, has expired, or names an object
that is not its connection's is refused alike, 403 with one sentence: whether the object exists
is not told. No bearer token is needed or read: a browser opens the link as it is.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from services import exports, pdfs, signed_urls

log = logging.getLogger("revampd.files")

REFUSED = "This link is not valid or has expired: ask for a new one."
Sessions = Callable[[], async_sessionmaker[AsyncSession]]


def _refused(request: Request, why: str) -> Response:
    log.info("refused %s: %s", request.url.path, why)
    return PlainTextResponse(REFUSED, status_code=403, headers={"Cache-Control": "no-store"})


def _disposition(how: str, filename: str) -> str:
    # The names are ours (numbers, dates and ASCII words): no quoting beyond the quotes.
    return f'{how}; filename="{filename}"'


def routes(key: str, reads: Sessions, writes: Sessions, clock: Callable[[], datetime] | None = None) -> list[Route]:
    now = clock or (lambda: datetime.now(timezone.utc))

    async def document(request: Request) -> Response:
        params = signed_urls.verified(key, request.url.path, request.query_params.multi_items(), now())
        kind, raw_id = request.path_params["kind"], request.path_params["id"]
        # An id that is not a row's number (digits, within a bigint) names nothing either.
        if params is None or kind not in pdfs.KINDS or not (raw_id.isdigit() and len(raw_id) <= 18):
            return _refused(request, "bad or expired signature")
        found = await pdfs.document(reads(), writes(), kind, int(raw_id), int(params["c"]), now())
        if found is None:
            return _refused(request, "no such object of the connection signed for")
        etag = f'"{found.sha256}"'
        headers = {
            "ETag": etag, "Content-Disposition": _disposition("inline", found.filename),
            # The link is short-lived and the bytes are a Partner's: kept by the browser alone.
            "Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff",
        }
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        return Response(found.content, media_type="application/pdf", headers=headers)

    async def export(request: Request) -> Response:
        params = signed_urls.verified(key, request.url.path, request.query_params.multi_items(), now())
        kind = request.path_params["kind"]
        if params is None or kind not in exports.KINDS:
            return _refused(request, "bad or expired signature")
        try:
            start, end = (datetime.fromisoformat(params[k]) if params.get(k) else None for k in ("from", "until"))
        except ValueError:
            return _refused(request, "bad period")
        body = exports.csv_stream(reads(), kind, int(params["c"]), start, end)
        return StreamingResponse(body, media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": _disposition("attachment", request.path_params["name"]),
            "Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff",
        })

    return [
        Route("/files/exports/{kind}/{name}", export, methods=["GET"]),
        Route("/files/{kind}/{id}/{name}", document, methods=["GET"]),
    ]
