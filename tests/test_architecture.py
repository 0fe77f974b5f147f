"""The import graph goes one way (docs/architecture.md): each module imports
only modules of lower layers, and the engine only the model and the stdlib."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# lowest first; a module may import modules of lower layers only
LAYERS: list[set[str]] = [
    {
        "bot",
        "bot.engine",
        "bot.common",
        "bot.upstream",
        "bot.state",
        "bot.state.sqlite",
        "bot.notify",
        "bot.app",
        "bot.ops",
        "bot.engine.model",
        "bot.common.secrets",
        "bot.common.plugins",
        "bot.state.sqlite.samples",
    },
    {
        "bot.engine.rules",
        "bot.engine.forecast",
        "bot.common.backoff",
        "bot.notifiers.message",
        "bot.common.logs",
    },
    {
        "bot.notifiers",
        "bot.notify.render",
        "bot.ops.metrics",
        "bot.app.history",
        "bot.notify.suppression",
    },
    {"bot.notify.plan"},
    {"bot.config", "bot.upstream.cometapi", "bot.state.sqlite.store", "bot.ops.web"},
    {"bot.notifiers.base", "bot.notifiers.blocking", "bot.notify.routing", "bot.notify.followup"},
    {
        "bot.notifiers.log",
        "bot.notifiers.telegram",
        "bot.notifiers.slack",
        "bot.notifiers.webhook",
        "bot.notifiers.apprise",
    },
    {"bot.notify.delivery"},
    {"bot.app.views", "bot.app.actions"},
    {"bot.app.readmodel", "bot.app.commands", "bot.app.check"},
    {"bot.app.cycle"},
    {"bot.app.jobs"},
    {"bot.app.service"},
    {"bot.app.demo", "bot.app.starter", "bot.app.testnotify"},
    {"bot.cli"},
    {"bot.__main__"},
]


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


def layer_of(module: str) -> int:
    (index,) = [i for i, layer in enumerate(LAYERS) if module in layer]
    return index


def test_every_module_has_a_layer():
    assert set(bot_modules()) == set().union(*LAYERS)


def test_imports_only_go_down():
    wrong = [
        f"{module} (layer {layer_of(module)}) imports {dep} (layer {layer_of(dep)})"
        for module, deps in bot_modules().items()
        for dep in deps
        if dep != module and layer_of(dep) >= layer_of(module)
    ]
    assert not wrong, wrong


def test_the_engine_imports_the_model_and_the_standard_library_only():
    for engine in (
        "engine/rules.py",
        "engine/forecast.py",
        "engine/model.py",
        "notifiers/message.py",
    ):
        path = ROOT / "bot" / engine
        third_party = {
            name.split(".")[0]
            for name in imports(path)
            if name.split(".")[0] not in sys.stdlib_module_names
        }
        assert third_party <= {"bot"}, (engine, third_party)
        bot = {n for n in imports(path) if n.split(".")[0] == "bot"}
        assert all(n.startswith("bot.engine.model") for n in bot), (engine, bot)


def test_notifiers_never_import_delivery_and_nothing_imports_the_tests():
    for path in (ROOT / "bot" / "notifiers").rglob("*.py"):
        assert "bot.notify.delivery" not in imports(path), path
    for folder in ("bot", "bench", "fakes"):
        for path in (ROOT / folder).rglob("*.py"):
            assert not any(n.split(".")[0] == "tests" for n in imports(path)), path
