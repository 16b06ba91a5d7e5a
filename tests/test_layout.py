"""The folders are the architecture: every import points down the layers, never up."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

# a package may import only from the packages listed after it (and from itself)
LAYERS = {
    "core": set(),
    "data_provider": {"core"},
    "models": {"core"},
    "engine.config": {"core", "data_provider", "engine.recipes"},
    "engine.recipes": set(),
    "engine.progress": set(),
    "engine.runtime": {"core", "models"},
    "engine.evaluate": {"core", "data_provider", "models", "engine.config", "engine.progress"},
    "engine.report": {"core", "data_provider", "models", "engine.config", "engine.evaluate", "engine.progress"},
    "engine.train": {"core", "data_provider", "models", "engine.config", "engine.recipes", "engine.runtime",
                     "engine.evaluate", "engine.report", "engine.progress"},
    "engine.estimate": {"core", "data_provider", "models", "engine.config", "engine.runtime", "engine.evaluate",
                        "engine.report", "engine.train", "engine.progress", "engine.cli"},
    "engine.forecast": {"core", "data_provider", "models", "engine.config", "engine.runtime", "engine.evaluate",
                        "engine.report", "engine.train", "engine.progress"},
    "engine.cli": {"core", "engine.runtime"},
}


def _layer(module: str) -> str:
    for name in sorted(LAYERS, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return name
    return module.split(".")[0]


PACKAGE = "timellm_launcher"


def _imports(path: Path) -> set[str]:
    """The project modules a file imports, named without the package prefix (engine.train, models, ...)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module if node.module != f"{PACKAGE}.engine" else f"engine.{node.names[0].name}")
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    inside = {m.removeprefix(PACKAGE + ".") for m in found if m.startswith(PACKAGE + ".")}
    return {m for m in inside if m.split(".")[0] in {"core", "data_provider", "models", "engine"}}


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT / PACKAGE).with_suffix("").parts).removesuffix(".__init__")


def test_no_import_points_up():
    upward = []
    for path in sorted(p for package in ("core", "data_provider", "models", "engine")
                       for p in (ROOT / PACKAGE / package).rglob("*.py")):
        module = _module(path)
        layer = _layer(module)
        if layer not in LAYERS:
            continue
        for imported in _imports(path):
            target = _layer(imported)
            if target != layer and target not in LAYERS[layer]:
                upward.append(f"{module} imports {imported}")
    assert not upward, "\n".join(upward)


def test_every_module_belongs_to_a_layer():
    modules = [_module(p) for p in (ROOT / PACKAGE).glob("engine/**/*.py")]
    assert all(_layer(m) in LAYERS or m == "engine" for m in modules), modules


def test_nothing_generic_lands_at_the_top_of_site_packages():
    """Installed, the project is one package (timellm_launcher); core, engine, models... live inside it."""
    assert not any((ROOT / name).exists() for name in ("core", "data_provider", "models", "engine"))
