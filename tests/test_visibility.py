"""Who reads what by ID: a Partner its own objects, Revampd staff everything."""

from __future__ import annotations

import gc
from collections import deque
from typing import Any

import pytest
from sqlalchemy import ForeignKey, Select, select

from db import models as m
from schema.base import Node, node_types, to_global_id
from tests.conftest import Api

OWNER = "owner@northwind.example"
MEMBER = "member@northwind.example"
BLUEBIRD = "owner@bluebird.example"
SUPPORT = "support@revampd.example"
BILLING = "billing@revampd.example"

NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { id } }"


# ---- Every Node type --------------------------------------------------------------

def ownership(model: type[Any]) -> list[ForeignKey] | None:
    """The foreign keys that lead from `model`'s table to the Partner it belongs to, never
    through `users` (a person named on a row does not own it); None for the catalogue."""
    start, partners = model.__table__, m.Partner.__table__
    paths: deque[tuple[Any, list[ForeignKey]]] = deque([(start, [])])
    seen = {start}
    while paths:
        table, hops = paths.popleft()
        if table is partners:
            return hops
        for fk in sorted(table.foreign_keys, key=lambda f: f.parent.name):
            target = fk.column.table
            if target is not m.User.__table__ and target not in seen:
                seen.add(target)
                paths.append((target, [*hops, fk]))
    return None


def owned_by(model: type[Any], hops: list[ForeignKey], partner_id: int) -> Select[Any]:
    stmt = select(model.__table__.c.id)
    for fk in hops:
        stmt = stmt.join(fk.column.table, fk.parent == fk.column)
    return stmt.where(m.Partner.__table__.c.id == partner_id)


async def partner_id(api: Api, email: str) -> int:
    return int((await api.rows(select(m.User.partner_id).where(m.User.email == email)))[0][0])


async def ids_of_every_node_type(api: Api, email: str, *, internal: bool) -> tuple[list[str], list[str]]:
    """Up to three IDs of each Node type that belong to `email`'s Partner (internal notes
    only if `internal`), and the names of the types that belong to no Partner."""
    pid = await partner_id(api, email)
    ids: list[str] = []
    public: list[str] = []
    for name, cls in sorted(node_types().items()):
        hops = ownership(cls.node_model)
        if hops is None:
            public.append(name)
            continue
        stmt = owned_by(cls.node_model, hops, pid)
        if "internal" in cls.node_model.__table__.c and not internal:
            stmt = stmt.where(cls.node_model.__table__.c.internal.is_(False))
        rows = await api.rows(stmt.order_by(cls.node_model.__table__.c.id).limit(3))
        assert rows, f"the demo data has a {name} of {email}'s Partner"
        ids += [to_global_id(name, r[0]) for r in rows]
    return ids, public


async def test_every_node_type_of_another_partner_reads_as_null(ro_api: Api) -> None:
    ids, _ = await ids_of_every_node_type(ro_api, BLUEBIRD, internal=True)
    for viewer in (OWNER, MEMBER):
        assert (await ro_api.gql(NODES, {"ids": ids}, as_=viewer))["nodes"] == [None] * len(ids)
    staff = (await ro_api.gql(NODES, {"ids": ids}, as_=SUPPORT))["nodes"]
    assert [n["id"] for n in staff] == ids, "the IDs are real: staff read every one"
    # Garbage and unknown IDs read the same way.
    nodes = (await ro_api.gql(NODES, {"ids": ["garbage", to_global_id("Invoice", 10**9)]}, as_=OWNER))["nodes"]
    assert nodes == [None, None]


async def test_every_node_type_of_its_own_partner_resolves(ro_api: Api) -> None:
    ids, public = await ids_of_every_node_type(ro_api, OWNER, internal=False)
    assert public == ["AddOnProduct", "Plan"], "only the catalogue belongs to no Partner"
    products = (await ro_api.gql("{ plans { id } addOnProducts { id } }", as_=OWNER)).values()
    ids += [p["id"] for listed in products for p in listed]
    for viewer in (OWNER, MEMBER, SUPPORT, BILLING):
        nodes = (await ro_api.gql(NODES, {"ids": ids}, as_=viewer))["nodes"]
        assert [n and n["id"] for n in nodes] == ids, viewer


def test_a_node_type_needs_a_visibility_rule_for_its_model() -> None:
    with pytest.raises(TypeError, match="has no rule in services/visibility.py"):
        class Secret(Node, model=m.IdempotencyKey):  # noqa: F841 - never made
            pass
    gc.collect()  # the half-made class must not be found as a Node type
    assert "Secret" not in node_types()
