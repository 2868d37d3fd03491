"""createExport: a signed link to a connection's history as CSV (services/exports.py)."""

from __future__ import annotations

from datetime import datetime, timezone

import strawberry

from schema.base import MutationInput, UserError, ctx, decode_id, mutation
from schema.files import CreateExportInput, CreateExportPayload, download_url
from services.access import Role
from services.errors import DomainError, ErrorCode, NotFound


def _utc(at: datetime | None) -> datetime | None:
    if at is None:
        return None
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)


@strawberry.type
class ExportMutations:
    @mutation(
        description="A Partner's users, or Revampd billing: a link to a CSV of the connection's invoices, credit "
        "notes, wallet statement or payouts for a period (all of its history by default). Nothing is made in "
        "advance: the file is read and sent as it is downloaded."
    )
    async def create_export(self, info: strawberry.Info, input: MutationInput[CreateExportInput]) -> CreateExportPayload:
        p, mid = ctx(info).principal, input.client_mutation_id
        try:
            connection_id = decode_id(input.connection_id, "RevampdConnection", "connectionId")
            if not p.sees_connection(connection_id):
                raise NotFound("RevampdConnection", "connectionId")
            if p.is_staff:
                p.require(Role.BILLING_ADMIN)
            start, end = _utc(input.from_), _utc(input.until)
            if start and end and start >= end:
                raise DomainError(ErrorCode.INVALID_PERIOD, "from must come before until.", "until")
        except DomainError as err:
            return CreateExportPayload(url=None, filename=None, expires_at=None, user_errors=[UserError.of(err)],
                                       client_mutation_id=mid)
        kind = input.kind.value
        span = "-".join(f"{t:%Y-%m-%d}" for t in (start, end) if t) or "all"
        filename = f"{kind}-{span}.csv"
        params = {k: v.isoformat() for k, v in (("from", start), ("until", end)) if v}
        url, expires = download_url(info, ["exports", kind, filename], connection_id, params)
        return CreateExportPayload(url=url, filename=filename, expires_at=expires, user_errors=[],
                                   client_mutation_id=mid)
