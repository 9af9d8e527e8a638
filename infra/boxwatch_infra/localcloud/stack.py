"""Local AWS from the template: moto_server on 127.0.0.1 and the stack created through its
CloudFormation API.

`deploy()` does what `sam package` + `sam deploy` do: translate template.yaml (aws-sam-translator),
zip each function's and layer's code into the artifacts bucket, create the stack. Tables, queues,
roles, EventBridge rules, log groups and Lambda functions then come from CloudFormation itself.

moto's CloudFormation cannot create some resource types (IoT topic rules, HTTP APIs, Cognito, event
invoke configs in moto 5.2). Which ones is asked of moto itself (its CloudFormation model map), never
listed here: those resources are left out of the stack, every reference to them gets a local
physical id, and the local cloud runs them from the translated template instead (rules runner,
HTTP API, invoke config). Topic rules are also registered in moto's IoT so `aws iot
list-topic-rules` shows them.
"""

from __future__ import annotations

import copy
import importlib
import io
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import boto3

from boxwatch_infra.aws.environ import FAKE_CREDENTIALS
from boxwatch_infra.aws.ports import HOST, free_port, wait_listening
from boxwatch_infra.aws.template import Template, packaged, resolve, translate

log = logging.getLogger("boxwatch.localcloud.stack")
ARTIFACTS_BUCKET = "boxwatch-artifacts"
CODE_SKIP = re.compile(r"(__pycache__|\.pyc$|\.pytest_cache|\.mypy_cache)")
# types moto could create but the local cloud runs itself: moto's event source mappings would
# invoke its own Lambda runtime (Docker); localcloud.queues polls the queues instead
RUN_LOCALLY = frozenset({"AWS::Lambda::EventSourceMapping"})


class MotoServer:
    """moto_server in a child process on 127.0.0.1 (its own interpreter: its own GIL)."""

    def __init__(self, port: int = 0, push_url: str = "", log_path: Path | None = None):
        self.port = port or free_port()
        self.push_url = push_url
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 30.0) -> MotoServer:
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "boxwatch_infra.localcloud.moto_proc", HOST, str(self.port), self.push_url],
            stdout=out, stderr=out, env={**os.environ, **FAKE_CREDENTIALS},
        )
        if not wait_listening(self.port, timeout) or self._proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"moto_server did not start on {self.url}")
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
            self._proc = None


@cache
def moto_cfn_types() -> frozenset[str]:
    """Resource types moto's CloudFormation can create (its model map, every service loaded)."""
    from moto.backend_index import backend_url_patterns
    from moto.cloudformation.parsing import get_model_map

    for service, _ in backend_url_patterns:
        try:
            importlib.import_module(f"moto.{service}.models")
        except Exception:  # a service whose optional dependencies are missing has no models
            continue
    return frozenset(get_model_map())


