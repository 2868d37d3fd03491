"""graphql-eslint's schema-recommended rules pass on schema.graphql, with only the
exceptions tests/js/eslint.config.mjs names (and says why)."""

from __future__ import annotations

from pathlib import Path

from tests.node import node

ROOT = Path(__file__).resolve().parent.parent


def lint(path: Path) -> tuple[int, str]:
    done = node("lint-schema.mjs", str(path))
    assert "problem(s)" in done.stdout, f"the linter did not run:\n{done.stdout}\n{done.stderr}"
    return done.returncode, done.stdout


def test_schema_graphql_passes_graphql_eslint_schema_recommended() -> None:
    code, out = lint(ROOT / "schema.graphql")
    assert code == 0, f"graphql-eslint found problems in schema.graphql:\n{out}"
    assert out.strip() == "0 problem(s)"


def test_the_linter_reports_a_type_without_an_id_or_description(tmp_path: Path) -> None:
    bad = tmp_path / "bad.graphql"
    bad.write_text('"""Q."""\ntype Query {\n  """A."""\n  a: Foo\n  b: Int\n}\n\ntype Foo {\n  name: String\n}\n')
    code, out = lint(bad)
    assert code == 1
    assert 'require-description Description is required for field "b" in type "Query"' in out
    assert 'require-description Description is required for type "Foo"' in out
    assert 'strict-id-in-types type "Foo" must have exactly one non-nullable unique identifier' in out
