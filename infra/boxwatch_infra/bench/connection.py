"""A bench-only patch of the domain's pynamodb connections (requests unchanged)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from unittest import mock


@contextlib.contextmanager
def reused_connection() -> Iterator[bool]:
    """The fix proposed for the domain's `TransactWrite(connection=Connection())`: one pynamodb
    Connection per container instead of a new one - a new botocore session whose JSON models are
    parsed again, ~0.1-0.2 s here - per call. Requests are unchanged. Yields whether any domain
    module still builds one per call (nothing to patch otherwise)."""
    import importlib
    import pkgutil

    from pynamodb.connection import Connection

    import boxwatch

    modules = []
    for info in pkgutil.iter_modules(boxwatch.__path__):
        try:
            module = importlib.import_module(f"boxwatch.{info.name}")
        except Exception:  # a module mid-edit elsewhere: handlers that import it fail on their own
            continue
        # boxwatch.models holds the one shared Connection (the fix itself): nothing to patch there
        if getattr(module, "Connection", None) is Connection and not hasattr(module, "_CONNECTION"):
            modules.append(module)
    if not modules:
        yield False
        return
    shared = Connection()
    with contextlib.ExitStack() as stack:
        for module in modules:
            stack.enter_context(mock.patch.object(module, "Connection", lambda *a, **k: shared))
        yield True
