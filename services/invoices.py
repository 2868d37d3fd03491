"""Invoices: what is still owed on one."""

from __future__ import annotations

from db import models as m
from services.enums import InvoiceStatus

# Nothing more is collected on these.
SETTLED = (InvoiceStatus.PAID.value, InvoiceStatus.VOID.value)


def amount_due(invoice: m.Invoice) -> int:
    """total - amount paid, in minor units; zero once paid or void."""
    return 0 if invoice.status in SETTLED else invoice.total - invoice.amount_paid
