"""Exactly-once processing of a delivery with powertools idempotency backed by DynamoDB.

The handler builds one `Idempotency` per container from Settings (the table name) and registers
the Lambda context on each invocation, so that a record left IN_PROGRESS by a killed invocation
expires with the invocation's timeout instead of blocking Lambda's retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

from boxwatch.settings import Settings

DUPLICATE = "duplicate"


def _mark_duplicate(response: Any, idempotent_data: DataRecord) -> Any:
    """A replayed response reports what happened the first time; this delivery did nothing."""
    if isinstance(response, dict):
        return {**response, "status": DUPLICATE, "reports": {}}
    return response


@dataclass
class Idempotency:
    persistence: DynamoDBPersistenceLayer
    config: IdempotencyConfig

    def register_lambda_context(self, context: Any) -> None:
        self.config.register_lambda_context(context)


def alarm_idempotency(settings: Settings) -> Idempotency:
    """Records keyed on (box, seq), validated on the alarm's content, kept as long as a
    redelivery of the alarm can still be accepted (AlarmMaxAgeS + clock skew + a day)."""
    return Idempotency(
        persistence=DynamoDBPersistenceLayer(table_name=settings.idempotency_table),
        config=IdempotencyConfig(
            event_key_jmespath="[thing, seq]",
            payload_validation_jmespath="content",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=settings.alarm_max_age_s + settings.alarm_max_future_s + 86_400,
            response_hook=_mark_duplicate,
        ),
    )
