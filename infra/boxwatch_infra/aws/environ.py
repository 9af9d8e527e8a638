"""Process environment for local AWS: patched for a call, and the credentials moto accepts."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

# moto accepts any; real-looking ones would be a leak waiting to happen
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}
# endpoints a local cloud sets for its process: in-process moto must not inherit them
LOCAL_ENDPOINTS: dict[str, str | None] = dict.fromkeys(
    ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_IOT_DATA", "AWS_ENDPOINT_URL_IOT_DATA_PLANE"))


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str | None]) -> Iterator[None]:
    """`os.environ` with `values` set (None: unset), restored afterwards (variables that were unset
    are removed)."""
    saved = {k: os.environ.get(k) for k in values}
    for k, value in values.items():
        if value is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = value
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
