"""Node.js tools and Chromium for the tests that check the API as real clients meet it.

npm packages are pinned by a package-lock.json in the project (with their integrity
hashes) and installed with `npm ci` the first time a test needs them. Where Node.js or
Chromium is missing the test is skipped with the reason; CI sets REQUIRE_NODE=1 and
REQUIRE_CHROMIUM=1 (.ci/run), and there a missing tool fails the test instead.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tests" / "js"  # graphql-http, graphql-eslint, playwright-core
REQUIRE_NODE = os.environ.get("REQUIRE_NODE") == "1"
REQUIRE_CHROMIUM = os.environ.get("REQUIRE_CHROMIUM") == "1"


def _missing(reason: str, required: bool) -> None:
    if required:
        pytest.fail(reason)
    pytest.skip(reason)


def npm_project(path: Path = TOOLS) -> Path:
    """`path` with its node_modules installed exactly as its package-lock.json says."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        _missing("needs Node.js and npm (Debian: apt-get install nodejs npm)", REQUIRE_NODE)
    lock = path / "package-lock.json"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    stamp = path / "node_modules" / ".installed-lock-sha256"
    with open(path / ".npm-install.lock", "w") as guard:  # one install at a time
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not stamp.exists() or stamp.read_text() != digest:
            done = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=path, capture_output=True, text=True, timeout=600,
            )
            if done.returncode != 0:
                pytest.fail(f"npm ci in {path} failed:\n{done.stdout}\n{done.stderr}")
            stamp.write_text(digest)
    return path


def node(script: str | Path, *args: str, cwd: Path = TOOLS, env: dict[str, str] | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Runs `node script args...` in an installed npm project; the result, whatever its exit code."""
    npm_project(cwd)
    return subprocess.run(
        ["node", str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def chromium() -> str:
    """The path of Debian's Chromium (or $CHROMIUM)."""
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        _missing("needs Chromium (Debian: apt-get install chromium)", REQUIRE_CHROMIUM)
    assert found is not None
    return found
