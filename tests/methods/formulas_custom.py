"""Closed-form trainable counts of the methods written in medpeft (see conftest.py)."""
FORMULAS: dict = {}
