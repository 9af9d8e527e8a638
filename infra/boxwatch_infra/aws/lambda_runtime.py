"""Run a template function's handler in this process, the way Lambda would: its code loaded from
CodeUri, its environment from the template, a Lambda context object."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from boxwatch_infra.aws.environ import patched_environ
from boxwatch_infra.aws.template import FunctionSpec, Template


@dataclass
class LambdaContext:
    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    timeout_ms: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return self.timeout_ms


class LocalFunction:
    """One template function, loaded once (a warm container) and invoked many times."""

    def __init__(self, template: Template, spec: FunctionSpec, extra_env: dict[str, str] | None = None):
        self.template = template
        self.spec = spec
        self.env = {
            **spec.environment,
            "AWS_REGION": template.region,
            "AWS_DEFAULT_REGION": template.region,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon locally
            **(extra_env or {}),
        }
        self._module: ModuleType | None = None

    @property
    def name(self) -> str:
        return self.spec.logical_id

    def _load(self) -> ModuleType:
        module_file, _, _ = self.spec.handler.rpartition(".")
        path = self.spec.code_dir / f"{module_file.replace('.', '/')}.py"
        mod_name = f"boxwatch_fn_{self.spec.code_dir.name}_{id(self)}"
        loader_spec = importlib.util.spec_from_file_location(mod_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[mod_name] = module
        with patched_environ(self.env):
            loader_spec.loader.exec_module(module)
        return module

    @property
    def handler(self) -> Any:
        if self._module is None:
            self._module = self._load()
        return getattr(self._module, self.spec.handler.rpartition(".")[2])

    def context(self) -> LambdaContext:
        name = self.template.physical_name(self.spec.logical_id)
        return LambdaContext(
            function_name=name,
            memory_limit_in_mb=self.spec.memory_mb,
            invoked_function_arn=self.template.attribute(self.spec.logical_id, "Arn"),
            timeout_ms=self.spec.timeout_s * 1000,
            log_group_name=f"/aws/lambda/{name}",
        )

    def invoke(self, event: Any) -> Any:
        handler = self.handler
        with patched_environ(self.env):
            return handler(event, self.context())
