"""The runnable examples in docstrings run (as River runs every estimator's example)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "modelling.numerics",
    "modelling.evaluation.equivalence",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0
