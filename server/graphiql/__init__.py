"""GraphiQL, served by the service itself: no CDN, so it works offline too.

Its files (GraphiQL and React, minified UMD builds) are in static/, named in manifest.json with
their npm package, version and SRI hash; the page loads each with that hash as its `integrity`.
`python -m server.graphiql update` downloads them again (see __main__.py).

In development (the JWT secret is the development one) the page opens with a token of the
first demo user `revampd-bff demo-tokens` lists in its headers pane, made afresh for each page.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from db import models as m
from server.auth import demo_users, user_token
from server.settings import Settings

log = logging.getLogger("revampd.graphiql")

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"
STATIC = HERE / "static"
# Where the files are served, and how the page (at /graphql) names them: relative, so that the
# service may sit under a path prefix.
ROUTE = "/graphiql"
IMMUTABLE = "public, max-age=31536000, immutable"  # a file's URL names its version
CONTENT_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def sri(data: bytes) -> str:
    """The Subresource Integrity hash of `data`, as an `integrity` attribute holds it."""
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


@dataclass(frozen=True)
class Asset:
    package: str
    version: str
    file: str  # in the package's tarball
    integrity: str

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> "Asset":
        return cls(entry["package"], entry["version"], entry["file"], entry["integrity"])

    @property
    def path(self) -> str:
        """Under static/ and under /graphiql/: the version is in the URL, so it never changes."""
        return f"{self.package}@{self.version}/{PurePosixPath(self.file).name}"

    def tag(self) -> str:
        url = f"{ROUTE.lstrip('/')}/{self.path}"
        if self.path.endswith(".css"):
            return f'<link rel="stylesheet" href="{url}" integrity="{self.integrity}">'
        return f'<script src="{url}" integrity="{self.integrity}"></script>'


@cache
def assets() -> tuple[Asset, ...]:
    return tuple(Asset.from_entry(e) for e in json.loads(MANIFEST.read_text()))


@cache
def _file(path: str) -> bytes | None:
    if path not in {a.path for a in assets()}:
        return None
    return (STATIC / path).read_bytes()


@cache
def _gzipped(path: str) -> bytes:
    """The file compressed once, at the highest level (it never changes while the process lives)."""
    data = _file(path)
    assert data is not None
    return gzip.compress(data, compresslevel=9, mtime=0)


async def asset(request: Request) -> Response:
    path = request.path_params["path"]
    data = _file(path)
    if data is None:
        return PlainTextResponse("Not Found", 404)
    headers = {
        "Content-Type": CONTENT_TYPES[PurePosixPath(path).suffix],
        "Cache-Control": IMMUTABLE,
        "X-Content-Type-Options": "nosniff",
        "Vary": "Accept-Encoding",
    }
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(_gzipped(path), headers={**headers, "Content-Encoding": "gzip"})
    return Response(data, headers=headers)


def _script_json(value: Any) -> str:
    """JSON that cannot end the <script> element it sits in."""
    return json.dumps(value).replace("<", "\\u003c")


@cache
def _template() -> str:
    found = assets()
    html = (HERE / "page.html").read_text()
    html = html.replace("<!--styles-->", "\n  ".join(a.tag() for a in found if a.path.endswith(".css")))
    return html.replace("<!--scripts-->", "\n  ".join(a.tag() for a in found if a.path.endswith(".js")))


EXAMPLE = """{
  viewer {
    roles
    user { name email }
    partner { name }
  }
}
"""

NO_TOKEN = """# Put your token in the Headers pane below: {"Authorization": "Bearer <token>"}
# The documentation (the book icon at the left) needs none.
"""


def page(query: str, headers: str | None) -> HTMLResponse:
    html = _template().replace("<!--config-->", _script_json({"query": query, "headers": headers}))
    # A page may hold a token: never kept by a cache.
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


class GraphiQL:
    """The page, and the routes of its files."""

    def __init__(self, settings: Settings, reads: Callable[[], async_sessionmaker[AsyncSession]]) -> None:
        self.settings = settings
        self.reads = reads

    @property
    def routes(self) -> list[Route]:
        return [Route(ROUTE + "/{path:path}", asset, methods=["GET"])]

    async def page(self) -> HTMLResponse:
        if not self.settings.uses_dev_secret:
            return page(NO_TOKEN + EXAMPLE, None)
        try:
            user = await self._demo_user()
        except Exception as exc:  # noqa: BLE001 - the page still works, without a token
            log.warning("no demo token for GraphiQL: %s", exc)
            user = None
        if user is None:
            return page("# No demo user: run `revampd-bff seed-demo` for them.\n" + NO_TOKEN + EXAMPLE, None)
        token = user_token(self.settings, user)
        query = (f"# You are {user.email} ({user.role}): the Headers pane below holds a development token,\n"
                 "# made for this page. `revampd-bff demo-tokens` lists the other demo users.\n"
                 "# Run with Ctrl-Enter or the ▶ button.\n")
        return page(query + EXAMPLE, json.dumps({"Authorization": f"Bearer {token}"}, indent=2))

    async def _demo_user(self) -> m.User | None:
        """The first user `revampd-bff demo-tokens` lists: a Partner's admin in the demo data."""
        async with self.reads()() as session:
            return await session.scalar(demo_users().limit(1))
