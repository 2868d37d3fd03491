"""Every code a service can refuse with is a value of the graph's UserErrorCode.

A code outside the enum would fail only when a client first met it, as an
internal error instead of a userError. So codes are never written as strings:
they are members of services.errors.ErrorCode (which mypy checks against every
parameter that carries one), and this test reads every module of the service to
make sure no string slipped in and every `ErrorCode.X` names a real member.
"""

from __future__ import annotations

import ast
from pathlib import Path

from graphql import GraphQLEnumType, GraphQLNonNull, GraphQLObjectType

from resolvers.engine import graphql_schema
from resolvers.schema import build_schema
from server.settings import Settings
from services.errors import DESCRIPTIONS, ErrorCode

ROOT = Path(__file__).parents[1]
PACKAGES = ["services", "resolvers", "schema", "server", "db"]
# The classes whose first argument is a code.
RAISERS = {"DomainError"}


def modules() -> list[Path]:
    found = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]
    assert any(p.name == "payouts.py" for p in found)
    return found


def problems_in(source: str, where: Path) -> list[str]:
    """Codes written other than as ErrorCode members, and ErrorCode.X that are no member."""
    codes = {c.value for c in ErrorCode}
    problems = []
    for node in ast.walk(ast.parse(source, str(where))):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in RAISERS:
            first = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "code"), None)
            if isinstance(first, (ast.Constant, ast.JoinedStr)):
                problems.append(f"{where}:{line}: {node.func.id}({ast.unparse(first)}, ...): use ErrorCode")
        elif isinstance(node, ast.Constant) and node.value in codes and where != Path("services/errors.py"):
            problems.append(f"{where}:{line}: the string {node.value!r}: use ErrorCode.{node.value}")
        elif (
            isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == "ErrorCode" and node.attr not in codes
        ):
            problems.append(f"{where}:{line}: ErrorCode.{node.attr} is not a member")
    return problems


def test_codes_are_written_as_error_code_members() -> None:
    problems = [p for path in modules() for p in problems_in(path.read_text(), path.relative_to(ROOT))]
    assert not problems, "\n".join(problems)


def test_the_scan_finds_a_code_written_as_a_string() -> None:
    source = (
        'raise DomainError("NEW_CODE", "message")\n'
        'check(value, "title", "INVALID_TITLE")\n'
        'raise DomainError(ErrorCode.NOT_A_CODE, "message")\n'
        'raise DomainError(ErrorCode.INVALID_TITLE, "fine")\n'
    )
    assert [p.split(": ", 1)[0] for p in problems_in(source, Path("x.py"))] == ["x.py:1", "x.py:2", "x.py:3"]


def test_user_error_code_is_the_enum_of_every_code_each_described() -> None:
    schema = graphql_schema(build_schema(Settings()))
    user_error = schema.get_type("UserError")
    assert isinstance(user_error, GraphQLObjectType)
    code = user_error.fields["code"].type
    assert isinstance(code, GraphQLNonNull) and isinstance(code.of_type, GraphQLEnumType)
    enum = code.of_type
    assert enum.name == "UserErrorCode"
    assert list(enum.values) == [c.name for c in ErrorCode]
    assert set(DESCRIPTIONS) == set(ErrorCode)
    for name, value in enum.values.items():
        assert value.description and value.description == DESCRIPTIONS[ErrorCode(name)], name
