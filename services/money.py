"""Integer minor units as decimal amounts, per ISO 4217 currency exponent."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from enum import StrEnum

from services.errors import DomainError, ErrorCode


class Currency(StrEnum):
    """The ISO 4217 currencies amounts are kept and shown in (the graph's CurrencyCode)."""

    USD = "USD"
    EUR = "EUR"
    GBP = "GBP"
    CAD = "CAD"
    AUD = "AUD"
    JPY = "JPY"
    KRW = "KRW"
    BHD = "BHD"
    JOD = "JOD"
    KWD = "KWD"


# Each currency's name and ISO 4217 minor unit: the decimals of its amounts.
CURRENCIES: dict[Currency, tuple[str, int]] = {
    Currency.USD: ("US dollar", 2),
    Currency.EUR: ("Euro", 2),
    Currency.GBP: ("Pound sterling", 2),
    Currency.CAD: ("Canadian dollar", 2),
    Currency.AUD: ("Australian dollar", 2),
    Currency.JPY: ("Japanese yen", 0),
    Currency.KRW: ("South Korean won", 0),
    Currency.BHD: ("Bahraini dinar", 3),
    Currency.JOD: ("Jordanian dinar", 3),
    Currency.KWD: ("Kuwaiti dinar", 3),
}
_EXPONENTS: dict[str, int] = {code.value: places for code, (_, places) in CURRENCIES.items()}


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency, 2)


def to_decimal(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-exponent(currency))


def format(minor: int, currency: str) -> str:
    """`1234, "USD"` -> `12.34 USD`, for messages."""
    return f"{to_decimal(minor, currency):,.{exponent(currency)}f} {currency}"


_DECIMAL = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")
MAX_AMOUNT = 10**12  # minor units; more than any invoice or wallet will ever hold


def parse(text: str, currency: str, field: str, *, signed: bool = False) -> int:
    """A decimal string ("12.34") as minor units of `currency`, or a DomainError naming
    `field`: not a number, more decimals than the currency has, zero, negative (unless
    `signed`), or absurdly large."""
    places = exponent(currency)
    raw = text.strip() if isinstance(text, str) else ""
    # ASCII digits only: Decimal() would also take "1_000", "١٢" and "1e3".
    if len(raw) > 40 or not _DECIMAL.fullmatch(raw):
        raw = ""
    try:
        value = Decimal(raw)
    except (InvalidOperation, ValueError):
        value = Decimal("NaN")
    if not raw or not value.is_finite():
        shown = repr(text) if len(text) <= 40 else f"{len(text):,} characters"
        raise DomainError(ErrorCode.INVALID_AMOUNT, f"{field} must be a decimal amount such as \"12.50\", got {shown}.", field)
    if value.as_tuple().exponent < -places:  # type: ignore[operator]
        raise DomainError(
            ErrorCode.INVALID_AMOUNT, f"{field} has more decimals than {currency} allows ({places}).", field
        )
    minor = int(value.scaleb(places))
    if minor == 0:
        raise DomainError(ErrorCode.INVALID_AMOUNT, f"{field} must not be zero.", field)
    if minor < 0 and not signed:
        raise DomainError(ErrorCode.INVALID_AMOUNT, f"{field} must be positive.", field)
    if abs(minor) > MAX_AMOUNT:
        raise DomainError(ErrorCode.INVALID_AMOUNT, f"{field} is too large.", field)
    return minor


def basis_points_of(minor: int, bps: int) -> int:
    """`bps` basis points of `minor` units (250 = 2.50 %), rounded half-even to a whole unit."""
    return int((Decimal(minor) * bps / 10000).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
