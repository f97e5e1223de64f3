"""Each method lives in the file named for it (hyphens as underscores, as peft's ``tuners/<name>``);
shared code sits in underscore-prefixed modules, which register nothing (timm's habit)."""
from __future__ import annotations

import importlib
import pkgutil

import medpeft.methods as methods_package
from medpeft.methods import METHODS

VARIANTS = {"vpt-shallow": "vpt", "vpt-deep": "vpt"}  # two depths of one method share its file


def test_every_method_is_in_the_file_named_for_it():
    wrong = {name: cls.__module__ for name, cls in METHODS.items()
             if cls.__module__ != f"medpeft.methods.{VARIANTS.get(name, name).replace('-', '_')}"}
    assert not wrong, f"methods outside their own file: {wrong}"


def test_every_public_module_registers_a_method_and_shared_modules_none():
    modules = [m.name for m in pkgutil.iter_modules(methods_package.__path__)]
    homes = {cls.__module__.rpartition(".")[2] for _, cls in METHODS.items()}
    assert {m for m in modules if not m.startswith("_")} == homes
    for shared in (m for m in modules if m.startswith("_")):
        module = importlib.import_module(f"medpeft.methods.{shared}")
        assert not any(getattr(cls, "__module__", None) == module.__name__ for _, cls in METHODS.items())
