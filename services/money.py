"""Integer minor units as decimal amounts, per ISO 4217 currency exponent."""

from __future__ import annotations

from decimal import Decimal

_EXPONENTS = {"JPY": 0, "KRW": 0, "BHD": 3, "KWD": 3, "JOD": 3}


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency, 2)


def to_decimal(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-exponent(currency))


def format(minor: int, currency: str) -> str:
    """`1234, "USD"` -> `12.34 USD`, for messages."""
    return f"{to_decimal(minor, currency):,.{exponent(currency)}f} {currency}"
