"""A mutation's input is decoded before its write transaction begins: an ID that is not one
of the type its field takes is refused, naming the field, and no write session is opened."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from db.engine import WRITE_OPTION
from schema.base import to_global_id
from tests.conftest import Api
from tests.test_payouts import SPLIT, available_payout, call, error, parts, read


@contextmanager
def write_transactions() -> Iterator[list[Session]]:
    """The write sessions whose transaction began (in the ORM: before any SQL is sent)."""
    begun: list[Session] = []

    def created(session: Session, transaction: SessionTransaction) -> None:
        bind: Any = session.bind
        if transaction.parent is None and bind is not None and bind.get_execution_options().get(WRITE_OPTION):
            begun.append(session)

    event.listen(Session, "after_transaction_create", created)
    try:
        yield begun
    finally:
        event.remove(Session, "after_transaction_create", created)


@pytest.mark.parametrize("field", ["payoutId", "bankAccountId"])
async def test_a_bad_id_in_split_payout_is_refused_before_any_write_transaction(api: Api, field: str) -> None:
    payout, available = await available_payout(api)
    ids: dict[str, Any] = {"payoutId": payout, "bankAccountId": None, field: to_global_id("Invoice", 1)}
    with write_transactions() as begun:
        result = await call(api, SPLIT, walletAmount="1.00", idempotencyKey="k", **ids)
    assert error(result) == ("NOT_FOUND", ["input", field])
    assert result["payout"] is None
    assert begun == []
    assert parts(await read(api, payout)) == (available, 0, 0, 0)


async def test_a_good_split_payout_runs_in_one_write_transaction(api: Api) -> None:
    """What the test above counts is there to be counted."""
    payout, _ = await available_payout(api)
    with write_transactions() as begun:
        result = await call(api, SPLIT, payoutId=payout, walletAmount="1.00", idempotencyKey="k")
    assert result["userErrors"] == [] and result["disposition"]["kind"] == "SPLIT"
    assert len(begun) >= 1
