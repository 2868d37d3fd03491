"""Short-lived signed URLs for downloads the service serves itself (server/files.py).

A URL names one object (or one export) of one connection and when it expires, and is signed
with an HMAC-SHA256 of its path and every parameter under FILES_SIGNING_KEY:

    /files/invoice/42/INV-NW-0007.pdf?c=1&e=1765000000&s=...

Whoever holds it may fetch that object until then, without a token, as a browser does with a
link; changing any part of it (another object, another connection, a later expiry) breaks the
signature. It carries no secret: the connection's id and the object's are already in the
graph's IDs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timezone
from urllib.parse import quote, urlencode

PREFIX = "/files"


def _signature(key: str, path: str, params: dict[str, str]) -> str:
    message = path + "?" + urlencode(sorted(params.items()))
    digest = hmac.new(key.encode(), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(key: str, parts: list[str], params: dict[str, str], connection_id: int, expires: datetime) -> str:
    """The URL of /files/<parts...> for `connection_id`, valid until `expires`."""
    signed = {**params, "c": str(connection_id), "e": str(int(expires.timestamp()))}
    signature = _signature(key, PREFIX + "/" + "/".join(parts), signed)
    path = PREFIX + "/" + "/".join(quote(p, safe="") for p in parts)
    return f"{path}?{urlencode({**signed, 's': signature})}"


def verified(key: str, path: str, query: list[tuple[str, str]], now: datetime) -> dict[str, str] | None:
    """The parameters of a URL signed with `key` that has not expired at `now`, else None
    (`path` as the request has it, percent-decoded)."""
    params = dict(query)
    if len(params) != len(query) or "s" not in params:
        return None
    given = params.pop("s")
    if not hmac.compare_digest(given, _signature(key, path, params)):
        return None
    try:
        expires = datetime.fromtimestamp(int(params["e"]), timezone.utc)
        int(params["c"])
    except (KeyError, ValueError, OverflowError):
        return None
    return params if now < expires else None
