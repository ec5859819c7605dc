"""The examples in the docstrings run: every ``>>>`` example of every module of the package (doctest,
examples in each module's own namespace) gives the output its docstring shows."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import metadqn_jax

MODULES = sorted(m.name for m in pkgutil.walk_packages(metadqn_jax.__path__, "metadqn_jax.")
                 if m.name != "metadqn_jax.__main__")
FINDER = doctest.DocTestFinder(exclude_empty=True)


def _examples(name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(name)
    return [t for t in FINDER.find(module, name) if t.examples and getattr(t, "filename", None) is not None]


WITH_EXAMPLES = [name for name in MODULES if _examples(name)]


def test_the_modules_with_examples_are_found():
    """The finder sees the examples (a doctest that is never collected proves nothing)."""
    expected = {"metadqn_jax.checkpoint", "metadqn_jax.core.replay", "metadqn_jax.core.stats",
                "metadqn_jax.meta.gradient", "metadqn_jax.runs.configs", "metadqn_jax.runs.yamlio",
                "metadqn_jax.tasks.family"}
    assert expected <= set(WITH_EXAMPLES), sorted(expected - set(WITH_EXAMPLES))


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in _examples(name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0, f"{name}: {result.failed} of {result.attempted} failed"
