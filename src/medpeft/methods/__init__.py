"""PEFT methods: one module per method, one registry (``METHODS``), one interface (base.py)."""
from .base import (METHODS, Method, MethodConfig, adapter_state_dict, apply_method, count_parameters,
                   create_method, describe_trainable, load_adapter, load_adapter_state,
                   read_adapter_config, register_method, save_adapter)

# Importing a module registers its method.
from . import fft, linear, lora  # noqa: E402,F401

__all__ = ["METHODS", "Method", "MethodConfig", "adapter_state_dict", "apply_method",
           "count_parameters", "create_method", "describe_trainable", "load_adapter",
           "load_adapter_state", "read_adapter_config", "register_method", "save_adapter"]
