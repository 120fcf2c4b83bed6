"""Counting a worker module's `run_async` calls, for the tests that a job is one coroutine."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest


def count_run_async(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> list[Any]:
    """Wrap `module.run_async` for this test; the list grows by one entry per call."""
    calls: list[Any] = []
    original = module.run_async

    def counting(coroutine: Any) -> Any:
        calls.append(coroutine)
        return original(coroutine)

    monkeypatch.setattr(module, "run_async", counting)
    return calls
