"""The house plan, checked from the imports: every module belongs to a layer, imports only from its
own layer or those below, and no modules import each other in a circle (DESIGN.md's layout).

Imports inside functions count too: a lazy import is still an arrow."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "storymem"

# Lowest first. A name stands for that module and, if it is a package, everything in it.
LAYERS = [
    ("ground", ["errors", "files", "weights", "hub"]),
    ("pure parts", ["story", "conditioning", "sampling", "pixels", "video", "memory", "scoring"]),
    ("models", ["models", "options"]),
    (
        "one shot",
        ["pipelines", "acceleration", "build", "distributed", "distributed.context_parallel", "distributed.lockstep"],
    ),
    ("runs", ["runner", "batch", "rundir", "storyboard", "direct", "takes"]),
    ("workflows", ["eval", "train", "toyworld", "write", "distributed.workers"]),
    ("faces", ["cli", "cli_options", "app"]),
]


def modules() -> dict[str, Path]:
    found = {}
    for file in PACKAGE.rglob("*.py"):
        parts = file.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = file
    return found


def layer_of(module: str) -> int | None:
    """The layer of a module ("" is the package itself: its lazy public names, above all)."""
    if module == "":
        return len(LAYERS)
    best, level = -1, None
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, level = len(name), index
    return level


def imports_of(module: str, file: Path, known: dict) -> set[str]:
    """The storymem modules `module` imports (relative and absolute, at any depth of the file)."""
    package = module.split(".") if file.name == "__init__.py" else module.split(".")[:-1]
    package = [p for p in package if p]
    found = set()
    for node in ast.walk(ast.parse(file.read_text())):
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            elif node.module and (node.module == "storymem" or node.module.startswith("storymem.")):
                stem = node.module[len("storymem.") :] if node.module != "storymem" else ""
            else:
                continue
            for alias in node.names:  # `from . import x` may name a submodule
                child = f"{stem}.{alias.name}" if stem else alias.name
                targets.append(child if child in known else stem)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("storymem."):
                    targets.append(alias.name[len("storymem.") :])
        found |= {t for t in targets if t != module}
    return found


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    def name(module):
        return LAYERS[layer_of(module)][0] if layer_of(module) < len(LAYERS) else "package"

    return [
        f"{m} ({name(m)}) imports {t} ({name(t)})"
        for m, targets in sorted(graph.items())
        for t in sorted(targets)
        if layer_of(t) is not None and layer_of(m) is not None and layer_of(t) > layer_of(m)
    ]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every way back to a module on the current path of a depth-first search of the arrows."""
    state: dict[str, str] = {}
    found = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                found.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, file, known) for name, file in known.items()}


def test_every_module_has_a_layer(graph):
    assert [m for m in graph if layer_of(m) is None] == []


def test_no_module_imports_a_layer_above_it(graph):
    assert upward_imports(graph) == []


def test_no_import_circle(graph):
    assert [" -> ".join(c) for c in circles(graph)] == []


def test_the_checks_can_fail(graph):
    """An arrow from the ground up to a face is found, and so is a loop; and the real graph has
    the arrows we know of (so an empty result is not an empty graph)."""
    assert upward_imports({"errors": {"cli"}}) == ["errors (ground) imports cli (faces)"]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert {"pipelines", "options"} <= graph["build"] and "runner" in graph["batch"]
    assert "toyworld.model" not in graph["models.presets"]  # named as a string, imported when built


def test_models_hold_the_real_architecture_and_the_presets_stay_light():
    """presets is a light registry (builders are named, imported when a preset is built); tiny
    and the toy's model never import presets or loading back; models/ has no toy code."""
    code = (
        "import sys, storymem.models.presets as p\n"
        "assert not [m for m in sys.modules if m.startswith('storymem.models.') and m != 'storymem.models.presets']\n"
        "assert not [m for m in sys.modules if m.startswith('storymem.toyworld')]\n"
        "import storymem.models.tiny, storymem.toyworld.model\n"
        "assert 'storymem.models.loading' not in sys.modules, 'tiny/toy import loading'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not [f.name for f in (PACKAGE / "models").iterdir() if "toy" in f.name]
