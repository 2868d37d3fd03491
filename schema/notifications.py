"""Email notifications a Partner's user chooses to receive (services/notifications.py)."""

from __future__ import annotations

from typing import Self

import strawberry

from schema.base import (
    VALUE,
    Money,
    UserError,
    client_mutation_id_echo,
    client_mutation_id_field,
    user_errors_field,
)
from schema.enums import NotificationKind
from services import notifications as svc


@strawberry.type(description="Whether the user is emailed of one kind of change." + VALUE)
class NotificationSetting:
    kind: NotificationKind = strawberry.field(description="The kind of change.")
    enabled: bool = strawberry.field(description="True when the user is emailed of it.")
    wallet_low_threshold: Money | None = strawberry.field(
        description="WALLET_LOW: the balance the user is told of the wallet falling below; null otherwise.")

    @classmethod
    def of(cls, setting: svc.Setting, currency: str | None) -> Self:
        threshold = Money.of(setting.threshold, currency) if setting.threshold is not None and currency else None
        return cls(kind=setting.kind, enabled=setting.enabled, wallet_low_threshold=threshold)


@strawberry.input(description="The input of setNotificationSetting.")
class SetNotificationSettingInput:
    kind: NotificationKind = strawberry.field(description="The kind of change.")
    enabled: bool = strawberry.field(description="True to be emailed of it, false not to be.")
    wallet_low_threshold: str | None = strawberry.field(
        default=None,
        description="WALLET_LOW only (and needed to turn it on): a decimal string in the connection's currency, "
        "such as \"100.00\".")
    client_mutation_id: str | None = client_mutation_id_field()


@strawberry.type(description="The result of setNotificationSetting.")
class SetNotificationSettingPayload:
    setting: NotificationSetting | None = strawberry.field(description="The setting as it now stands; null when refused.")
    user_errors: list[UserError] = user_errors_field()
    client_mutation_id: str | None = client_mutation_id_echo()
