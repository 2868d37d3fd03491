"""Persisted operations: Apollo's automatic persisted queries, trusted documents, and HTTP
caching of the public catalogue.

**Automatic persisted queries** (Apollo's `createPersistedQueryLink`). A client sends
`extensions.persistedQuery = {"version": 1, "sha256Hash": ...}` without `query` (POST, or GET
with `extensions` as a JSON query parameter). A document the server knows runs; an unknown one
answers the error `PersistedQueryNotFound` (`PERSISTED_QUERY_NOT_FOUND`; HTTP 200 as Apollo Server
answers, or 404 as application/graphql-response+json), and the client sends the query with its hash. The hash must be the SHA-256 of the
query text (else 400), and the document is registered once it has run. Registered documents
live in Redis when `REDIS_URL` is set (shared by every worker), else in a bounded in-process LRU.
Redis out of reach costs a WARNING line and a PersistedQueryNotFound, never a failed request.

**Trusted documents** (`TRUSTED_DOCUMENTS=only`): only the documents of the manifest run, named
by hash or sent as their exact text; anything else is refused (403,
`PERSISTED_QUERY_NOT_ALLOWED`) and nothing is registered. The manifest is Apollo's persisted
query manifest, generated from operations/*.graphql by `revampd-bff export-manifest`; each body
is the document as Apollo Client sends it (`__typename` added to every selection set below the
root, operations before fragments, printed by graphql-js `print`), so its id is the hash the
client computes. In both modes the manifest's documents are known without registration.

**HTTP caching.** A successful GET query that selects only the public catalogue (PUBLIC_FIELDS:
data that is the same for every caller) answers `Cache-Control: public, max-age=300` and an
ETag; `If-None-Match` with that tag answers 304. Every other response of /graphql says
`Cache-Control: no-store`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from graphql import (
    ArgumentNode,
    BooleanValueNode,
    DirectiveNode,
    DocumentNode,
    EnumValueNode,
    FieldNode,
    FloatValueNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    IntValueNode,
    ListTypeNode,
    ListValueNode,
    NamedTypeNode,
    NonNullTypeNode,
    NullValueNode,
    ObjectFieldNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    VariableDefinitionNode,
    VariableNode,
    parse,
)
from graphql.language.block_string import print_block_string
from graphql.language.print_string import print_string
from redis.asyncio import from_url as redis_from_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from server.graphql_http import JSON, BadRequest, GraphQLRequest, graphql_error
from server.settings import Settings, SettingsError

log = logging.getLogger("revampd.persisted")

VERSION = 1
MANIFEST_FORMAT = "apollo-persisted-query-manifest"
NOT_FOUND = "PersistedQueryNotFound"
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
# In-process store: registered documents, least recently used dropped first past this size.
MEMORY_STORE_CHARS = 10_000_000
# Redis: a registration lasts a day (a client re-registers with one extra round trip); Redis
# slower than this counts as out of reach.
REDIS_TTL_SECONDS = 24 * 3600
REDIS_TIMEOUT_SECONDS = 0.5


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------
# The manifest


# Apollo Client hashes the text graphql-js 16 prints (graphql-core 3.3 prints some values
# otherwise, e.g. `{ a: 1 }` for `{a: 1}`): this is that printer for executable documents, with
# Apollo's addTypenameToDocument folded in.
MAX_LINE_LENGTH = 80


def _join(parts: Any, separator: str = "") -> str:
    return separator.join(p for p in parts if p)


def _wrap(start: str, text: str | None, end: str = "") -> str:
    return start + text + end if text else ""


def _indent(text: str) -> str:
    return _wrap("  ", text.replace("\n", "\n  "))


def _all(nodes: Any, separator: str) -> str:
    return _join((_print(n) for n in nodes or ()), separator)


def _selections(node: SelectionSetNode, root: bool = False) -> str:
    """Apollo's addTypenameToDocument: `__typename` last in every selection set below the
    operation's own, unless the set already selects `__typename` or another `__` field."""
    lines = [_print(s) for s in node.selections]
    if not root and not any(isinstance(s, FieldNode) and s.name.value.startswith("__") for s in node.selections):
        lines.append("__typename")
    return _wrap("{\n", _indent(_join(lines, "\n")), "\n}")