def zip_dir(path: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(path.rglob("*")):
            if f.is_file() and not CODE_SKIP.search(str(f)):
                zf.write(f, f.relative_to(path).as_posix())
    return buf.getvalue()


def stack_document(translated: dict[str, Any], template: Template, local_only: dict[str, str]
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Resources, Outputs) for moto's CloudFormation: the resources left out of the stack are
    named by their local physical ids wherever something refers to them (Ref, GetAtt .Arn, ${..})."""
    names: dict[str, str] = {}
    refs = re.findall(r"([A-Za-z0-9]+)\.([A-Za-z0-9]+)", " ".join(
        ".".join(v) if isinstance(v, list) else str(v) for v in _getatts(translated)))
    for k in local_only:
        names[k] = f"{template.stack_name}-{k}"
        names[f"{k}.Arn"] = f"arn:aws:local:{template.region}:{template.account_id}:{k}"
        for logical, attr in refs:  # any other attribute (a distribution's DomainName): a local name
            if logical == k and attr != "Arn":
                names[f"{k}.{attr}"] = f"{names[k]}.{attr}"
    resources = {k: resolve(v, names, partial=True) for k, v in translated["Resources"].items() if k not in local_only}
    return resources, resolve(translated.get("Outputs", {}), names, partial=True)


def _getatts(doc: Any) -> list[Any]:
    """Every GetAtt argument and ${X.Attr} of a template document."""
    out: list[Any] = []
    if isinstance(doc, list):
        for x in doc:
            out += _getatts(x)
    elif isinstance(doc, dict):
        if len(doc) == 1 and "Fn::GetAtt" in doc:
            out.append(doc["Fn::GetAtt"])
        for x in doc.values():
            out += _getatts(x)
    elif isinstance(doc, str):
        out += [f"{a}.{b}" for a, b in re.findall(r"\$\{([A-Za-z0-9]+)\.([A-Za-z0-9.]+)\}", doc)]
    return out


@dataclass
class Deployment:
    """The stack as deployed in moto: translated template, physical ids, outputs, code."""

    endpoint_url: str
    template: Template
    translated: dict[str, Any]
    physical: dict[str, str]  # logical id -> physical id (stack resources and local ones)
    local_only: dict[str, str]  # logical id -> resource type, run by the local cloud, not moto
    outputs: dict[str, str]
    code_dirs: dict[str, Path] = field(default_factory=dict)  # function logical id -> unpacked code
    created_in_s: float = 0.0

    @property
    def stack_name(self) -> str:
        return self.template.stack_name

    def resources_of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.translated["Resources"].items() if v.get("Type") == kind}

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=self.template.region,  # type: ignore[call-overload]
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def resolver(self) -> DeployedTemplate:
        return DeployedTemplate.of(self)


class DeployedTemplate(Template):
    """The translated template, with Ref and GetAtt answered by the deployed stack."""

    deployment: Deployment

    @classmethod
    def of(cls, deployment: Deployment) -> DeployedTemplate:
        base = deployment.template
        t = cls(path=base.path, parameter_overrides=base.parameter_overrides, region=base.region,
                account_id=base.account_id, stack_name=base.stack_name)
        t.__dict__["doc"] = deployment.translated  # the cached_property, pre-filled
        t.deployment = deployment
        return t

    def physical_name(self, logical_id: str) -> str:
        return self.deployment.physical[logical_id]

    def attributes(self, logical_id: str) -> dict[str, str]:
        kind = self.resources[logical_id]["Type"]
        phys = self.physical_name(logical_id)
        prefix = f"arn:aws:{{}}:{self.region}:{self.account_id}"
        # what CloudFormation would answer is not known here: `<physical id>.<attribute>`
        out = {attr: f"{phys}.{attr}" for attr in self.referenced_attributes.get(logical_id, ())}
        arn = {
            "AWS::Lambda::Function": f"{prefix.format('lambda')}:function:{phys}",
            "AWS::DynamoDB::Table": f"{prefix.format('dynamodb')}:table/{phys}",
            "AWS::SQS::Queue": f"{prefix.format('sqs')}:{phys.rsplit('/', 1)[-1]}",
            "AWS::SNS::Topic": phys,
            "AWS::IoT::TopicRule": f"{prefix.format('iot')}:rule/{phys}",
        }.get(kind)
        if arn is not None:
            out["Arn"] = arn
        if kind == "AWS::SQS::Queue":
            out["QueueName"] = phys.rsplit("/", 1)[-1]
        return out

    @cached_property
    def referenced_attributes(self) -> dict[str, set[str]]:
        """logical id -> the attributes the translated template asks of it (GetAtt, ${X.Attr})."""
        out: dict[str, set[str]] = {}

        def walk(v: Any) -> None:
            if isinstance(v, list):
                for x in v:
                    walk(x)
            elif isinstance(v, dict):
                if len(v) == 1 and "Fn::GetAtt" in v:
                    arg = v["Fn::GetAtt"]
                    logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                    out.setdefault(logical, set()).add(attr)
                for x in v.values():
                    walk(x)
            elif isinstance(v, str):
                for logical, attr in re.findall(r"\$\{([A-Za-z0-9]+)\.([A-Za-z0-9.]+)\}", v):
                    out.setdefault(logical, set()).add(attr)

        walk(self.doc)
        return out


def deploy(endpoint_url: str, template: Template | None = None, bucket: str = ARTIFACTS_BUCKET,
           work_dir: Path | None = None, timeout: float = 60.0) -> Deployment:
    """Package the code into S3 and create the stack through moto's CloudFormation API."""
    t0 = time.monotonic()
    template = template or Template()
    kw: dict[str, Any] = {"endpoint_url": endpoint_url, "region_name": template.region, **{
        "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}}
    s3 = boto3.client("s3", **kw)
    cfn = boto3.client("cloudformation", **kw)

    # sam package: every local CodeUri/ContentUri zipped to s3://bucket/<LogicalId>.zip
    s3.create_bucket(Bucket=bucket)
    pkg = packaged(template, bucket)
    for logical, res in template.resources.items():
        props = res.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                body = zip_dir((template.path.parent / props[key]).resolve())
                s3.put_object(Bucket=bucket, Key=pkg["Resources"][logical]["Properties"][key].split("/", 3)[3],
                              Body=body)
    translated = translate(template, bucket)

    supported = moto_cfn_types() - RUN_LOCALLY
    local_only = {k: v["Type"] for k, v in translated["Resources"].items() if v["Type"] not in supported}
    for k, kind in local_only.items():
        log.info("moto CloudFormation has no %s: %s runs in the local cloud", kind, k)
    stack_doc = copy.deepcopy(translated)
    stack_doc["Resources"], stack_doc["Outputs"] = stack_document(translated, template, local_only)
    params = [{"ParameterKey": k, "ParameterValue": v} for k, v in template.parameters.items()]
    cfn.create_stack(StackName=template.stack_name, TemplateBody=json.dumps(stack_doc), Parameters=params,
                     Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"])
    deadline = time.monotonic() + timeout
    while True:
        stack = cfn.describe_stacks(StackName=template.stack_name)["Stacks"][0]
        if not stack["StackStatus"].endswith("IN_PROGRESS"):
            break
        if time.monotonic() > deadline:
            raise RuntimeError("stack creation timed out")
        time.sleep(0.1)
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise RuntimeError(f"stack {stack['StackStatus']}: {stack.get('StackStatusReason')}")
    physical = {r["LogicalResourceId"]: r.get("PhysicalResourceId") or r["LogicalResourceId"]
                for r in cfn.describe_stack_resources(StackName=template.stack_name)["StackResources"]}
    physical.update({k: f"{template.stack_name}-{k}" for k in local_only})
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    dep = Deployment(endpoint_url, template, translated, physical, local_only, outputs)

    # the functions' code, as deployed: unpacked from the artifacts bucket
    work = work_dir or Path(tempfile.mkdtemp(prefix="boxwatch-localcloud-"))
    for logical, res in dep.resources_of_type("AWS::Lambda::Function").items():
        code = res["Properties"]["Code"]
        body = s3.get_object(Bucket=code["S3Bucket"], Key=code["S3Key"])["Body"].read()
        target = work / "functions" / logical
        with zipfile.ZipFile(io.BytesIO(body)) as zf:
            zf.extractall(target)
        dep.code_dirs[logical] = target

    _register_topic_rules(dep)
    dep.created_in_s = time.monotonic() - t0
    return dep


def _register_topic_rules(dep: Deployment) -> None:
    """Topic rules also exist in moto's IoT (list-topic-rules), resolved against the stack."""
    iot = dep.client("iot")
    resolver = dep.resolver()
    for logical, res in dep.resources_of_type("AWS::IoT::TopicRule").items():
        payload = resolver.resolve(res["Properties"]["TopicRulePayload"])
        actions = [{k: {kk[0].lower() + kk[1:]: vv for kk, vv in v.items()}} for a in payload.get("Actions", [])
                   for k, v in ((k[0].lower() + k[1:], v) for k, v in a.items())]
        try:
            iot.create_topic_rule(ruleName=dep.physical[logical].replace("-", "_"), topicRulePayload={
                "sql": payload["Sql"], "awsIotSqlVersion": payload.get("AwsIotSqlVersion", "2016-03-23"),
                "ruleDisabled": bool(payload.get("RuleDisabled", False)), "actions": actions})
        except Exception as exc:  # only for visibility: the rules runner reads the template
            log.info("could not register topic rule %s in moto: %s", logical, exc)
