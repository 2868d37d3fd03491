"""The packages are layers, and every import points down:

    db  <  services  <  schema  <  resolvers  <  server

`db/` holds the tables and the engine (no rules); `services/` the domain's rules; `schema/` the
GraphQL types and how they read their data (context, loaders); `resolvers/` the query and
mutation roots, the schema's assembly, the Operation and the engine; `server/` the HTTP edge,
the settings and the command line. A module may import its own layer and those below it,
never one above, not even inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["db", "services", "schema", "resolvers", "server"]


def _imports(path: Path) -> set[str]:
    """The top-level packages a module imports, wherever in the module it does."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_no_import_climbs_above_its_layer(layer: str) -> None:
    above = set(LAYERS[LAYERS.index(layer) + 1:])
    climbing = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & above)
        for path in sorted((ROOT / layer).rglob("*.py"))
        if "migrations" not in path.parts and _imports(path) & above
    }
    assert climbing == {}, f"{layer}/ imports from layers above it: {climbing}"


def test_the_test_sees_every_import() -> None:
    """The rule is checked on real code: server imports every layer below it."""
    found = set().union(*(_imports(p) for p in (ROOT / "server").rglob("*.py")))
    assert set(LAYERS) <= found


MAX_FUNCTION_LINES = 60


def test_the_edge_reads_in_short_functions() -> None:
    """The HTTP edge and the resolvers are read most by people new to the code: no function there
    runs over 60 lines."""
    long = []
    for layer in ("server", "resolvers"):
        for path in sorted((ROOT / layer).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []
