"""Closed-form trainable counts of the peft-backed and ResNet-only methods (see conftest.py)."""
from .shapes import dims, total_params  # noqa: F401  (formulas use them)

# name -> formula(base model before injection, method config) -> trainable parameter count
FORMULAS: dict = {}
