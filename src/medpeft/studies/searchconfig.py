"""What a study file says about its search (``search:``): the :class:`SearchConfig` dataclass, the
space of each method (:func:`search_space`), its validation (:func:`check_search`: the names and
the shape of each range; :func:`check_space_values`: every bound through the checks of the cells
that will run it) and the Optuna distribution of one range (:func:`distribution`). How a search
runs is in :mod:`.search`.

None of the search settings is part of a cell's key (``spec.declared_key``): the final cells are
keyed by what they declare plus the parameters the search chose, so a field added here with a
default (``sampler`` and ``startup`` were) leaves the cells and finished searches of older study
files as they were.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Callable

from ..methods import METHODS, method_config

SEARCHABLE_TRAIN = ("lr", "blr", "weight_decay", "layer_decay", "min_lr", "warmup_epochs", "batch_size",
                    "clip_grad", "epochs", "min_steps")
PRUNERS = ("asha", "hyperband", "none")
SAMPLERS = ("qmc-tpe", "tpe", "random")
MAX_CORNERS = 1024  # combinations of a space's bounds checked together (beyond: each value alone)
TPE_STARTUP = 10  # Optuna's TPE start-up trials (random draws), what `sampler: tpe` always used


@dataclass
class SearchConfig:
    trials: int = 12  # search trials per (dataset, fraction, backbone, method) before the seeds
    space: dict = field(default_factory=dict)  # method label or name -> {param: {low, high, log} | {choices}}
    pruner: str = "asha"  # asha (successive halving) | hyperband | none, on validation AUROC
    min_resource: int = 1  # validations a trial gets before it can be pruned
    reduction_factor: int = 3  # ASHA/Hyperband: keep the top 1/reduction_factor at each rung
    patience: int | None = 3  # early stopping of search trials (validations without improvement)
    seed: int = 0  # seeds the sampler and the search runs
    # qmc-tpe (the first `startup` trials from a scrambled Sobol sequence, then TPE) | tpe (TPE
    # after random start-up trials, Optuna's 10 unless `startup` is given) | random
    sampler: str = field(default="qmc-tpe", metadata={"added_later": True})
    # start-up trials before TPE (default: max(4, trials // 3), at most `trials`)
    startup: int | None = field(default=None, metadata={"added_later": True})

    def __post_init__(self):
        if self.trials < 1:
            raise ValueError(f"search.trials must be at least 1, got {self.trials}")
        if self.pruner not in PRUNERS:
            raise ValueError(f"search.pruner must be one of {PRUNERS}, got {self.pruner!r}")
        if self.min_resource < 1 or self.reduction_factor < 2:
            raise ValueError("search.min_resource must be >= 1 and reduction_factor >= 2")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"search.sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.startup is not None and not 1 <= self.startup <= self.trials:
            raise ValueError(f"search.startup must be between 1 and search.trials ({self.trials}), "
                             f"got {self.startup}")

    @property
    def startup_trials(self) -> int:
        """How many trials start the search before TPE takes over: ``startup`` if given; for
        ``tpe`` Optuna's 10 (as before the option existed); else max(4, trials // 3), at most
        ``trials`` (a search of 3 trials is all start-up)."""
        if self.startup is not None:
            return self.startup
        if self.sampler == "tpe":
            return TPE_STARTUP
        return min(self.trials, max(4, self.trials // 3))


def search_space(study, method_label: str, method_name: str) -> dict:
    """The search space of a method (by label, else by name) in ``study`` (a ``spec.StudyConfig``);
    {} when it is not searched."""
    if study.search is None:
        return {}
    space = study.search.space
    return space.get(method_label, space.get(method_name, {}))


def check_search(study) -> None:
    """Every searched parameter is a training field or an option of its method, with a valid range."""
    if study.search is None:
        return
    labels = {m.label or m.name: m for m in study.methods}
    names = {m.name: m for m in study.methods}
    for key, space in study.search.space.items():
        method = labels.get(key) or names.get(key)
        if method is None:
            raise ValueError(f"search.space: {key!r} is not a method of the study "
                             f"(labels: {', '.join(labels)})")
        options = {f.name for f in dataclasses.fields(METHODS.get(method.name).config_class)}
        if not isinstance(space, dict) or not space:
            raise ValueError(f"search.space.{key}: expected a mapping of parameters to ranges")
        for param, spec in space.items():
            if param not in SEARCHABLE_TRAIN and param not in options:
                raise ValueError(f"search.space.{key}.{param}: not searchable; choose from the training "
                                 f"fields {', '.join(SEARCHABLE_TRAIN)} or {method.name}'s options "
                                 f"{', '.join(sorted(options)) or '(none)'}")
            distribution(param, spec, f"search.space.{key}.{param}")


def distribution(param: str, spec, where: str):
    """An Optuna distribution from ``{low, high[, log]}`` or ``{choices: [...]}``."""
    import optuna.distributions as dist

    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected {{low: .., high: ..[, log: true]}} or {{choices: [..]}}, got {spec!r}")
    if set(spec) == {"choices"} and isinstance(spec["choices"], list) and spec["choices"]:
        return dist.CategoricalDistribution(spec["choices"])
    if not {"low", "high"} <= set(spec) <= {"low", "high", "log"}:
        raise ValueError(f"{where}: expected {{low: .., high: ..[, log: true]}} or {{choices: [..]}}, got {spec!r}")
    low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or not low < high:
        raise ValueError(f"{where}: low and high must be numbers with low < high, got {low!r}, {high!r}")
    if log and low <= 0:
        raise ValueError(f"{where}: a log range needs low > 0, got {low}")
    if isinstance(low, int) and isinstance(high, int):
        return dist.IntDistribution(low, high, log=log)
    return dist.FloatDistribution(float(low), float(high), log=log)


def check_space_values(study, cells: list, apply: Callable) -> None:
    """Every value a search can draw passes the checks its trials will meet, before any trial runs.

    For each (method label, backbone) row of ``cells`` (``spec.cells`` of ``study``) whose method
    is searched, the values of each parameter (a numeric range's low and high bound, plus for a
    float range one point inside it, since a trial draws floats; every choice of a choice list)
    are applied together, every combination of them (the space's corners), to the row's cell by
    ``apply`` (``spec.with_params``, what a trial does: the method's options and the
    ``TrainConfig`` re-validated, with ``RunConfig``'s own checks such as ``min_lr`` at most the
    peak lr); the method's options then go through ``methods.method_config(name, options,
    family)`` (its checks against the backbone's family). A value that fails whatever the other
    parameters take is a ValueError naming the parameter, the value, the row and the check's own
    message; values that fail only together (``min_lr`` above a low ``lr``) are named together.
    A space of more than :data:`MAX_CORNERS` corners has each value checked alone (the other
    parameters at the cell's own values)."""
    if study.search is None:
        return
    seen = set()
    for cell in cells:
        row = (cell.method, cell.backbone)
        space = search_space(study, cell.method, cell.config.method)
        if not space or row in seen:
            continue
        seen.add(row)
        key = cell.method if cell.method in study.search.space else cell.config.method
        values = {param: _checked_values(param, spec, f"search.space.{key}.{param}") for param, spec in space.items()}
        if math.prod(len(v) for v in values.values()) > MAX_CORNERS:
            corners = [((param, found),) for param, candidates in values.items() for found in candidates]
        else:
            corners = list(itertools.product(*([(param, found) for found in candidates]
                                               for param, candidates in values.items())))
        failed = {corner: error for corner in corners if (error := _failure(cell, corner, apply)) is not None}
        if not failed:
            continue
        where = f"for {cell.method} on {cell.backbone}"
        for param, candidates in values.items():
            for found in candidates:
                with_it = [corner for corner in corners if (param, found) in corner]
                if all(corner in failed for corner in with_it):
                    what, value = found
                    raise ValueError(f"search.space.{key}.{param}: {what} {_shown(value)} fails {where}: "
                                     f"{failed[with_it[0]]}")
        corner, error = next(iter(failed.items()))
        together = ", ".join(f"{param} {_shown(value)}" for param, (_, value) in corner)
        raise ValueError(f"search.space.{key}: the values {together} fail together {where} (a trial may draw "
                         f"them): {error}")


def _checked_values(param: str, spec, where: str) -> list[tuple[str, object]]:
    """(what, value) pairs to try for one range: its bounds (and one float inside it) or its choices."""
    import optuna.distributions as dist

    found = distribution(param, spec, where)
    if isinstance(found, dist.CategoricalDistribution):
        return [("the choice", choice) for choice in found.choices]
    out = [("the low bound", spec["low"]), ("the high bound", spec["high"])]
    if isinstance(found, dist.FloatDistribution):  # a trial draws floats: an int option refuses them here
        share = 0.382  # rarely a whole number, so a float range of an int option shows
        inside = (math.exp(math.log(found.low) + share * (math.log(found.high) - math.log(found.low))) if found.log
                  else found.low + share * (found.high - found.low))
        out.append(("a value inside the range,", inside))
    return out


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


def _failure(cell, corner: tuple, apply: Callable) -> str | None:
    """The error of the cell with one corner's values applied, or None when every check passes."""
    try:
        config = apply(cell, {param: value for param, (_, value) in corner}).config
        method_config(config.method, config.method_options, config.backbone.spec.family)
    except (ValueError, TypeError) as err:
        return str(err)
    return None
