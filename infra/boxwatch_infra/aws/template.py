"""template.yaml as the single source of truth for local runs.

Reads the SAM template, resolves the intrinsic functions the project uses (Ref, Fn::Sub,
Fn::GetAtt, Fn::Join, Fn::Select) against parameter values and physical names, creates the
DynamoDB tables and SNS topics it declares in whatever AWS boto3 points at (moto in-process or
moto_server), and describes each function: code location, handler, environment and events.

`resolve()` is the one intrinsic-function resolver of the tooling: `Template` (the SAM template,
names made up as a local stack would) and the local cloud's `DeployedTemplate` (the translated
template, names from the deployed stack) differ only in the names they give it, and the local
cloud's stack document is its partial mode.
"""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from samtranslator.intrinsics.resolver import IntrinsicsResolver
from samtranslator.yaml_helper import yaml_parse

from boxwatch_infra.aws.environ import patched_environ

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE_PATH = ROOT / "template.yaml"

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"
STACK_NAME = "boxwatch"


# `${Name}` left in an `Fn::Sub` after substitution (`${!Name}` is the escape for a literal `${Name}`)
UNRESOLVED_SUB = re.compile(r"\$\{([^}!][^}]*)\}")


def resolve(value: Any, names: dict[str, str], partial: bool = False) -> Any:
    """Resolve `Ref`, `Fn::Sub`, `Fn::GetAtt`, `Fn::Join` and `Fn::Select` in a template fragment
    (a copy; `value` is left alone) against `names` (`Template.names`: `Name` and
    `Logical.Attribute` -> value). `Ref` and `Fn::Sub` are aws-sam-translator's own resolver.

    partial=False: every name must be known (KeyError otherwise) and the result has no intrinsic
    left. partial=True: only the known names are replaced and everything else is left for
    CloudFormation, `Fn::Join`/`Fn::Select` included (the local cloud's stack document).
    """
    resolver = IntrinsicsResolver(names)

    def walk(v: Any) -> Any:
        if isinstance(v, list):
            return [walk(x) for x in v]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (key, arg), = v.items()
            if key == "Ref":
                if isinstance(arg, str) and arg in names:
                    return resolver.resolve_parameter_refs({"Ref": arg})
                if partial:
                    return v
                raise KeyError(f"Ref to unknown name {arg!r}")
            if key == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                if f"{logical}.{attr}" in names:
                    return names[f"{logical}.{attr}"]
                if partial:
                    return v
                raise KeyError(f"GetAtt {logical}.{attr} is not supported locally")
            if key == "Fn::Sub":
                text, variables = (arg, None) if isinstance(arg, str) else (arg[0], walk(arg[1]))
                if variables and not partial:  # the Sub's own variables first (SAM names them `__ApiId__`)
                    text = UNRESOLVED_SUB.sub(lambda m: str(variables.get(m.group(1), m.group(0))), text)
                text = resolver.resolve_parameter_refs({key: text})[key]
                if partial:
                    return {key: text if variables is None else [text, variables]}
                left = UNRESOLVED_SUB.search(text)
                if left:
                    raise KeyError(f"Fn::Sub of unknown name {left.group(1)!r}")
                return text.replace("${!", "${")
            if key == "Fn::Join" and not partial:
                sep, items = arg
                return sep.join(str(walk(i)) for i in items)
            if key == "Fn::Select" and not partial:
                index, items = arg
                return walk(items)[int(walk(index))]
        return {k: walk(x) for k, x in v.items()}

    return walk(value)


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


@functools.lru_cache(maxsize=4)
def _parsed(text: str) -> dict[str, Any]:
    """Parsing template.yaml costs ~0.4 s; a replay or test session builds many Templates of the
    same text (one per parameter set)."""
    return dict(yaml_parse(text))


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
        text = self.path.read_text()
        return copy.deepcopy(_parsed(text))  # a copy: a caller may change its view

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

    def attributes(self, logical_id: str) -> dict[str, str]:
        """The `Fn::GetAtt` attributes of a resource that local runs know."""
        kind = self.resources[logical_id]["Type"]
        name = f"{self.stack_name}-{logical_id}"
        out = {"QueueName": name, "TopicName": name}
        service = {
            "AWS::DynamoDB::Table": f"dynamodb:{self.region}:{self.account_id}:table/{name}",
            "AWS::SNS::Topic": f"sns:{self.region}:{self.account_id}:{name}",
            "AWS::SQS::Queue": f"sqs:{self.region}:{self.account_id}:{name}",
            "AWS::Serverless::Function": f"lambda:{self.region}:{self.account_id}:function:{name}",
        }.get(kind)
        if service:
            out["Arn"] = f"arn:aws:{service}"
        return out

    def attribute(self, logical_id: str, attr: str) -> str:
        value = self.names.get(f"{logical_id}.{attr}")
        if value is None:
            raise KeyError(f"GetAtt {logical_id}.{attr} is not supported locally")
        return value

    @cached_property
    def names(self) -> dict[str, str]:
        """Everything `Ref`, `Fn::GetAtt` and `${...}` can name: pseudo parameters, parameters,
        resources' physical names, `Logical.Attribute`."""
        out = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        for name, value in self.parameters.items():
            out.setdefault(name, value)
        for logical in self.resources:
            out.setdefault(logical, self.physical_name(logical))
            for attr, value in self.attributes(logical).items():
                out[f"{logical}.{attr}"] = value
        return out

    def resolve(self, value: Any) -> Any:
        """Resolve intrinsic functions in a template fragment."""
        return resolve(value, self.names)

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
        return {logical: sns.create_topic(Name=f"{self.stack_name}-{logical}")["TopicArn"]
                for logical in self.resources_of_type("AWS::SNS::Topic")}

    def create_platform_applications(self, sns: Any) -> dict[str, str]:
        """The SNS platform applications the template's parameters name (CloudFormation has no
        resource for them: on AWS an operator creates them once, docs/devices.md); platform -> ARN."""
        p = self.parameters
        out = {}
        for platform, kind, name in (("fcm", "GCM", p["FcmPlatformApplicationName"]),
                                     ("apns", p["ApnsPlatform"], p["ApnsPlatformApplicationName"])):
            out[platform] = sns.create_platform_application(
                Name=name, Platform=kind, Attributes={"PlatformCredential": f"local-{platform}-key"})[
                "PlatformApplicationArn"]
        return out

    def create_queues(self, sqs: Any) -> dict[str, str]:
        """Every AWS::SQS::Queue, by name (sqs_source.configure_queues gives them their delivery
        attributes); logical -> URL."""
        return {logical: sqs.create_queue(QueueName=f"{self.stack_name}-{logical}")["QueueUrl"]
                for logical in self.resources_of_type("AWS::SQS::Queue")}


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
    with patched_environ({"AWS_DEFAULT_REGION": t.region}):  # the translator asks boto3 for a region
        return dict(transform(packaged(t, bucket), params, _NoManagedPolicies()))


def main() -> int:
    """`python -m boxwatch_infra.aws.template`: translate the SAM template and summarise it."""
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
