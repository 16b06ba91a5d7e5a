"""The folders are the architecture: every import points down the layers, never up; benchmarks/ import the package
as any user does, with no path edits and no cycles, and each is named in benchmarks/README.md."""

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
    "engine.model_io": {"core", "data_provider", "models", "engine.config", "engine.recipes"},
    "engine.evaluate": {"core", "data_provider", "models", "engine.config", "engine.progress"},
    "engine.report": {"core", "data_provider", "models", "engine.config", "engine.evaluate", "engine.progress"},
    "engine.train": {"core", "data_provider", "models", "engine.config", "engine.recipes", "engine.runtime",
                     "engine.model_io", "engine.evaluate", "engine.report", "engine.progress"},
    "engine.estimate": {"core", "data_provider", "models", "engine.config", "engine.runtime", "engine.model_io",
                        "engine.evaluate", "engine.report", "engine.train", "engine.progress", "engine.cli"},
    # forecasting builds on what training also uses (engine.model_io), never on training itself
    "engine.forecast": {"core", "data_provider", "models", "engine.config", "engine.runtime", "engine.model_io",
                        "engine.evaluate", "engine.report", "engine.progress"},
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


# ------------------------------------------------------------------------------------------ benchmarks/
BENCHMARKS = ROOT / "benchmarks"


def _benchmark_imports(path: Path) -> set[str]:
    """The benchmarks modules a file imports, at any depth (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module == "benchmarks":
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("benchmarks."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("benchmarks."))
    return found


def test_benchmarks_leave_sys_path_alone():
    """Run as `python -m benchmarks.X` from the checkout, every import resolves without path edits."""
    touched = [p.name for p in BENCHMARKS.glob("*.py")
               if "sys.path" in p.read_text(encoding="utf-8") or "noqa: E402" in p.read_text(encoding="utf-8")]
    assert not touched, touched


def test_benchmarks_import_no_cycle():
    graph = {p.stem: _benchmark_imports(p) for p in BENCHMARKS.glob("*.py")}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt})):
                return True
        return False

    cycles = sorted(name for name in graph if reaches(name, name, {name}))
    assert not cycles, cycles


def _all_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_package_never_imports_benchmarks_or_tests():
    upward = [str(p.relative_to(ROOT)) for p in (ROOT / PACKAGE).rglob("*.py")
              if {"benchmarks", "tests", "conftest"} & {m.split(".")[0] for m in _all_imports(p)}]
    assert not upward, upward


def test_every_benchmark_module_is_in_the_benchmarks_readme():
    readme = (BENCHMARKS / "README.md").read_text(encoding="utf-8")
    missing = [p.stem for p in BENCHMARKS.glob("*.py") if p.stem != "__init__"
               and f"benchmarks.{p.stem}`" not in readme and f"benchmarks/{p.name}" not in readme]
    assert not missing, f"benchmarks/README.md does not name {missing}"
