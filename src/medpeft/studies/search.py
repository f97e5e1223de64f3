"""The search stage of a study (``search:`` in a study file), before its final cells.

One Optuna study per (dataset, fraction, backbone, method) (:func:`open_search`): TPE samples
the method's search space (``spec.search_space``), each trial reports its validation AUROC
after every validation (:func:`pruning_reporter`), and an ASHA (successive-halving) or
Hyperband pruner stops the weak ones; early stopping (``search.patience``) ends the rest. When
a search has its trials, the best configuration (:func:`best_params`) is what the final stage
runs with every seed and scores on test. The engine (:mod:`.engine`) claims and runs the trials;
this module holds what is particular to searching.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import optuna
import optuna.distributions as d
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from .spec import Cell, StudyConfig, distribution, search_space, with_params


def open_search(study: StudyConfig, storage: RDBStorage, group: str) -> optuna.Study:
    """The search study of ``group`` in the storage, with the study file's pruner."""
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


def searched_cell(study: StudyConfig, cell: Cell, trial: optuna.Trial) -> Cell:
    """The cell as search trial ``trial`` runs it: its params drawn from the search space (after
    :func:`trial_sampler` is set), the search seed, and the search patience unless the cell has
    its own."""
    space = search_space(study, cell.method, cell.config.method)
    params = {name: suggest(trial, name, distribution(name, spec, name)) for name, spec in space.items()}
    searched = with_params(_with_seed(cell, study.search.seed), params)
    if searched.config.train.patience is None and study.search.patience:
        searched = _with_patience(searched, study.search.patience)
    return searched


def pruning_reporter(trial: optuna.Trial) -> Callable[[int, dict], None]:
    """The ``on_validation`` hook of a search trial: reports each validation AUROC (ASHA's
    resource is validations) and prunes the trial when the pruner says so."""
    validations = []

    def report(epoch: int, val: dict) -> None:
        validations.append(val["auroc"])
        trial.report(val["auroc"], step=len(validations))
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
    """The sampler that draws search trial ``number``: one seed per trial, so the search is
    reproducible with one worker and two workers asking at the same moment do not draw the same
    start-up configuration. The seed is mixed through numpy's SeedSequence: consecutive small
    seeds given straight to ``RandomState`` make correlated first draws (seeds 0 and 3 both start
    at 0.55 of the range), which put all four start-up trials of a search in 15% of a log range."""
    mixed = int(np.random.SeedSequence([search_seed, number]).generate_state(1)[0])
    return optuna.samplers.TPESampler(seed=mixed, constant_liar=True)


def _with_seed(cell: Cell, seed: int) -> Cell:
    config = dataclasses.replace(cell.config, train=dataclasses.replace(cell.config.train, seed=seed))
    return dataclasses.replace(cell, config=config, seed=seed)


def _with_patience(cell: Cell, patience: int) -> Cell:
    config = dataclasses.replace(cell.config, train=dataclasses.replace(cell.config.train, patience=patience))
    return dataclasses.replace(cell, config=config)
