"""Helpers for the plugin's own tests (a unique module name: tests dirs share sys.path)."""

from __future__ import annotations

import pytest


def run_inner(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run the pytester session in-process, without plugins that only add noise there."""
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio", *args)
