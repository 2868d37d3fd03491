"""Downloads: signed links to documents and exports (services/signed_urls.py, server/files.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from enum import Enum

import strawberry

from schema.base import UserError, client_mutation_id_echo, client_mutation_id_field, ctx, user_errors_field
from schema.enums import described
from services import signed_urls

URL_DESCRIPTION = (
    " A link to this service's /files/..., signed for this object: it works in a browser without the token, "
    "for FILES_URL_SECONDS (5 minutes by default) from when it was read; ask again for a new one."
)


def download_url(
    info: strawberry.Info, parts: list[str], connection_id: int, params: dict[str, str] | None = None,
) -> tuple[str, datetime]:
    """A signed link to /files/<parts...> for the connection, and when it expires: FILES_URL_SECONDS
    from now (to the second)."""
    context = ctx(info)
    settings = context.settings
    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=settings.files_url_seconds)
    path = signed_urls.sign(settings.files_signing_key, parts, params or {}, connection_id, expires)
    # A subscription's context has no request: its links are paths on this service.
    return getattr(context, "base_url", "") + path, expires


class ExportKind(Enum):
    INVOICES = "invoices"
    CREDIT_NOTES = "credit-notes"
    WALLET_STATEMENT = "wallet-statement"
    PAYOUTS = "payouts"


described(ExportKind, "ExportKind", "What an export holds: one CSV row per item.", {
    "INVOICES": "Every invoice issued in the period: amounts paid, refunded and due, status and payment method.",
    "CREDIT_NOTES": "Every credit note issued in the period: its invoice, total, what it took off the amount due, "
    "and what went back to the card and to the wallet.",
    "WALLET_STATEMENT": "Every wallet entry made in the period, with the balance after it.",
    "PAYOUTS": "Every payout whose period ended in the period (gross, fees, net and where it went), each followed "
    "by its bank transfers with their trace ids.",
})


@strawberry.input(description="The input of createExport.")
class CreateExportInput:
    connection_id: strawberry.ID = strawberry.field(description="The RevampdConnection whose history to export.")
    kind: ExportKind = strawberry.field(description="What to export.")
    from_: datetime | None = strawberry.field(
        name="from", default=None, description="From this time on (inclusive); without it, from the beginning."
    )
    until: datetime | None = strawberry.field(
        default=None, description="Before this time (exclusive); without it, up to now. A time without a zone is UTC."
    )
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.type(description="The result of createExport.")
class CreateExportPayload:
    url: str | None = strawberry.field(
        description="A link to the CSV (UTF-8, a header row, amounts as decimal strings, times in ISO 8601 UTC), "
        "streamed as it is read, however long the history." + URL_DESCRIPTION + " Null when refused."
    )
    filename: str | None = strawberry.field(description="The file's name, such as wallet-statement-2026.csv.")
    expires_at: datetime | None = strawberry.field(description="When the link stops working.")
    user_errors: list[UserError] = user_errors_field()
    client_mutation_id: str | None = client_mutation_id_echo()
