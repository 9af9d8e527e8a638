"""Process environment for local AWS: patched for a call, and the credentials moto accepts."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

# moto accepts any; real-looking ones would be a leak waiting to happen
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


@contextlib.contextmanager
def patched_environ(values: dict[str, str]) -> Iterator[None]:
    """`os.environ` with `values` set, restored afterwards (variables that were unset are removed)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
