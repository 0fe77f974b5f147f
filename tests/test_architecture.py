"""The packages are the layers (docs/architecture.md): imports go down only, there
is no import cycle, the engine imports nothing but itself and the standard
library, and SQL lives in a state backend's package only."""

from __future__ import annotations

import ast
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# lowest first; a package may import its own modules and those of lower layers only
LAYERS: list[set[str]] = [
    {"bot.engine", "bot.common"},
    {"bot.upstream", "bot.state", "bot.notifiers"},
    {"bot.config", "bot.notify", "bot.ops"},
    {"bot.app"},
    {"bot.cli"},
    {"bot.__main__"},
]
# what each ground package may import besides itself: nothing of the bot
GROUND = {"bot.engine": set(), "bot.common": set()}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def bot_modules() -> dict[str, set[str]]:
    modules = {module_name(p): imports(p) for p in (ROOT / "bot").rglob("*.py")}
    return {name: {i for i in found if i in modules} for name, found in modules.items()}


def package_of(module: str) -> str:
    """The layer package a module belongs to ("bot" for the package itself)."""
    for layer in LAYERS:
        for package in layer:
            if module == package or module.startswith(package + "."):
                return package
    return module


def layer_of(module: str) -> int:
    package = package_of(module)
    (index,) = [i for i, layer in enumerate(LAYERS) if package in layer] or [-1]
    return index


def test_every_module_is_in_a_layer_package():
    lost = [m for m in bot_modules() if m != "bot" and layer_of(m) < 0]
    assert not lost, lost
    folders = {p.name for p in (ROOT / "bot").iterdir() if (p / "__init__.py").exists()}
    packages = {p.removeprefix("bot.") for layer in LAYERS for p in layer}
    assert folders <= packages, folders - packages


def test_imports_only_go_down():
    wrong = [
        f"{module} ({package_of(module)}) imports {dep} ({package_of(dep)})"
        for module, deps in bot_modules().items()
        for dep in deps
        if dep != "bot"
        and package_of(dep) != package_of(module)
        and layer_of(dep) >= layer_of(module)
    ]
    assert not wrong, wrong


def test_there_is_no_import_cycle():
    graph = {m: {d for d in deps if d != m and d != "bot"} for m, deps in bot_modules().items()}
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


@pytest.mark.parametrize("ground", sorted(GROUND))
def test_the_ground_imports_the_standard_library_and_itself_only(ground):
    folder = ROOT / ground.replace(".", "/")
    for path in folder.rglob("*.py"):
        names = imports(path)
        third_party = {
            n.split(".")[0] for n in names if n.split(".")[0] not in sys.stdlib_module_names
        }
        assert third_party <= {"bot"}, (path, third_party)
        outside = {n for n in names if n.split(".")[0] == "bot" and package_of(n) != ground}
        assert outside <= GROUND[ground], (path, outside)


def test_sql_lives_in_a_state_backend_only():
    for path in (ROOT / "bot").rglob("*.py"):
        if "state" in path.relative_to(ROOT).parts[1:2] and path.parent.name != "state":
            continue  # a backend's own package
        assert "sqlite3" not in imports(path), path


def test_notifiers_never_import_delivery_and_nothing_imports_the_tests():
    for path in (ROOT / "bot" / "notifiers").rglob("*.py"):
        assert not any(n.startswith("bot.notify") for n in imports(path)), path
    for folder in ("bot", "bench", "fakes"):
        for path in (ROOT / folder).rglob("*.py"):
            assert not any(n.split(".")[0] == "tests" for n in imports(path)), path
