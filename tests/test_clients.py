"""The dashboard's client toolchain in clients/ (an npm project pinned by its lock file).

- graphql-codegen (client preset, strictScalars) types operations/ against schema.graphql,
  and `tsc --strict` accepts the types and a small typed use of them with Apollo Client;
- Apollo Client (`clients/apollo-check.mjs`) loads the dashboard from a real server,
  upgrades the plan and finds the pending upgrade in its cache, with no warning.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import AsyncIterator

import pytest

from tests import served as _served
from tests.conftest import Databases, make_api
from tests.node import ROOT, node

CLIENTS = ROOT / "clients"
USER = "owner@bluebird.example"  # on GROWTH with a pending DOWNGRADE: the upgrade replaces it


def _run(script: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Runs a script of clients/ (or a tool from its node_modules/.bin); its output, failing on an error."""
    path = CLIENTS / script if (CLIENTS / script).exists() else CLIENTS / "node_modules" / ".bin" / script
    done = node(path, *args, cwd=CLIENTS, env=env)
    output = f"{done.stdout}\n{done.stderr}".strip()
    assert done.returncode == 0, f"{' '.join((script, *args))} failed:\n{output}"
    return output


def test_generated_types_compile_under_tsc_strict() -> None:
    """Codegen with every scalar mapped (strictScalars fails on one that is not), then
    tsc --strict over the generated code and clients/src/usage.ts, which also asserts
    that DateTime and Decimal arrive as strings and that variables are typed."""
    work = Path(tempfile.mkdtemp(prefix=".check-", dir=CLIENTS))
    try:
        shutil.copy(CLIENTS / "src" / "usage.ts", work / "usage.ts")
        (work / "tsconfig.json").write_text(json.dumps({"extends": "../tsconfig.json", "include": ["**/*.ts"]}))
        _run("graphql-codegen", "--config", "codegen.ts", env={"CODEGEN_OUT": f"{work.name}/gql/"})
        assert (work / "gql" / "graphql.ts").exists(), "codegen wrote no graphql.ts"
        _run("tsc", "--strict", "--noEmit", "-p", str(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
async def served(databases: Databases) -> AsyncIterator[tuple[str, str]]:
    """(GraphQL URL, USER's token) of a real uvicorn on a fresh copy of the demo data."""
    api = await make_api(await databases.clone())
    await api.http.aclose()
    with _served.served(api.app) as port:
        yield f"http://127.0.0.1:{port}/graphql", api.tokens[USER]


@pytest.mark.parametrize("apq", ["0", "1", "get"], ids=["whole documents", "APQ by POST", "APQ by GET"])
def test_apollo_client_sees_its_mutation_in_the_cache_with_no_warning(served: tuple[str, str], apq: str) -> None:
    url, token = served
    _run("apollo-check.mjs", env={
        "GRAPHQL_URL": url, "TOKEN": token, "APQ": apq, "NODE_OPTIONS": "--conditions=development"})