def _print(node: Any) -> str:
    if isinstance(node, DocumentNode):
        return _all(node.definitions, "\n\n")
    if isinstance(node, OperationDefinitionNode):
        variables = _wrap("(", _all(node.variable_definitions, ", "), ")")
        name = node.name.value if node.name else ""
        prefix = _join([node.operation.value, name + variables, _all(node.directives, " ")], " ")
        return ("" if prefix == "query" else prefix + " ") + _selections(node.selection_set, root=True)
    if isinstance(node, VariableDefinitionNode):
        return (f"${node.variable.name.value}: {_print(node.type)}" + _wrap(" = ", _print(node.default_value))
                + _wrap(" ", _all(node.directives, " ")))
    if isinstance(node, FieldNode):
        prefix = _wrap("", node.alias.value if node.alias else None, ": ") + node.name.value
        line = prefix + _wrap("(", _all(node.arguments, ", "), ")")
        if len(line) > MAX_LINE_LENGTH:
            line = prefix + _wrap("(\n", _indent(_all(node.arguments, "\n")), "\n)")
        selections = _selections(node.selection_set) if node.selection_set else ""
        return _join([line, _all(node.directives, " "), selections], " ")
    if isinstance(node, (ArgumentNode, ObjectFieldNode)):
        return f"{node.name.value}: {_print(node.value)}"
    if isinstance(node, FragmentSpreadNode):
        return "..." + node.name.value + _wrap(" ", _all(node.directives, " "))
    if isinstance(node, InlineFragmentNode):
        condition = node.type_condition.name.value if node.type_condition else None
        return _join(["...", _wrap("on ", condition), _all(node.directives, " "), _selections(node.selection_set)], " ")
    if isinstance(node, FragmentDefinitionNode):
        return (f"fragment {node.name.value} on {node.type_condition.name.value} "
                + _wrap("", _all(node.directives, " "), " ") + _selections(node.selection_set))
    if isinstance(node, DirectiveNode):
        return "@" + node.name.value + _wrap("(", _all(node.arguments, ", "), ")")
    if isinstance(node, VariableNode):
        return "$" + node.name.value
    if isinstance(node, (IntValueNode, FloatValueNode, EnumValueNode)):
        return node.value
    if isinstance(node, StringValueNode):
        return print_block_string(node.value) if node.block else print_string(node.value)
    if isinstance(node, BooleanValueNode):
        return "true" if node.value else "false"
    if isinstance(node, NullValueNode):
        return "null"
    if isinstance(node, ListValueNode):
        return "[" + _all(node.values, ", ") + "]"
    if isinstance(node, ObjectValueNode):
        return "{" + _all(node.fields, ", ") + "}"
    if isinstance(node, NamedTypeNode):
        return node.name.value
    if isinstance(node, ListTypeNode):
        return "[" + _print(node.type) + "]"
    if isinstance(node, NonNullTypeNode):
        return _print(node.type) + "!"
    if node is None:
        return ""
    raise ValueError(f"cannot print {type(node).__name__}")


def _spreads(node: SelectionSetNode) -> set[str]:
    found: set[str] = set()
    for s in node.selections:
        if isinstance(s, FragmentSpreadNode):
            found.add(s.name.value)
        elif isinstance(s, (FieldNode, InlineFragmentNode)) and s.selection_set is not None:
            found |= _spreads(s.selection_set)
    return found


def client_document(operation: OperationDefinitionNode, fragments: dict[str, FragmentDefinitionNode]) -> str:
    """The text Apollo Client sends for `operation` (and hashes): with the fragments it uses,
    operations before fragments and each kind sorted by name (Apollo's sortTopLevelDefinitions),
    `__typename` added, printed as graphql-js 16 prints."""
    used: dict[str, FragmentDefinitionNode] = {}
    todo = _spreads(operation.selection_set)
    while todo:
        name = todo.pop()
        if name not in used:
            used[name] = fragments[name]
            todo |= _spreads(used[name].selection_set)
    return _print(DocumentNode(definitions=(operation, *(f for _, f in sorted(used.items())))))


def build_manifest(directory: Path) -> dict[str, Any]:
    """Apollo's persisted query manifest of the documents in `directory`/*.graphql: one named
    operation per file; fragments may be defined in any file."""
    documents = {path.name: parse(path.read_text(), no_location=True) for path in sorted(directory.glob("*.graphql"))}
    fragments = {
        d.name.value: d for doc in documents.values() for d in doc.definitions if isinstance(d, FragmentDefinitionNode)
    }
    operations = []
    for file, doc in documents.items():
        ops = [d for d in doc.definitions if isinstance(d, OperationDefinitionNode)]
        if len(ops) > 1 or any(op.name is None for op in ops):
            raise ValueError(f"{file}: a file holds at most one operation, and it must have a name")
        for op in ops:
            body = client_document(op, fragments)
            assert op.name is not None
            operations.append({"id": sha256(body), "name": op.name.value, "type": op.operation.value, "body": body})
    names = [op["name"] for op in operations]
    if len(set(names)) != len(names):
        raise ValueError(f"operation names must be unique, got {sorted(names)}")
    return {"format": MANIFEST_FORMAT, "version": 1, "operations": sorted(operations, key=lambda op: op["name"])}


def manifest_json(manifest: dict[str, Any]) -> str:
    """As Apollo's generator writes it (JSON.stringify with two spaces)."""
    return json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"


