"""The package's layers stay in order: a module never imports a layer above its own.

The order (docs/architecture.md, "Layers"): the base modules (serialization, registry, table,
console) < data and models (independent of each other) < methods < runtime < train, inference,
pretrain, diffusion (independent of each other) < studies and serve (independent of each other)
< cli. The test reads every module's imports with ``ast``, so an import inside a function counts
as much as one at the top.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import medpeft

PACKAGE = Path(medpeft.__file__).parent
BASE = {"serialization", "registry", "table", "console", "__init__"}
# layer -> the layers it may import (besides itself)
ALLOWED = {
    "base": set(),
    "data": {"base"},
    "models": {"base"},
    "methods": {"base", "models"},
    "runtime": {"base", "data", "models", "methods"},
    "train": {"base", "data", "models", "methods", "runtime"},
    "inference": {"base", "data", "models", "methods", "runtime"},
    "pretrain": {"base", "data", "models", "methods", "runtime"},
    "diffusion": {"base", "data", "models", "methods", "runtime"},
    "studies": {"base", "data", "models", "methods", "runtime", "train", "inference", "pretrain", "diffusion"},
    "serve": {"base", "data", "models", "methods", "runtime", "train", "inference", "pretrain"},
    "cli": {"base", "data", "models", "methods", "runtime", "train", "inference", "pretrain", "diffusion", "studies",
            "serve"},
}


def layer_of(module: str) -> str:
    """'medpeft.runtime.loop' -> 'runtime'; 'medpeft.serialization' -> 'base'; 'medpeft.cli.flags' -> 'cli'."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top in BASE:
        return "base"
    if top in ("cli", "__main__"):
        return "cli"
    if top not in ALLOWED:
        raise AssertionError(f"{module}: package {top!r} has no layer; add it to ALLOWED and docs/architecture.md")
    return top


def module_name(path: Path) -> str:
    parts = ("medpeft",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    """Whether ``medpeft.a.b`` is a module or package of the source tree."""
    relative = Path(*name.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").is_file() or (PACKAGE / relative / "__init__.py").is_file()


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(absolute medpeft module, line) for every import statement in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.startswith("medpeft")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("medpeft"):
                for alias in node.names:  # `from . import x`: x may be a module of the package
                    submodule = f"{target}.{alias.name}"
                    found.append((submodule if is_module(submodule) or target == "medpeft" else target, node.lineno))
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_layer_above_its_own(path):
    own = layer_of(module_name(path))
    bad = [f"line {line}: {target} ({layer_of(target)})" for target, line in imports_of(path)
           if layer_of(target) != own and layer_of(target) not in ALLOWED[own]]
    assert not bad, f"{path.relative_to(PACKAGE)} ({own}) imports layers it may not: {bad}"


def test_the_checker_sees_relative_and_nested_imports():
    """The reader itself: relative imports (one and two levels up) and imports inside functions."""
    assert "medpeft.runtime.rundir" in [t for t, _ in imports_of(PACKAGE / "runtime" / "loop.py")]
    assert "medpeft.runtime" in [t for t, _ in imports_of(PACKAGE / "inference" / "evaluate.py")]
    assert "medpeft.train" in [t for t, _ in imports_of(PACKAGE / "cli" / "finetune.py")]  # inside cmd_finetune
    assert layer_of("medpeft.train.finetuning") == "train" and layer_of("medpeft.cli.flags") == "cli"
    assert "train" not in ALLOWED["inference"] and "inference" not in ALLOWED["train"]
    assert "studies" not in ALLOWED["serve"] and "serve" not in ALLOWED["studies"]
    assert "data" not in ALLOWED["models"] and "models" not in ALLOWED["data"]
