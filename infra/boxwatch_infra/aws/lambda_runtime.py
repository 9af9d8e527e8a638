"""Run a template function's handler in this process, the way Lambda would: its code loaded from
CodeUri, its environment from the template, a Lambda context object."""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import uuid
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from boxwatch_infra.aws.environ import patched_environ
from boxwatch_infra.aws.template import FunctionSpec, Template

_SHARED_LOADER: list[Any] = []


def share_botocore_data() -> None:
    """Every botocore session in this process reads botocore's data files (service models,
    endpoints) through one loader. A real container parses them once per cold start; here many
    emulated containers (and each pynamodb Connection's own session) share one process, and
    re-parsing the same JSON per session was half of a replay's CPU. The files are read-only, and
    one session already shares its loader between all its clients."""
    if _SHARED_LOADER:
        return
    import botocore.loaders
    import botocore.session

    loader = botocore.loaders.create_loader()
    _SHARED_LOADER.append(loader)

    def shared(search_path_string: str | None = None) -> Any:
        return loader if not search_path_string else botocore.loaders.create_loader(search_path_string)

    botocore.session.create_loader = shared  # type: ignore[assignment]

    # pynamodb makes a botocore session per Connection and thread (20 ms each, most of it
    # registering event handlers); each emulated cold container binds fresh Connections. One
    # session per thread and AWS environment (what a session reads when it is made) does the same.
    import pynamodb.connection.base

    sessions = threading.local()
    make_session = botocore.session.get_session

    def session_for_this_thread() -> Any:
        key = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
        cache = sessions.__dict__.setdefault("by_env", {})
        if key not in cache:
            cache[key] = make_session()
        return cache[key]

    pynamodb.connection.base.get_session = session_for_this_thread  # type: ignore[assignment]


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
        share_botocore_data()
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
