"""Tables for the terminal and for Markdown: metrics of a run, method parameter counts."""
from __future__ import annotations

import math

from rich.table import Table


def percent(value: float | None, digits: int = 1) -> str:
    """Metrics are fractions in [0, 1]; reports show percentages (DESIGN.md)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100.0 * value:.{digits}f}"


def metrics_table(metrics: dict, title: str = "") -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    ci = metrics.get("auroc_ci95")
    table.add_row("AUROC (macro)", percent(metrics["auroc"], 2)
                  + (f"  [{percent(ci[0], 2)}, {percent(ci[1], 2)}]" if ci else ""))
    table.add_row("accuracy", percent(metrics["acc"], 2))
    table.add_row("macro-F1", percent(metrics["f1_macro"], 2), end_section=True)
    for name, value in metrics.get("auroc_per_label", {}).items():
        table.add_row(f"AUROC {name}", percent(value, 2))
    return table


def methods_table(backbone: str, *, img_size: int = 224, patch_size: int | None = None,
                  num_outputs: int = 14) -> Table:
    """Every method that fits ``backbone`` with its trainable-parameter count, with and without
    the task head; the methods that do not fit are named in the caption."""
    import torch

    from ..methods import METHODS, apply_method, count_parameters, create_method
    from ..models import BackboneConfig, create_backbone, family_of

    config = BackboneConfig(backbone, img_size=img_size, patch_size=patch_size)
    with torch.device("meta"):  # counts only: no memory, no initialisation time
        family = family_of(create_backbone(config, num_outputs))
    table = Table(title=f"methods for {backbone} ({family}, {img_size} px, {num_outputs} outputs)")
    for column, justify in (("method", "left"), ("trainable", "right"), ("without head", "right"),
                            ("% of total", "right"), ("mergeable", "center"), ("what trains", "left")):
        table.add_column(column, justify=justify)
    for name, cls in METHODS.items():
        if family not in cls.families:
            continue
        with torch.device("meta"):
            model = apply_method(create_backbone(config, num_outputs), create_method(name))
        trainable, total = count_parameters(model)
        table.add_row(name, f"{trainable:,}", f"{trainable - head_parameters(model):,}",
                      f"{100.0 * trainable / total:.2f}%", "yes" if cls.mergeable else "", cls.summary)
    misfits = [name for name, cls in METHODS.items() if family not in cls.families]
    if misfits:
        table.caption = f"not applicable to {family} backbones: {', '.join(misfits)}"
    return table


def head_parameters(model) -> int:
    """Parameters of the task head every method trains (classifier, plus fc_norm for ViTs)."""
    from ..models.backbones import head_names

    prefixes = tuple(f"{name}." for name in head_names(model))
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefixes))
