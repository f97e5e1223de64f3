"""Closed-form trainable counts of the peft-backed and ResNet-only methods (see conftest.py)."""
FORMULAS: dict = {}
