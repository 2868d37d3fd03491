"""`python -m server.graphiql update`: downloads GraphiQL's files again from the npm registry.

Each file of manifest.json comes from its package's tarball, checked against the integrity
npm publishes for it; the file is written under static/<package>@<version>/ and its SRI hash
(sha384) into the manifest. To move to another version, change `version` in manifest.json and
run this again. Nothing is fetched while the service runs.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import shutil
import sys
import tarfile
import urllib.parse
import urllib.request
from typing import Any

from server.graphiql import MANIFEST, STATIC, Asset, sri

REGISTRY = "https://registry.npmjs.org"


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - https only, fixed host
        return bytes(response.read())


def _tarball(package: str, version: str) -> bytes:
    """The package's tarball, verified against the integrity (SRI) the registry publishes."""
    meta = json.loads(_get(f"{REGISTRY}/{urllib.parse.quote(package, safe='@')}/{version}"))
    dist: dict[str, Any] = meta["dist"]
    algorithm, _, expected = dist["integrity"].partition("-")
    if algorithm not in {"sha512", "sha384", "sha256"}:
        raise SystemExit(f"{package}@{version}: unexpected integrity {dist['integrity']!r}")
    data = _get(dist["tarball"])
    actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if actual != expected:
        raise SystemExit(f"{package}@{version}: the tarball does not match npm's integrity {dist['integrity']}")
    return data


def update() -> None:
    entries = json.loads(MANIFEST.read_text())
    tarballs: dict[tuple[str, str], bytes] = {}
    fresh = STATIC.with_name("static.new")
    shutil.rmtree(fresh, ignore_errors=True)
    for entry in entries:
        asset = Asset.from_entry(entry)
        key = (asset.package, asset.version)
        if key not in tarballs:
            print(f"{asset.package}@{asset.version}", file=sys.stderr)
            tarballs[key] = _tarball(*key)
        with tarfile.open(fileobj=io.BytesIO(tarballs[key]), mode="r:gz") as tar:
            member = tar.extractfile(f"package/{asset.file}")
            if member is None:
                raise SystemExit(f"{asset.package}@{asset.version} has no file {asset.file}")
            data = member.read()
        target = fresh / asset.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        entry["integrity"] = sri(data)
    shutil.rmtree(STATIC, ignore_errors=True)
    fresh.rename(STATIC)
    MANIFEST.write_text(json.dumps(entries, indent=2) + "\n")
    print(f"wrote {len(entries)} files under {STATIC} and their hashes in {MANIFEST}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m server.graphiql", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["update"])
    parser.parse_args(argv)
    update()


if __name__ == "__main__":
    main()
