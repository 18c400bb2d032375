"""The layout's rules (docs/layout.md): a module imports only from its own layer or lower
ones, no two modules import each other in a circle, no module is over 500 lines, and the
command line starts without torch."""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "archcost"

# Lower numbers are more basic; docs/layout.md's table, as data.
LAYERS = {
    "errors": 0, "conditions": 0, "devices": 0, "files": 0, "plugins": 0,
    "zoo": 1,
    "count": 2,
    "memory": 3, "roofline": 3,
    "measure": 4,
    "analysis": 5,
    "checks": 6, "compare": 6, "reproduce": 6,
    "report": 7,
    "cli": 8, "__main__": 8, "__init__": 8, "api": 8,
}


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _imports(path: pathlib.Path, module: str):
    """Every archcost module ``path`` imports, at module level or inside a function."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("archcost"):
                    yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.startswith("archcost"):
                for a in node.names:
                    yield (f"{base}.{a.name}" if _is_module(f"{base}.{a.name}") else base), node.lineno


def _is_module(dotted: str) -> bool:
    rel = pathlib.Path(*dotted.split(".")[1:])
    return (ROOT / rel).with_suffix(".py").exists() or (ROOT / rel / "__init__.py").exists()


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else "__init__"]


MODULES = dict(_modules())


def test_every_top_level_name_has_a_layer():
    tops = {m.split(".")[1] for m in MODULES if "." in m}
    assert tops <= set(LAYERS), f"add to LAYERS and docs/layout.md: {sorted(tops - set(LAYERS))}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_only(module):
    if module == "archcost":
        return  # the package's lazy attributes reach the facade by design
    mine = _layer(module)
    up = [f"line {line}: {target} (layer {_layer(target)})" for target, line in _imports(MODULES[module], module)
          if target != "archcost" and _layer(target) > mine]
    assert not up, f"{module} (layer {mine}) imports a higher layer: " + "; ".join(up)


def test_no_import_circle():
    graph = {m: {t for t, _ in _imports(p, m) if t in MODULES and t != m} for m, p in MODULES.items()}
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for t in sorted(graph[m]):
            # a package importing its own submodules (re-exports) is not a circle
            if not t.startswith(m + "."):
                visit(t)
        stack.pop()

    for m in sorted(graph):
        visit(m)
    # A package's __init__ re-exporting from its own submodules is one unit with them.
    real = [c for c in cycles if not all(x.startswith(c[0].rsplit(".", 1)[0]) for x in c) or len(
        {x.split(".")[1] if "." in x else "" for x in c}) > 1]
    assert not real, "import circles: " + "; ".join(" -> ".join(c) for c in real)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_size(module):
    n = len(MODULES[module].read_text().splitlines())
    assert n <= 500, f"{module} has {n} lines: split it by concern (STYLE.md: small files)"


def test_help_imports_no_torch():
    code = "import sys, archcost.cli; bad = [m for m in ('torch', 'pandas', 'matplotlib') if m in sys.modules]; " \
           "print(','.join(bad))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing the CLI imports {out}"
