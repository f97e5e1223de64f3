"""The search stage of a study (``search:`` in a study file), before its final cells.

One Optuna study per (dataset, fraction, backbone, method) (:func:`open_search`) samples the
method's search space (``searchconfig.search_space``): by default (``sampler: qmc-tpe``) its
first ``startup`` trials are space-filling points of a scrambled Sobol sequence (Optuna's
QMCSampler, seeded from the search seed and the group; trial k takes point k) and the rest come
from TPE (:func:`search_sampler`). Each trial reports its validation AUROC after every
validation (:func:`pruning_reporter`), and an ASHA (successive-halving) or Hyperband pruner stops
the weak ones; early stopping (``search.patience``) ends the rest. When a search has its trials,
the best configuration (:func:`best_params`) is what the final stage runs with every seed and
scores on test; a chosen value in the outer 5% of its range is flagged (:func:`at_edge`,
:func:`edge_messages`). The engine (:mod:`.engine`) claims and runs the trials; this module holds
what is particular to searching.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
import zlib
from typing import Callable

import numpy as np
import optuna
import optuna.distributions as d
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from .searchconfig import SearchConfig, distribution, search_space
from .spec import Cell, StudyConfig, with_params
from .trials import VALIDATED

EDGE = 0.05  # a chosen value this close to a bound (share of the range, log-scale if log) is at the edge


def open_search(study: StudyConfig, storage: RDBStorage, group: str) -> optuna.Study:
    """The search study of ``group`` in the storage, with the study file's pruner (the engine sets
    each trial's sampler, :func:`search_sampler`, once the trial is claimed)."""
    search = study.search
    pruner = {"asha": optuna.pruners.SuccessiveHalvingPruner(min_resource=search.min_resource,
                                                             reduction_factor=search.reduction_factor),
              "hyperband": optuna.pruners.HyperbandPruner(min_resource=search.min_resource,
                                                          reduction_factor=search.reduction_factor),
              "none": optuna.pruners.NopPruner()}[search.pruner]
    return optuna.create_study(study_name=f"{study.name}:search:{group}", storage=storage,
                               direction="maximize", load_if_exists=True, pruner=pruner,
                               sampler=optuna.samplers.TPESampler(seed=search.seed, constant_liar=True))


def best_params(search: optuna.Study, trials: int, group: str) -> dict | None:
    """The best params of a finished search of ``trials`` trials (None while it needs or runs
    trials)."""
    found = search.get_trials(deepcopy=False)
    finished = [t for t in found if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    busy = [t for t in found if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    if len(finished) < trials or busy:
        return None
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    if not complete:
        raise ValueError(f"search {group}: every trial was pruned; widen the search space")
    return dict(search.best_trial.params)


def needs_trials(search: optuna.Study, trials: int) -> bool:
    """Whether a search of ``trials`` trials has one to start (or a waiting one to run)."""
    found = search.get_trials(deepcopy=False)
    started = [t for t in found if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)]
    waiting = [t for t in found if t.state == TrialState.WAITING]
    return len(started) < trials or bool(waiting)


SURPLUS = "surplus"  # a search trial's user attr: asked beyond the search's count, closed unrun


def surplus(search: optuna.Study, trial: optuna.Trial, trials: int) -> bool:
    """Close ``trial`` unrun when it is one too many: workers that find a search one trial short
    at the same moment (e.g. all resuming after a database outage) each ask for one, and Optuna
    numbers trials in order, so a freshly asked trial numbered ``trials`` or more is surplus (a
    queued retry keeps its attributes and is never surplus). It is failed with ``surplus`` set,
    which samplers, pruners and reports ignore."""
    if trial.number < trials or trial.user_attrs:
        return False
    trial.set_user_attr(SURPLUS, True)
    search.tell(trial, state=TrialState.FAIL)
    return True


def searched_cell(study: StudyConfig, cell: Cell, trial: optuna.Trial) -> Cell:
    """The cell as search trial ``trial`` runs it: its params drawn from the search space (after
    :func:`search_sampler` is set), the search seed, and the search patience unless the cell has
    its own."""
    space = search_space(study, cell.method, cell.config.method)
    params = {name: suggest(trial, name, distribution(name, spec, name)) for name, spec in space.items()}
    searched = with_params(_with_seed(cell, study.search.seed), params)
    if searched.config.train.patience is None and study.search.patience:
        searched = _with_patience(searched, study.search.patience)
    return searched


def pruning_reporter(trial: optuna.Trial) -> Callable[[int, dict], None]:
    """The ``on_validation`` hook of a search trial: reports each validation AUROC at its
    validation's number in the trial's life (ASHA's resource is validations) and prunes the trial
    when the pruner says so. The epochs reported are kept in the trial (``trials.VALIDATED``), so a
    trial resumed after its worker died (``trials.resume_in_place``) continues its steps where it
    stopped, and a validation repeated after the resume (the kill fell between it and its
    checkpoint) keeps its step and is reported once."""
    validated = [int(e) for e in trial.user_attrs.get(VALIDATED, [])]

    def report(epoch: int, val: dict) -> None:
        if epoch not in validated:
            validated.append(epoch)
            trial.set_user_attr(VALIDATED, validated)  # before the value: a kill between them repeats this step
        step = validated.index(epoch) + 1
        with warnings.catch_warnings():  # a repeated validation: Optuna keeps the first value (the same one)
            warnings.filterwarnings("ignore", message=".*is already reported.*")
            trial.report(val["auroc"], step=step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} (val AUROC {val['auroc']:.4f})")
    return report


def suggest(trial: optuna.Trial, name: str, dist):
    """A value for ``name`` from an Optuna distribution (enqueued values are returned as given)."""
    if isinstance(dist, d.CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, d.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, log=dist.log)


def trial_sampler(search_seed: int, number: int) -> optuna.samplers.TPESampler:
    """The sampler that draws search trial ``number`` with ``sampler: tpe``: one seed per trial, so
    the search is reproducible with one worker and two workers asking at the same moment do not
    draw the same start-up configuration. The seed is mixed through numpy's SeedSequence:
    consecutive small seeds given straight to ``RandomState`` make correlated first draws (seeds
    0 and 3 both start at 0.55 of the range), which put all four start-up trials of a search in
    15% of a log range."""
    return optuna.samplers.TPESampler(seed=_mixed(search_seed, number), constant_liar=True)


def search_sampler(search: SearchConfig, group: str, number: int, space: dict) -> optuna.samplers.BaseSampler:
    """The sampler that draws trial ``number`` of ``group``'s search over ``space`` (the study
    file's ranges of the method), set as ``study.sampler`` after the trial is claimed:

    - ``qmc-tpe``: trials 0 .. startup-1 take point ``number`` of a scrambled Sobol sequence
      (:class:`StartupQMC`), so the start-up trials of a range fill it (4 trials: one in each
      quarter); later trials come from TPE (which draws at random while fewer than ``startup``
      trials have finished, as with several workers at once).
    - ``tpe``: TPE with ``startup`` random start-up trials (Optuna's 10 by default; with the
      default this is the sampler of the searches before the option, draw for draw).
    - ``random``: random draws, one seed per trial.

    Optuna's TPESampler has no ``independent_sampler`` (its start-up draws are its own
    RandomSampler's), so the switch from QMC to TPE is made here, by trial number."""
    startup = search.startup_trials
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=_mixed(search.seed, number))
    if search.sampler == "qmc-tpe" and number < startup:
        distributions = {name: distribution(name, spec, name) for name, spec in space.items()}
        return StartupQMC(distributions, number, seed=_mixed(search.seed, zlib.crc32(group.encode())))
    if search.sampler == "tpe" and search.startup is None:
        return trial_sampler(search.seed, number)
    return optuna.samplers.TPESampler(seed=_mixed(search.seed, number), n_startup_trials=startup,
                                      constant_liar=True)


