"""The local cloud's moto_server dumps DynamoDB data-plane results as JSON instead of walking
botocore's shapes (aws/moto_patches.fast_dynamodb_responses): the body must be what moto's own
serializer gives, for every kind of attribute value and every data-plane call the handlers make."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.responses import DynamoHandler

from boxwatch_infra.aws.moto_patches import fast_dynamodb_responses


@pytest.fixture
def compared() -> Iterator[list[str]]:
    """Each response is made both ways and compared; yields the actions seen."""
    saved = DynamoHandler.serialized
    original = fast_dynamodb_responses()
    fast = DynamoHandler.serialized
    seen: list[str] = []

    def both(self: Any, action_result: Any) -> Any:
        reference = original(self, action_result)
        ours = fast(self, action_result)
        action = self._get_action()
        assert ours[0] == reference[0], action
        assert ours[1]["Content-Type"] == reference[1]["Content-Type"], action
        assert json.loads(ours[2]) == json.loads(reference[2]), action
        seen.append(action)
        return ours

    DynamoHandler.serialized = both  # type: ignore[method-assign]
    try:
        with mock_aws():
            yield seen
    finally:
        DynamoHandler.serialized = saved  # type: ignore[method-assign]


def test_data_plane_bodies_equal_motos_own(compared: list[str]) -> None:
    # Given a table with every attribute type in an item
    d = boto3.client("dynamodb", region_name="us-east-1")
    d.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                   KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                   AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                         {"AttributeName": "sk", "AttributeType": "S"}])
    item: dict[str, Any] = {"pk": {"S": "a"}, "sk": {"S": "1"}, "n": {"N": "1.5"}, "b": {"B": b"\x00\x01\xff"},
            "bs": {"BS": [b"x", b"y"]}, "ss": {"SS": ["p", "q"]}, "ns": {"NS": ["1", "2"]}, "z": {"NULL": True},
            "l": {"L": [{"S": "x"}, {"BOOL": False}, {"M": {"k": {"N": "3"}}}]}, "u": {"S": "北京 ✓"}}
    # When every data-plane call the handlers make runs, with and without capacity and old values
    d.put_item(TableName="t", Item=item, ReturnConsumedCapacity="TOTAL")
    d.put_item(TableName="t", Item={**item, "sk": {"S": "2"}}, ReturnValues="ALL_OLD")
    d.put_item(TableName="t", Item={**item, "sk": {"S": "2"}}, ReturnValues="ALL_OLD")
    got = d.get_item(TableName="t", Key={"pk": {"S": "a"}, "sk": {"S": "1"}}, ConsistentRead=True)["Item"]
    d.get_item(TableName="t", Key={"pk": {"S": "a"}, "sk": {"S": "9"}})
    d.query(TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "a"}},
            ReturnConsumedCapacity="INDEXES")
    page = d.query(TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "a"}},
                   Limit=1)
    d.scan(TableName="t", Limit=1, ExclusiveStartKey=page["LastEvaluatedKey"])
    d.update_item(TableName="t", Key={"pk": {"S": "a"}, "sk": {"S": "1"}}, UpdateExpression="SET n = n + :one",
                  ExpressionAttributeValues={":one": {"N": "1"}}, ReturnValues="ALL_NEW")
    d.transact_write_items(TransactItems=[{"Put": {"TableName": "t", "Item": {"pk": {"S": "c"}, "sk": {"S": "1"}}}}])
    d.batch_get_item(RequestItems={"t": {"Keys": [{"pk": {"S": "a"}, "sk": {"S": "1"}}]}})
    d.batch_write_item(RequestItems={"t": [{"DeleteRequest": {"Key": {"pk": {"S": "c"}, "sk": {"S": "1"}}}}]})
    d.delete_item(TableName="t", Key={"pk": {"S": "a"}, "sk": {"S": "2"}}, ReturnValues="ALL_OLD")
    with pytest.raises(d.exceptions.ConditionalCheckFailedException):
        d.put_item(TableName="t", Item=item, ConditionExpression="attribute_not_exists(pk)")

    # Then every body equals moto's own, and the client reads binary values back as bytes
    assert {"PutItem", "GetItem", "Query", "Scan", "UpdateItem", "TransactWriteItems", "BatchGetItem",
            "BatchWriteItem", "DeleteItem"} <= set(compared)
    assert got["b"] == {"B": b"\x00\x01\xff"} and got["u"] == {"S": "北京 ✓"}
