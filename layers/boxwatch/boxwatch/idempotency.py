"""Exactly-once processing of a delivery with powertools idempotency backed by DynamoDB.

The handler builds one `Idempotency` per container from Settings (the table name) and registers
the Lambda context on each invocation, so that a record left IN_PROGRESS by a killed invocation
expires with the invocation's timeout instead of blocking Lambda's retries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from boxwatch.settings import Settings

# powertools' idempotency package imports boto3 whatever part of it is imported (~0.1-0.3 s of a
# cold start): it is imported here when the records are first built or used, by the first
# invocation that keeps one, never by the import of a handler
if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

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
    # for deliveries whose key is taken by other content (a sequence number reused): a second
    # record keyed on the content too; a persistence layer keeps the first config it was given
    reused: Idempotency | None = None

    def register_lambda_context(self, context: Any) -> None:
        self.config.register_lambda_context(context)
        if self.reused is not None:
            self.reused.register_lambda_context(context)

    def run(self, fn: Callable[..., dict[str, Any]], data_keyword_argument: str, data: dict[str, Any],
            key_prefix: str) -> dict[str, Any]:
        """`fn(**{data_keyword_argument: data})` once per key of `data` (powertools idempotent_function)."""
        from aws_lambda_powertools.utilities.idempotency import idempotent_function

        out: dict[str, Any] = idempotent_function(
            fn, data_keyword_argument=data_keyword_argument, persistence_store=self.persistence,
            config=self.config, key_prefix=key_prefix,
        )(**{data_keyword_argument: data})
        return out


def records(settings: Settings) -> DynamoDBPersistenceLayer:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    return DynamoDBPersistenceLayer(table_name=settings.idempotency_table)


def alarm_idempotency(settings: Settings) -> Idempotency:
    """Records keyed on (box, seq), validated on the alarm's content, kept as long as a
    redelivery of the alarm can still be accepted (AlarmMaxAgeS + clock skew + a day).

    A delivery whose (box, seq) record holds other content is a new alarm (the box's counter
    restarted): it gets its own record keyed on (box, seq, content) in `reused`. The common path
    keeps the (box, seq) key, so records written before this existed still catch redeliveries.
    """
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig

    expires = settings.alarm_max_age_s + settings.alarm_max_future_s + 86_400

    def config(key: str) -> IdempotencyConfig:
        return IdempotencyConfig(event_key_jmespath=key, payload_validation_jmespath="content",
                                 raise_on_no_idempotency_key=True, expires_after_seconds=expires,
                                 response_hook=_mark_duplicate)

    return Idempotency(persistence=records(settings), config=config("[thing, seq]"),
                       reused=Idempotency(persistence=records(settings), config=config("[thing, seq, content]")))
