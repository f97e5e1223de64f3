"""Tables for the command line: a run's metrics, the methods that fit a backbone (a classifier or
the diffusion UNet) with their trainable-parameter counts, and one method's options."""
from __future__ import annotations

import dataclasses
import typing

from ..table import Table
from .tables import percent


def metrics_table(metrics: dict, title: str = "") -> Table:
    """One split's metrics: AUROC, accuracy and macro-F1 at 0.5 (argmax for multiclass) and at the
    run's validation thresholds, the labels decided the same way for every image, per-label AUROC
    and thresholds."""
    table = Table(title=title, columns=["metric", "value"])
    ci = metrics.get("auroc_ci95")
    table.add_row("AUROC (macro)", percent(metrics["auroc"], 2)
                  + (f"  [{percent(ci[0], 2)}, {percent(ci[1], 2)}]" if ci else ""))
    thresholds = metrics.get("thresholds")
    table.add_row("accuracy" + (" (threshold 0.5)" if thresholds else ""), percent(metrics["acc"], 2))
    table.add_row("macro-F1" + (" (threshold 0.5)" if thresholds else ""), percent(metrics["f1_macro"], 2))
    if thresholds:
        table.add_row("accuracy (val threshold)", percent(metrics["acc_at_val_threshold"], 2))
        table.add_row("macro-F1 (val threshold)", percent(metrics["f1_macro_at_val_threshold"], 2))
    if "one_class_labels" in metrics:
        table.add_row("one decision for every image", _one_class_text(metrics))
    table.rules_after.add(len(table.rows) - 1)
    for name, value in metrics.get("auroc_per_label", {}).items():
        table.add_row(f"AUROC {name}", percent(value, 2))
    for name, value in (thresholds or {}).items():
        table.add_row(f"val threshold {name}", f"{value:.4f}")
    subgroups = metrics.get("subgroups")
    if subgroups:
        table.rules_after.add(len(table.rows) - 1)
        for value, group in subgroups["groups"].items():
            ci = group.get("auroc_ci95")
            table.add_row(f"AUROC {subgroups['column']} = {value} (n {group['n']})", percent(group["auroc"], 2)
                          + (f"  [{percent(ci[0], 2)}, {percent(ci[1], 2)}]" if ci else ""))
        if "auroc_gap" in subgroups:
            low, high = subgroups["auroc_gap_between"]
            table.add_row(f"largest AUROC gap ({high} - {low})", percent(subgroups["auroc_gap"], 2))
    return table


def _one_class_text(metrics: dict) -> str:
    """E.g. "nodule, effusion at 0.5; nodule at the val threshold", or "none"."""
    parts = []
    if metrics.get("one_class_labels"):
        rule = "at 0.5" if "thresholds" in metrics else "at 0.5 / argmax"
        parts.append(f"{', '.join(metrics['one_class_labels'])} {rule}")
    if metrics.get("one_class_labels_at_val_threshold"):
        parts.append(f"{', '.join(metrics['one_class_labels_at_val_threshold'])} at the val threshold")
    return "; ".join(parts) or "none"


def methods_table(backbone: str, *, img_size: int = 224, patch_size: int | None = None,
                  num_outputs: int = 14) -> Table:
    """Every method that fits ``backbone`` with its trainable-parameter count, with and without
    the task head; the methods that do not fit are named in the caption. ``backbone`` ``unet``
    is the diffusion UNet at its default size (:class:`medpeft.diffusion.UNetConfig`)."""
    import torch

    from ..methods import METHODS, apply_method, count_parameters, create_method
    from ..models import BackboneConfig, create_backbone, family_of

    if backbone == "unet":
        from ..diffusion import UNetConfig
        from ..diffusion.unet import build_unet

        unet = UNetConfig()
        family, device = "unet", torch.device("cpu")  # peft's injection needs real tensors; the UNet is small
        title = f"methods for the diffusion UNet ({list(unet.channels)} channels, {img_size} px)"
        build = lambda: build_unet(unet, img_size)  # noqa: E731
    else:
        config = BackboneConfig(backbone, img_size=img_size, patch_size=patch_size)
        device = torch.device("meta")  # counts only: no memory, no initialisation time
        with device:
            family = family_of(create_backbone(config, num_outputs))
        title = f"methods for {backbone} ({family}, {img_size} px, {num_outputs} outputs)"
        build = lambda: create_backbone(config, num_outputs)  # noqa: E731
    last = "diffusion lr" if family == "unet" else "mergeable"
    table = Table(title=title, columns=["method", "trainable", "without head", "% of total", last, "what trains"])
    for name, cls in METHODS.items():
        if family not in cls.families:
            continue
        with device:
            model = apply_method(build(), create_method(name, family=family))
        trainable, total = count_parameters(model)
        table.add_row(name, f"{trainable:,}", f"{trainable - head_parameters(model):,}",
                      f"{100.0 * trainable / total:.2f}%",
                      f"{cls.diffusion_lr:g}" if family == "unet" else "yes" if cls.mergeable else "no",
                      cls.summary_for(family))
    misfits = [name for name, cls in METHODS.items() if family not in cls.families]
    if misfits:
        table.caption = f"not applicable to {family} backbones: {', '.join(misfits)}"
    return table


def method_options_table(name: str, family: str | None = None) -> Table:
    """One method's options: name, type, default (``family``'s own where it has them) and help."""
    from ..methods import METHODS
    from ..serialization import field_help

    cls = METHODS.get(name)
    config = cls.config_class
    hints = typing.get_type_hints(config)
    own = cls.family_defaults.get(family, {})
    table = Table(title=f"{cls.name}: {cls.summary_for(family)}", columns=["option", "type", "default", "help"])
    for field in dataclasses.fields(config):
        if field.init:
            default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
            table.add_row(f"--{field.name.replace('_', '-')}", _type_name(hints[field.name]),
                          str(own.get(field.name, default)), field_help(config, field.name))
    others = {f: d for f, d in cls.family_defaults.items() if f != family}
    table.caption = (f"{cls.paper}; fits {', '.join(cls.families)}; mergeable: {'yes' if cls.mergeable else 'no'}"
                     + ("" if table.rows else "; no options of its own")
                     + "".join(f"; {f} defaults: {d}" for f, d in others.items()))
    return table


def _type_name(hint) -> str:
    return getattr(hint, "__name__", str(hint).replace("typing.", ""))


def head_parameters(model) -> int:
    """Parameters of the task head every method trains (classifier, plus fc_norm for ViTs)."""
    from ..models.backbones import head_names

    prefixes = tuple(f"{name}." for name in head_names(model))
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefixes))
