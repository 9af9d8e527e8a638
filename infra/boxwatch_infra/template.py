"""template.yaml as the single source of truth for local runs.

Reads the SAM template, resolves the intrinsic functions the project uses (Ref, Fn::Sub,
Fn::GetAtt, Fn::Join, Fn::Select) against parameter values and physical names, creates the
DynamoDB tables and SNS topics it declares in whatever AWS boto3 points at (moto in-process or
moto_server), and describes each function: code location, handler, environment and events.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"
STACK_NAME = "boxwatch"


@dataclass
class FunctionSpec:
    logical_id: str
    code_dir: Path
    handler: str  # module.function
    environment: dict[str, str]
    events: dict[str, dict[str, Any]]
    timeout_s: int = 15
    memory_mb: int = 512

    def events_of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: ev.get("Properties", {}) for name, ev in self.events.items() if ev.get("Type") == kind}


@dataclass
class Template:
    """A resolved view of template.yaml for one set of parameter values."""

    path: Path = TEMPLATE_PATH
    parameter_overrides: dict[str, Any] = field(default_factory=dict)
    region: str = REGION
    account_id: str = ACCOUNT_ID
    stack_name: str = STACK_NAME

    @cached_property
    def doc(self) -> dict[str, Any]:
        return dict(yaml_parse(self.path.read_text()))

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return dict(self.doc["Resources"])

    @cached_property
    def parameters(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, spec in self.doc.get("Parameters", {}).items():
            values[name] = spec.get("Default")
        unknown = set(self.parameter_overrides) - set(values)
        if unknown:
            raise KeyError(f"unknown template parameters: {sorted(unknown)}")
        values.update(self.parameter_overrides)
        return {k: str(v) if v is not None else "" for k, v in values.items()}

    def resources_of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v.get("Type") == kind}

    # ---------------------------------------------------------------- names
    def physical_name(self, logical_id: str) -> str:
        """What `Ref` gives for a resource: a table or function name, a topic/queue ARN."""
        kind = self.resources[logical_id]["Type"]
        name = f"{self.stack_name}-{logical_id}"
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{self.region}:{self.account_id}:{name}"
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{self.region}.amazonaws.com/{self.account_id}/{name}"
        return name

    def attribute(self, logical_id: str, attr: str) -> str:
        kind = self.resources[logical_id]["Type"]
        name = f"{self.stack_name}-{logical_id}"
        if attr == "Arn":
            service = {
                "AWS::DynamoDB::Table": f"dynamodb:{self.region}:{self.account_id}:table/{name}",
                "AWS::SNS::Topic": f"sns:{self.region}:{self.account_id}:{name}",
                "AWS::SQS::Queue": f"sqs:{self.region}:{self.account_id}:{name}",
                "AWS::Serverless::Function": f"lambda:{self.region}:{self.account_id}:function:{name}",
            }.get(kind)
            if service:
                return f"arn:aws:{service}"
        if attr == "QueueName":
            return name
        if attr == "TopicName":
            return name
        raise KeyError(f"GetAtt {logical_id}.{attr} is not supported locally")

    def _ref(self, name: str) -> str:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            return self.physical_name(name)
        raise KeyError(f"Ref to unknown name {name!r}")

    def resolve(self, value: Any) -> Any:
        """Resolve intrinsic functions in a template fragment."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.attribute(logical, attr)
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                resolved_vars = {k: str(self.resolve(v)) for k, v in variables.items()}

                def sub(m: re.Match[str]) -> str:
                    token = m.group(1)
                    if token in resolved_vars:
                        return resolved_vars[token]
                    if "." in token and not token.startswith("AWS::"):
                        logical, attr = token.split(".", 1)
                        return self.attribute(logical, attr)
                    return str(self._ref(token))

                # ${!Literal} is Fn::Sub's escape for a literal ${Literal} (IoT policy variables)
                return re.sub(r"\$\{([^}!][^}]*)\}", sub, text).replace("${!", "${")
            if key == "Fn::Join":
                sep, items = arg
                return sep.join(str(self.resolve(i)) for i in items)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
        return {k: self.resolve(v) for k, v in value.items()}

    # ---------------------------------------------------------------- functions
    @cached_property
    def functions(self) -> dict[str, FunctionSpec]:
        globals_fn = self.doc.get("Globals", {}).get("Function", {})
        global_env = globals_fn.get("Environment", {}).get("Variables", {})
        out = {}
        for logical, res in self.resources_of_type("AWS::Serverless::Function").items():
            props = res["Properties"]
            env = {**global_env, **props.get("Environment", {}).get("Variables", {})}
            out[logical] = FunctionSpec(
                logical_id=logical,
                code_dir=(self.path.parent / props["CodeUri"]).resolve(),
                handler=props["Handler"],
                environment={k: str(self.resolve(v)) for k, v in env.items()},
                events=props.get("Events", {}),
                timeout_s=int(self.resolve(props.get("Timeout", globals_fn.get("Timeout", 3)))),
                memory_mb=int(self.resolve(props.get("MemorySize", globals_fn.get("MemorySize", 128)))),
            )
        return out

    def function(self, name: str) -> FunctionSpec:
        """By logical id (AlarmIngestFunction) or short name (AlarmIngest, alarm_ingest)."""
        for logical, spec in self.functions.items():
            short = logical.removesuffix("Function")
            snake = re.sub(r"(?<!^)(?=[A-Z])", "_", short).lower()
            if name in (logical, short, snake, spec.code_dir.name):
                return spec
        raise KeyError(f"no function {name!r} in the template; have {sorted(self.functions)}")

    # ---------------------------------------------------------------- resources
    def create_tables(self, dynamodb: Any) -> dict[str, str]:
        """Create every AWS::DynamoDB::Table with its keys and indexes; return logical -> name."""
        created = {}
        for logical, res in self.resources_of_type("AWS::DynamoDB::Table").items():
            props = self.resolve(res["Properties"])
            kwargs: dict[str, Any] = {
                "TableName": self.physical_name(logical),
                "AttributeDefinitions": props["AttributeDefinitions"],
                "KeySchema": props["KeySchema"],
                "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
            }
            if props.get("GlobalSecondaryIndexes"):
                kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
            dynamodb.create_table(**kwargs)
            created[logical] = kwargs["TableName"]
        return created

    def create_topics(self, sns: Any) -> dict[str, str]:
        out = {}
        for logical in self.resources_of_type("AWS::SNS::Topic"):
            out[logical] = sns.create_topic(Name=f"{self.stack_name}-{logical}")["TopicArn"]
        return out

    def create_queues(self, sqs: Any) -> dict[str, str]:
        out = {}
        for logical in self.resources_of_type("AWS::SQS::Queue"):
            out[logical] = sqs.create_queue(QueueName=f"{self.stack_name}-{logical}")["QueueUrl"]
        return out


