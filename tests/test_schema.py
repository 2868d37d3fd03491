"""The exported SDL and the clients' operations stay in step with the code."""

from __future__ import annotations

from pathlib import Path

from graphql import parse, validate

from resolvers.engine import graphql_schema
from resolvers.schema import build_schema
from server.settings import Settings

ROOT = Path(__file__).parent.parent


def test_schema_graphql_matches_the_code() -> None:
    exported = (ROOT / "schema.graphql").read_text()
    assert exported.strip() == build_schema(Settings()).as_str().strip(), (
        "schema.graphql is out of date: regenerate it with `make schema`"
    )


def test_client_operations_are_valid_against_the_schema() -> None:
    schema = graphql_schema(build_schema(Settings()))
    files = sorted((ROOT / "operations").glob("*.graphql"))
    assert files, "operations/ holds the clients' documents"
    for path in files:
        errors = validate(schema, parse(path.read_text()))
        assert not errors, f"{path.name}: {errors}"
