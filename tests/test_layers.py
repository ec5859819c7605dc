"""The shape of the package, read from its source: layers only look down, no import circle, and
a function-local import says why it is not at the top (start-up time)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "metadqn_jax"
# the command line's layer: everything else is the library, which never imports these
APP = ("metadqn_jax.app", "metadqn_jax.cli", "metadqn_jax.__main__")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path, module: str) -> list[tuple[str, ast.AST, bool]]:
    """``(imported module, node, at module level)`` for every ``metadqn_jax`` import of ``path``
    (``from a import b`` counts as ``a.b`` when that is a module, else ``a``)."""
    tree = ast.parse(path.read_text())
    modules = _modules()
    top = {id(n) for n in tree.body}  # module level; `if TYPE_CHECKING:` and `try:` blocks there too
    top |= {id(n) for block in tree.body if isinstance(block, (ast.If, ast.Try)) for n in block.body}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        found += [(n, node, id(node) in top) for n in names if n.startswith("metadqn_jax")]
    return found


def _is_app(name: str) -> bool:
    return any(name == a or name.startswith(a + ".") for a in APP)


def test_the_library_never_imports_the_command_line():
    """``metadqn_jax`` outside ``app/`` and ``cli.py`` (``deploy`` included) imports nothing from them."""
    bad = [f"{m} imports {n}" for m, p in _modules().items() if not _is_app(m)
           for n, _, _ in _imports(p, m) if _is_app(n)]
    assert not bad, bad


def test_no_import_circle():
    """The module-level imports between the package's modules form no cycle (a package's
    ``__init__`` is not counted as importing the submodules it re-exports lazily)."""
    modules = _modules()
    graph = {m: sorted({n for n, _, at_top in _imports(p, m) if at_top and n != m and n in modules})
             for m, p in modules.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in graph[m]:
            if n.startswith(m + "."):  # a package importing its own submodule (re-export)
                continue
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n] if n in stack else [m, n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def test_function_local_imports_say_why():
    """Imports belong at the top of a module; the few inside a function (kept out of start-up:
    ``metadqn --help`` imports no JAX) each carry a comment on their line saying so."""
    bad = []
    for p in _modules().values():
        text = p.read_text()
        lines = text.splitlines()
        for fn in ast.walk(ast.parse(text)):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                bad += [f"{p.relative_to(PACKAGE.parent)}:{node.lineno}" for node in ast.walk(fn)
                        if isinstance(node, (ast.Import, ast.ImportFrom)) and "#" not in lines[node.lineno - 1]]
    assert not bad, sorted(set(bad))