class StartupQMC(optuna.samplers.QMCSampler):
    """Optuna's QMCSampler (scrambled Sobol) for one start-up trial: its space is the study file's
    (Optuna's own infers it from the first trial, which it draws at random) and its point is the
    trial's number (Optuna's own counts points in a study attribute that two workers may read at
    the same moment; trial numbers are unique). Sobol's first 2^m points put one point in each
    1/2^m of every axis."""

    def __init__(self, space: dict, number: int, seed: int):
        with warnings.catch_warnings():  # "QMCSampler is experimental": pinned Optuna, tested here
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(qmc_type="sobol", scramble=True, seed=seed, warn_independent_sampling=False)
        self._space = dict(space)
        self._number = number

    def infer_relative_search_space(self, study, trial) -> dict:
        return dict(self._space)

    def _find_sample_id(self, study, search_space) -> int:
        return self._number

    def sample_relative(self, study, trial, search_space) -> dict:
        with warnings.catch_warnings():  # scipy: "balance properties ... require n to be a power of 2"
            warnings.filterwarnings("ignore", message=".*balance properties of Sobol.*")
            return super().sample_relative(study, trial, search_space)


def at_edge(params: dict, space: dict) -> list[str]:
    """The numeric parameters whose chosen value lies in the outer :data:`EDGE` of its range
    (measured in log space for a log range), as ``"name:low"`` / ``"name:high"``; choices never
    are. A best value at an edge says the optimum may lie outside the range."""
    return [f"{name}:{side}" for name, side, _ in _edges(params, space)]


def edge_messages(group: str, params: dict, space: dict) -> list[str]:
    """One warning per parameter of :func:`at_edge`, e.g. ``lr chose 9.6e-3, at the high edge of
    [1e-4, 1e-2]: widen the range``."""
    return [f"search {group}: {name} chose {_short(params[name])}, at the {side} edge of "
            f"[{_short(dist.low)}, {_short(dist.high)}]: widen the range"
            for name, side, dist in _edges(params, space)]


def _edges(params: dict, space: dict) -> list[tuple[str, str, d.BaseDistribution]]:
    out = []
    for name, spec in space.items():
        dist = distribution(name, spec, name)
        if name not in params or isinstance(dist, d.CategoricalDistribution):
            continue
        low, high, value = dist.low, dist.high, params[name]
        if dist.log:
            low, high, value = math.log(low), math.log(high), math.log(value)
        share = (value - low) / (high - low)
        if share <= EDGE:
            out.append((name, "low", dist))
        elif share >= 1 - EDGE:
            out.append((name, "high", dist))
    return out


def _short(value) -> str:
    """A value as a person writes it: 9.6e-3, 1e-4, 0.5, 16."""
    if isinstance(value, int) or value == 0 or 0.1 <= abs(value) < 1e4:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _mixed(*entropy: int) -> int:
    return int(np.random.SeedSequence(list(entropy)).generate_state(1)[0])


def _with_seed(cell: Cell, seed: int) -> Cell:
    config = dataclasses.replace(cell.config, train=dataclasses.replace(cell.config.train, seed=seed))
    return dataclasses.replace(cell, config=config, seed=seed)


def _with_patience(cell: Cell, patience: int) -> Cell:
    config = dataclasses.replace(cell.config, train=dataclasses.replace(cell.config.train, patience=patience))
    return dataclasses.replace(cell, config=config)
