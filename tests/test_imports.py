"""The package's imports flow down its layers, and no two modules import each other at load time.

Layers, lowest first: a module may import from its own layer and the ones before it, never from a later one (a
function-level import counts too); the package's own `__init__` stands above them all. `from upt_keras.x import y`
names the module `upt_keras.x.y` when there is one."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "upt_keras"
LAYERS = ["_lazy", "_registration", "_optional", "configs", "schema", "backend", "distribute", "layers", "objectives", "models", "config",
          "run_files", "progress", "data", "evaluation", "training", "tuning", "cli"]


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path, module_level_only=False):
    """The upt_keras modules `path` imports (`from upt_keras import x` as `upt_keras.x`)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if module_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "upt_keras":
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES or node.module == "upt_keras" else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "upt_keras")
    return found


def _layer(module):
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 else len(LAYERS)


def test_every_module_sits_in_a_layer():
    assert {m.split(".")[1] for m in MODULES if "." in m} <= set(LAYERS)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_flow_down(module):
    upward = sorted(t for t in _imports(MODULES[module]) if _layer(t) > _layer(module))
    assert not upward, f"{module} imports from later layers: {upward}"


def test_no_import_cycle_at_load_time():
    graph = {m: {t for t in _imports(p, module_level_only=True) if t in MODULES and t != m} for m, p in MODULES.items()}
    # a package's __init__ importing its own modules is no cycle; a module importing its parent package is
    # importing the __init__, which is what the graph holds
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = stack[stack.index(nxt):] + [nxt]
                if not all(a.startswith(b + ".") or b.startswith(a + ".") for a, b in zip(cycle, cycle[1:])):
                    raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_the_check_finds_an_upward_import(tmp_path):
    # the layering check itself: a layer module importing training is reported
    path = tmp_path / "bad.py"
    path.write_text("def f():\n    from upt_keras.training import train\n")
    assert _layer("upt_keras.training") > _layer("upt_keras.layers.bad")
    assert "upt_keras.training" in _imports(path)
