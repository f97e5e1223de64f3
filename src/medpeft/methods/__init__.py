"""PEFT methods: one module per method, one registry (``METHODS``), one interface (``_base.py``) for
every backbone family: ViT and ResNet classifiers and the diffusion UNet.

Every module in this package is imported here, and importing a module registers its
method, so adding a method is adding a file.
"""
import importlib
import pkgutil

from ._base import (
    METHODS,
    Method,
    MethodConfig,
    adapter_state_dict,
    apply_method,
    count_parameters,
    create_method,
    describe_trainable,
    load_adapter,
    load_adapter_state,
    method_config,
    methods_for,
    read_adapter_config,
    read_adapter_weights,
    register_method,
    save_adapter,
)

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _module.startswith("_"):
        importlib.import_module(f"{__name__}.{_module}")

__all__ = ["METHODS", "Method", "MethodConfig", "adapter_state_dict", "apply_method",
           "count_parameters", "create_method", "describe_trainable", "load_adapter",
           "load_adapter_state", "read_adapter_config", "read_adapter_weights", "register_method",
           "save_adapter", "method_config", "methods_for"]
