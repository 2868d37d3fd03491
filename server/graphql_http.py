"""GraphQL over HTTP: reading a request strictly, and the shape of every refusal.

Anything wrong with the request itself (not JSON, not an object, not UTF-8, too
large, too deep, text no database can store) is answered here with a 4xx and a
GraphQL-shaped error, before any resolver runs or any connection is taken.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import ExecutionResult
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from strawberry.http import process_result


class GraphQLResponse(JSONResponse):
    """A GraphQL result as JSON, serialized by orjson: the same bytes as Starlette's
    JSONResponse gives (compact, UTF-8, nothing escaped beyond what JSON requires; the
    graph has no floats), in a tenth of the time on a page of a hundred."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


# Seconds a client is asked to wait when the database is too busy to answer (503).
RETRY_AFTER = "1"
# Deeper than any input of the schema; JSON nested deeper is refused, not recursed into.
MAX_JSON_DEPTH = 32
JSON_TYPES = ("application/json", "application/graphql+json", "application/graphql-response+json")

# The two media types a result can be sent as (GraphQL over HTTP): the spec's own, for clients
# that ask for it, and plain JSON, the default, for everyone else.
GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
# The Content-Type each is sent with (application/json is UTF-8 by definition; the spec's own names it).
CONTENT_TYPES = {GRAPHQL_RESPONSE: f"{GRAPHQL_RESPONSE}; charset=utf-8", JSON: JSON}


def _ranges(accept: str) -> list[tuple[str, float]]:
    """The media ranges of an Accept header with their q-values, in the order sent."""
    ranges = []
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media:
            ranges.append((media.lower(), q))
    return ranges


def negotiate(accept: str | None) -> str | None:
    """The media type to answer with, or None when the client accepts neither (406).

    No Accept header, `*/*` or `application/*` gets application/json; an explicit
    application/graphql-response+json is preferred unless application/json is given a
    higher q-value.
    """
    if not accept or not accept.strip():
        return JSON
    best: tuple[float, int, str] | None = None
    for media, q in _ranges(accept):
        if q <= 0:
            continue
        if media == GRAPHQL_RESPONSE:
            candidate = (q, 1, GRAPHQL_RESPONSE)
        elif media in (JSON, "application/*", "*/*"):
            candidate = (q, 0, JSON)
        else:
            continue
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    return best[2] if best else None


def graphql_error(
    status: int, code: str, message: str, *, media: str = JSON, extensions: dict[str, Any] | None = None,
    **headers: str,
) -> Response:
    """A request refused before execution. As application/graphql-response+json it has no
    `data` entry (the spec's request error); as application/json it keeps `"data": null`."""
    error = {"message": message, "extensions": {"code": code}}
    body: dict[str, Any] = {"errors": [error]} if media == GRAPHQL_RESPONSE else {"data": None, "errors": [error]}
    if extensions:
        body["extensions"] = extensions
    return GraphQLResponse(body, status_code=status, headers=headers or None, media_type=CONTENT_TYPES[media])


class BadRequest(Exception):
    """The request cannot be a GraphQL request; answered with `status` and `code`."""

    def __init__(self, message: str, status: int = 400, code: str = "BAD_REQUEST", **headers: str) -> None:
        super().__init__(message)
        self.message, self.status, self.code, self.headers = message, status, code, headers

    # The response's own `extensions` (a throttled request's cost).
    extensions: dict[str, Any] | None = None

    def response(self, media: str = JSON) -> Response:
        return graphql_error(self.status, self.code, self.message, media=media, extensions=self.extensions,
                             **self.headers)


EVENT_STREAM = "text/event-stream"


def wants_events(request: Request) -> bool:
    """A graphql-sse client (distinct connections mode): a POST that accepts an event stream."""
    return request.method == "POST" and EVENT_STREAM in request.headers.get("accept", "")


@dataclass(frozen=True)
class GraphQLRequest:
    # None when the request names its document by hash only (server/persisted.py finds it).
    query: str | None
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None = None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise BadRequest(f"{what} is nested too deeply.") from None
    except ValueError as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc}.") from None


def check_text(value: Any, path: str, depth: int = 0) -> None:
    """Every string must be storable text: no lone surrogates (not Unicode), no NUL."""
    if depth > MAX_JSON_DEPTH:
        raise BadRequest(f"{path} is nested deeper than {MAX_JSON_DEPTH} levels.")
    if isinstance(value, str):
        if "\x00" in value:
            raise BadRequest(f"{path} must not contain NUL (\\u0000).")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(f"{path} is not valid Unicode (it holds a lone surrogate).") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, f"{path} key", depth + 1)
            check_text(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_text(item, f"{path}[{i}]", depth + 1)


async def _body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it passes `limit` bytes, chunked or not."""
    too_large = BadRequest(
        f"The request body is larger than {limit} bytes.", status=413, code="REQUEST_TOO_LARGE"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():  # raises ClientDisconnect if the client hangs up
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def read_request(request: Request, max_body_bytes: int) -> GraphQLRequest:
    if request.method == "GET":
        params = request.query_params
        variables, extensions = params.get("variables"), params.get("extensions")
        data: Any = {
            "query": params.get("query"),
            "variables": _json(variables, "variables") if variables else None,
            "operationName": params.get("operationName"),
            "extensions": _json(extensions, "extensions") if extensions else None,
        }
    else:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in JSON_TYPES:
            raise BadRequest(
                "Send the request as JSON (Content-Type: application/json).",
                status=415, code="UNSUPPORTED_MEDIA_TYPE",
            )
        raw = await _body(request, max_body_bytes)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("The request body is not valid UTF-8.") from None
        data = _json(text, "The request body")
    if not isinstance(data, dict):
        raise BadRequest('The request body must be a JSON object such as {"query": "..."}.')
    query, variables, name = data.get("query"), data.get("variables"), data.get("operationName")
    extensions = data.get("extensions")
    if extensions is not None and not isinstance(extensions, dict):
        raise BadRequest("extensions must be an object or null.")
    by_hash = query is None and extensions is not None and "persistedQuery" in extensions
    if not by_hash and (not isinstance(query, str) or not query.strip()):
        raise BadRequest("query must be a non-empty string holding a GraphQL document.")
    if variables is not None and not isinstance(variables, dict):
        raise BadRequest("variables must be an object or null.")
    if name is not None and not isinstance(name, str):
        raise BadRequest("operationName must be a string or null.")
    check_text(query, "query")
    check_text(name, "operationName")
    check_text(variables, "variables")
    check_text(extensions, "extensions")
    return GraphQLRequest(query, variables, name or None, extensions)


def result_response(result: ExecutionResult, media: str, db_busy: bool) -> Response:
    """The result as `media`. As application/json every result that is not a refusal of the
    database is a 200, as it always was. As application/graphql-response+json (GraphQL over
    HTTP) a request error (the document did not parse or validate, a variable did not coerce,
    a limit refused it: nothing ran) is a 400 with no `data` entry, or a 500 if it was our fault."""
    body = process_result(result)
    headers = {"Retry-After": RETRY_AFTER} if db_busy else None
    status = 503 if db_busy else 200
    if media == GRAPHQL_RESPONSE and result.data is None and result.errors and not any(e.path for e in result.errors):
        del body["data"]
        if not db_busy:
            internal = any((e.extensions or {}).get("code") == "INTERNAL_SERVER_ERROR" for e in result.errors)
            status = 500 if internal else 400
    return GraphQLResponse(body, status_code=status, headers=headers, media_type=CONTENT_TYPES[media])
