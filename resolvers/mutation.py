"""The root Mutation, merged from one class per domain (resolvers/<domain>.py).

Each field hands `resolvers.common.run_write` its input's IDs to decode (before any write
transaction begins) and one service function to call on them inside one, and maps the result
or the DomainError into a payload.
"""

from __future__ import annotations

from strawberry.tools import merge_types
from strawberry.types import get_object_definition

from resolvers.addons import AddOnMutations
from resolvers.bank_accounts import BankAccountMutations
from resolvers.billing import BillingMutations
from resolvers.earnings import EarningsMutations
from resolvers.exports import ExportMutations
from resolvers.invoices import InvoiceMutations
from resolvers.notifications import NotificationMutations
from resolvers.payouts import PayoutMutations
from resolvers.plans import PlanMutations
from resolvers.tickets import TicketMutations
from resolvers.wallet import WalletMutations

Mutation = merge_types(
    "Mutation",
    (
        PlanMutations, AddOnMutations, TicketMutations, InvoiceMutations, WalletMutations, BillingMutations,
        PayoutMutations, BankAccountMutations, EarningsMutations, NotificationMutations, ExportMutations,
    ),
)
get_object_definition(Mutation, strict=True).description = (
    "Everything a client can change. Each mutation takes one `input` and returns a payload whose userErrors "
    "say why a request was refused (then nothing changed)."
)