def load_manifest(path: str) -> dict[str, str]:
    """The manifest's documents by id; SettingsError naming what is wrong with the file."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise SettingsError(f"TRUSTED_DOCUMENTS_MANIFEST {path} cannot be read: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or data.get("version") != 1:
        raise SettingsError(f"TRUSTED_DOCUMENTS_MANIFEST {path} is not an {MANIFEST_FORMAT} of version 1")
    documents = {}
    for i, op in enumerate(data.get("operations") or []):
        body = op.get("body") if isinstance(op, dict) else None
        if not isinstance(body, str) or op.get("id") != sha256(body):
            raise SettingsError(
                f"TRUSTED_DOCUMENTS_MANIFEST {path}: operations[{i}] must have a body and, as id, its SHA-256"
            )
        documents[op["id"]] = body
    return documents


# ---------------------------------------------------------------------------------------------
# Where registered documents live


class Store(Protocol):
    async def get(self, key: str) -> str | None: ...
    async def set(self, key: str, document: str) -> None: ...
    async def close(self) -> None: ...


class MemoryStore:
    """This process's registered documents, least recently used dropped past `max_chars`."""

    def __init__(self, max_chars: int = MEMORY_STORE_CHARS) -> None:
        self.documents: OrderedDict[str, str] = OrderedDict()
        self.max_chars, self.chars = max_chars, 0

    async def get(self, key: str) -> str | None:
        document = self.documents.get(key)
        if document is not None:
            self.documents.move_to_end(key)
        return document

    async def set(self, key: str, document: str) -> None:
        if key in self.documents:
            return
        self.documents[key] = document
        self.chars += len(document)
        while self.chars > self.max_chars:
            self.chars -= len(self.documents.popitem(last=False)[1])

    async def close(self) -> None:
        pass


class RedisStore:
    """Registered documents in Redis, shared by every worker. Redis out of reach (or slower than
    REDIS_TIMEOUT_SECONDS) is one WARNING line per failed call: a lookup finds nothing (the client
    re-sends its query) and a registration is skipped."""

    def __init__(self, url: str, prefix: str) -> None:
        self.prefix = prefix + "apq:"
        # One retry: a pooled connection Redis closed is replaced once, and no more.
        self.redis = redis_from_url(
            url, decode_responses=True, socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS, retry=Retry(NoBackoff(), 1),
        )

    async def _call(self, what: str, command: Callable[[], Any]) -> Any:
        try:
            return await command()
        except (RedisError, OSError) as exc:
            log.warning("Redis out of reach, persisted document %s skipped: %s: %s", what, type(exc).__name__, exc)
            return None

    async def get(self, key: str) -> str | None:
        found = await self._call("lookup", lambda: self.redis.get(self.prefix + key))
        return found if isinstance(found, str) else None

    async def set(self, key: str, document: str) -> None:
        await self._call("registration", lambda: self.redis.set(self.prefix + key, document, ex=REDIS_TTL_SECONDS))

    async def close(self) -> None:
        await self.redis.aclose()


# ---------------------------------------------------------------------------------------------
# Resolving a request's document


@dataclass(frozen=True)
class Document:
    query: str
    # The hash to register the query under once it has run (APQ); None when known already.
    register: str | None = None
    # A document of the manifest (named by its hash or sent as its text).
    trusted: bool = False


class NotFound(BadRequest):
    """As application/json a 200, as Apollo Server answers (every Apollo client, web, iOS or Kotlin,
    then re-sends its query); as application/graphql-response+json a 404, since GraphQL over HTTP
    answers a request error (no `data`) with a 4xx. Apollo's link retries on either."""

    def __init__(self) -> None:
        super().__init__(NOT_FOUND, code="PERSISTED_QUERY_NOT_FOUND")

    def response(self, media: str = JSON) -> Response:
        return graphql_error(200 if media == JSON else 404, self.code, self.message, media=media)


def not_found() -> BadRequest:
    return NotFound()


def not_allowed(why: str) -> BadRequest:
    return BadRequest(
        f"{why} This server runs only the operations of its manifest (TRUSTED_DOCUMENTS=only).",
        status=403, code="PERSISTED_QUERY_NOT_ALLOWED",
    )


def requested_hash(extensions: dict[str, Any]) -> str:
    pq = extensions["persistedQuery"]
    if not isinstance(pq, dict):
        raise BadRequest("extensions.persistedQuery must be an object such as {\"version\": 1, \"sha256Hash\": \"...\"}.")
    if pq.get("version") != VERSION:
        raise BadRequest(
            f"extensions.persistedQuery.version {pq.get('version')!r} is not supported: send version 1 "
            "(Apollo's automatic persisted queries)."
        )
    value = pq.get("sha256Hash")
    if not isinstance(value, str) or not _SHA256.match(value):
        raise BadRequest("extensions.persistedQuery.sha256Hash must be the SHA-256 of the query in 64 hex digits.")
    return value.lower()


