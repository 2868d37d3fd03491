"""Integer minor units <-> decimal amounts, per ISO 4217 currency exponent."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from services.errors import DomainError

_EXPONENTS = {"JPY": 0, "KRW": 0, "BHD": 3, "KWD": 3, "JOD": 3}
# Larger than any sane single movement, well inside BIGINT.
MAX_MINOR = 10**13


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency, 2)


def to_decimal(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-exponent(currency))


def to_minor(
    amount: str | Decimal, currency: str, field: str, *, allow_negative: bool = False
) -> int:
    """Parse a decimal string into minor units; any bad value is a DomainError on `field`."""
    try:
        value = Decimal(str(amount).strip())
    except InvalidOperation:
        raise DomainError("INVALID_AMOUNT", f"{field} must be a decimal number.", field) from None
    if not value.is_finite():
        raise DomainError("INVALID_AMOUNT", f"{field} must be a decimal number.", field)
    places = exponent(currency)
    scaled = value.scaleb(places)
    if scaled != scaled.to_integral_value():
        raise DomainError(
            "INVALID_AMOUNT", f"{field} has more than {places} decimal places for {currency}.", field
        )
    minor = int(scaled)
    if minor == 0:
        raise DomainError("INVALID_AMOUNT", f"{field} must not be zero.", field)
    if minor < 0 and not allow_negative:
        raise DomainError("INVALID_AMOUNT", f"{field} must be positive.", field)
    if abs(minor) > MAX_MINOR:
        raise DomainError("INVALID_AMOUNT", f"{field} is too large.", field)
    return minor
