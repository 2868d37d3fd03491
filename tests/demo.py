"""Demo objects found by what they are, not by a number that depends on the seed's date.

The demo seed numbers invoices in the order they were issued, and its one-time
invoices are issued some days before "today" while the monthly ones are issued
on the first of each month, so which number an invoice gets moves with the
date. Tests name an invoice by its type, status and lines instead.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from tests.clock import TEST_DATE

# The line of the subscription invoice of the period the pinned date is in, per plan.
THIS_MONTH = f"{TEST_DATE:%b %Y}"


def one(invoices: Mapping[str, dict[str, Any]] | Iterable[dict[str, Any]], *, line: str | None = None,
        **fields: Any) -> dict[str, Any]:
    """The one invoice with these `fields` (type=, status=, ...) whose first line starts with `line`.

    `invoices` are API nodes that select `number`, the fields named and, with `line`,
    `lineItems { description }`."""
    nodes = invoices.values() if isinstance(invoices, Mapping) else invoices
    found = [node for node in nodes
             if all(node[k] == v for k, v in fields.items())
             and (line is None or node["lineItems"][0]["description"].startswith(line))]
    assert len(found) == 1, f"{len(found)} demo invoices are {fields} {line or ''}: {[n['number'] for n in found]}"
    return found[0]


# What the tests use, as keyword arguments of `one`.
SUBSCRIPTION_NOW = {"type": "SUBSCRIPTION", "status": "OPEN"}  # Northwind's, 200.00 paid of 399.00
ADD_ONS_NOW = {"type": "ADD_ON", "status": "OPEN"}  # Northwind's this month: 31.00, nothing paid
WORKSHOP = {"type": "ONE_TIME", "line": "Custom integration workshop"}  # Northwind's 900.00, 400.00 from the wallet
DRAFT = {"status": "DRAFT"}  # next month's subscription invoice
WRITTEN_OFF = {"status": "UNCOLLECTIBLE"}  # Cedar's custom template design
