"""moto's item size limit holds with the one-pass size check (same limit, same error)."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from boxwatch_infra.aws.moto_patches import item_size_in_one_pass


@pytest.mark.parametrize("patched", [False, True])
def test_the_size_limit_is_the_same_with_and_without_the_one_pass_check(patched: bool) -> None:
    with mock_aws():
        if patched:
            ctx = item_size_in_one_pass()
            ctx.__enter__()
        db = boto3.client("dynamodb", region_name="us-east-1")
        db.create_table(TableName="t", KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
        # Given items of many attributes just under and just over the limit
        small = {"k": {"S": "a"}, **{f"a{i:03d}": {"S": "x" * 3_900} for i in range(100)}}
        big = {"k": {"S": "b"}, **{f"a{i:03d}": {"S": "x" * 4_100} for i in range(100)}}
        # Then the first is stored, whole, and the second refused as too large
        db.put_item(TableName="t", Item=small)
        assert db.get_item(TableName="t", Key={"k": {"S": "a"}})["Item"] == small
        with pytest.raises(ClientError, match="Item size has exceeded the maximum allowed size"):
            db.put_item(TableName="t", Item=big)
        # and an update that would grow an item past it is refused too
        with pytest.raises(ClientError, match="size"):
            db.update_item(TableName="t", Key={"k": {"S": "a"}}, UpdateExpression="SET extra = :v",
                           ExpressionAttributeValues={":v": {"S": "y" * 20_000}})
        if patched:
            ctx.__exit__(None, None, None)