class _NoManagedPolicies:
    """The template names managed policies by ARN only, so no IAM lookup is needed offline."""

    def load(self) -> dict[str, str]:
        return {}


def packaged(template: Template, bucket: str = "boxwatch-artifacts") -> dict[str, Any]:
    """The template as `sam package` leaves it: local code paths replaced by S3 locations
    (s3://BUCKET/<LogicalId>.zip, where the local cloud uploads the zips)."""
    doc = copy.deepcopy(template.doc)
    for logical, res in doc["Resources"].items():
        props = res.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = f"s3://{bucket}/{logical}.zip"
    return doc


def translate(template: Template | None = None, bucket: str = "boxwatch-artifacts") -> dict[str, Any]:
    """The CloudFormation template SAM would deploy (aws-sam-translator, offline)."""
    from samtranslator.translator.transform import transform

    t = template or Template()
    params = {**t.parameters, "AWS::Region": t.region, "AWS::AccountId": t.account_id, "AWS::Partition": "aws",
              "AWS::StackName": t.stack_name}
    from boxwatch_infra.lambda_runtime import patched_environ

    with patched_environ({"AWS_DEFAULT_REGION": t.region}):  # the translator asks boto3 for a region
        return dict(transform(packaged(t, bucket), params, _NoManagedPolicies()))


def main() -> int:
    """`python -m boxwatch_infra.template`: translate the SAM template and summarise it."""
    import json
    import sys

    out = translate()
    kinds: dict[str, int] = {}
    for res in out["Resources"].values():
        kinds[res["Type"]] = kinds.get(res["Type"], 0) + 1
    json.dump({"translated_resources": kinds}, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
