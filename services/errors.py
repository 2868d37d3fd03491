"""The one exception services raise for a business failure."""

from __future__ import annotations


class DomainError(Exception):
    """A rule refused the request. `code` is stable; `field` names the input at fault."""

    def __init__(self, code: str, message: str, field: str | list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field: list[str] | None = [field] if isinstance(field, str) else field


class NotFound(DomainError):
    """Also raised for objects of another Partner: they read exactly like missing ones."""

    def __init__(self, what: str, field: str | None = None) -> None:
        super().__init__("NOT_FOUND", f"{what} not found.", field)


class Forbidden(DomainError):
    def __init__(self, message: str = "You do not have permission to do this.") -> None:
        super().__init__("FORBIDDEN", message)


class InvalidInput(DomainError):
    """Several fields of one input refused together, so that a form can mark each of them
    at once; `errors` in the order of the input's fields."""

    def __init__(self, errors: list[DomainError]) -> None:
        super().__init__(errors[0].code, errors[0].message, errors[0].field)
        self.errors = errors
