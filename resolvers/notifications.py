"""Notification mutations: a Partner's user chooses which emails it receives.

The rules are services.notifications'; this field only maps."""

from __future__ import annotations

import strawberry

from db.states import NotificationKind
from resolvers.common import no_ids, run_write
from schema.base import MutationInput, ctx, mutation
from schema.notifications import NotificationSetting, SetNotificationSettingInput, SetNotificationSettingPayload
from services import notifications as svc


@strawberry.type
class NotificationMutations:
    @mutation(description="A Partner's user: receive (or not) the emails of one kind; WALLET_LOW needs a threshold.")
    async def set_notification_setting(
        self, info: strawberry.Info, input: MutationInput[SetNotificationSettingInput]
    ) -> SetNotificationSettingPayload:
        principal = ctx(info).principal
        result, errors = await run_write(
            info, no_ids, lambda session, _: svc.choose(
                session, principal, NotificationKind(input.kind), input.enabled, input.wallet_low_threshold),
        )
        setting = NotificationSetting.of(*result) if result is not None else None
        return SetNotificationSettingPayload(setting=setting, user_errors=errors,
                                             client_mutation_id=input.client_mutation_id)