class Documents:
    """The document each request runs, by the rules of the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self.trusted_only = settings.trusted_documents == "only"
        self.manifest = load_manifest(settings.trusted_documents_manifest)
        self.store: Store = (
            RedisStore(settings.redis_url, settings.redis_key_prefix) if settings.redis_url else MemoryStore()
        )

    async def resolve(self, request: GraphQLRequest) -> Document:
        """The request's document, looked up before any database connection is taken; raises
        BadRequest with the answer when there is none to run."""
        query = request.query
        if request.extensions is None or "persistedQuery" not in request.extensions:
            assert query is not None
            return self.of_text(query)
        wanted = requested_hash(request.extensions)
        if query is None:
            known = self.manifest.get(wanted)
            if known is None and self.trusted_only:
                raise not_allowed(f"No operation of the manifest has the hash {wanted}.")
            if known is None:
                known = await self.store.get(wanted)
            if known is None:
                raise not_found()
            return Document(known, trusted=wanted in self.manifest)
        if sha256(query) != wanted:
            raise BadRequest(
                f"extensions.persistedQuery.sha256Hash {wanted} is not the SHA-256 of query ({sha256(query)})."
            )
        if wanted in self.manifest:
            return Document(query, trusted=True)
        if self.trusted_only:
            raise not_allowed("Registering a document is refused: it is not in the manifest.")
        return Document(query, register=wanted)

    def of_text(self, query: str) -> Document:
        """A document sent as text (trusted when the manifest holds it)."""
        return Document(query, trusted=sha256(query) in self.manifest)

    def check_trusted(self, document: Document, introspection_only: bool) -> None:
        """With TRUSTED_DOCUMENTS=only, refuse a document sent as text that the manifest does not
        hold. Introspection follows INTROSPECTION whatever this says (GraphiQL keeps its docs)."""
        if self.trusted_only and not document.trusted and not introspection_only:
            raise not_allowed("This document is not in the manifest.")

    async def register(self, document: Document) -> None:
        if document.register is not None:
            await self.store.set(document.register, document.query)

    async def close(self) -> None:
        await self.store.close()


# ---------------------------------------------------------------------------------------------
# HTTP caching

# Fields whose values are the same for every caller: the catalogue of plans and add-on products
# (changed only by a deploy or an admin edit). A query is public only if every field it selects,
# at any depth, is listed here (or is __typename); a field added to the schema is private until
# someone checks it and lists it.
PUBLIC_FIELDS: dict[str, frozenset[str]] = {
    "Query": frozenset({"plans", "planComparison", "addOnProducts"}),
    "Plan": frozenset({"id", "code", "name", "monthlyPrice", "transactionFeePercent", "limits", "retired"}),
    "PlanLimits": frozenset({"subOrgs", "campaigns", "workflows"}),
    "PlanComparison": frozenset({"plans", "rows"}),
    "PlanComparisonRow": frozenset({"feature", "label", "values"}),
    "AddOnProduct": frozenset({"id", "code", "name", "description", "monthlyPrice", "maxQuantity"}),
    "Money": frozenset({"amount", "currencyCode"}),
}
# Five minutes: a price an admin changes reaches every client within five minutes, and a shared
# cache or the app answers the catalogue pages of all callers in between. (What a mutation charges
# is always read fresh; this is only what the pages show.)
PUBLIC_CACHE_CONTROL = "public, max-age=300"
NO_STORE = "no-store"


def _etag_matches(header: str, etag: str) -> bool:
    """If-None-Match uses the weak comparison: W/"x" matches "x"."""
    opaque = etag.removeprefix("W/")
    return header.strip() == "*" or any(t.strip().removeprefix("W/") == opaque for t in header.split(","))


def public_catalogue(request: Request, response: Response) -> Response:
    """`response` (a public catalogue result) with Cache-Control and an ETag; 304 when the
    client's If-None-Match holds that tag.

    The request carries Authorization; a shared cache stores such a response only when told
    `public` (RFC 9111, 3.5). It may then serve it to anyone who asks for the same URL, which is
    right for the catalogue alone: it is the same for every caller and hides nothing. The tag
    covers the media type too, so each representation has its own (every response of /graphql
    says `Vary: Accept`).
    """
    kind = response.headers.get("content-type", "").encode()
    # Weak: the same tag names the answer whether it travels gzip-compressed or not.
    etag = 'W/"' + hashlib.sha256(kind + b"\n" + response.body).hexdigest()[:32] + '"'
    headers = {"Cache-Control": PUBLIC_CACHE_CONTROL, "ETag": etag}
    if _etag_matches(request.headers.get("if-none-match", ""), etag):
        return Response(status_code=304, headers=headers)
    response.headers.update(headers)
    return response
