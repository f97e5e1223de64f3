"""The search sampler and its edge warning: a space-filling start (scrambled Sobol, one point per
trial number) then TPE, reproducible draws, the legacy ``tpe`` sampler draw for draw, the
``search:`` fields' validation, cell keys that ignore the search settings, and a chosen value at
the edge of its range warned about and in the records (an engine whose cells train in no time)."""
from __future__ import annotations

import io

import math
from pathlib import Path

import optuna
import pytest
from rich.console import Console
from scipy.stats import qmc

from medpeft.studies.engine import Engine
from medpeft.studies.search import StartupQMC, at_edge, edge_messages, search_sampler, trial_sampler
from medpeft.studies.searchconfig import SearchConfig
from medpeft.studies.spec import cells, load_study

from .conftest import write_study

LR = {"lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True}}


def share(lr: float) -> float:
    """Where ``lr`` lies in the log range [1e-4, 1e-2], from 0 to 1."""
    return (math.log10(lr) + 4) / 2


def draws(search: SearchConfig, n: int, group: str = "g", value=lambda lr: 0.5) -> list[tuple[str, float]]:
    """(sampler class, share of the range) of ``n`` trials drawn as the engine draws them."""
    study = optuna.create_study(direction="maximize")
    out = []
    for _ in range(n):
        trial = study.ask()
        study.sampler = search_sampler(search, group, trial.number, LR)
        lr = trial.suggest_float("lr", 1.0e-4, 1.0e-2, log=True)
        out.append((type(study.sampler).__name__, share(lr)))
        study.tell(trial, value(lr))
    return out


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("group", ["synth-f1-tiny-LoRA", "other"])
def test_the_start_up_trials_fill_the_range(seed, group):
    """8 Sobol points of one axis put one point in each eighth of it, whatever the scramble: the
    sorted draws never leave a gap of a quarter of the log range."""
    found = draws(SearchConfig(trials=8, startup=8, seed=seed), 8, group)
    assert {name for name, _ in found} == {"StartupQMC"}
    units = sorted(u for _, u in found)
    assert sorted(int(u * 8) for u in units) == list(range(8))
    assert max(b - a for a, b in zip([0.0, *units], [*units, 1.0])) < 0.25


def test_the_default_start_is_one_draw_per_quarter_then_tpe():
    search = SearchConfig()  # 12 trials, qmc-tpe, startup max(4, 12 // 3) = 4
    assert (search.sampler, search.startup_trials) == ("qmc-tpe", 4)
    found = draws(search, 12, value=lambda lr: -abs(share(lr) - 0.75))
    assert [name for name, _ in found] == ["StartupQMC"] * 4 + ["TPESampler"] * 8
    assert sorted(int(u * 4) for _, u in found[:4]) == [0, 1, 2, 3]


def test_trial_k_takes_sobol_point_k_whatever_the_trials_before():
    """The point is the trial's number (unique in the storage), not a counter two workers could
    read at once: a fresh study asked for trial 5 gets point 5 of scipy's sequence."""
    search = SearchConfig(trials=8, startup=8, seed=3)
    sampler = search_sampler(search, "g", 5, LR)
    assert isinstance(sampler, StartupQMC)
    study = optuna.create_study(sampler=sampler)
    lr = study.ask().suggest_float("lr", 1.0e-4, 1.0e-2, log=True)
    points = qmc.Sobol(1, scramble=True, seed=sampler._seed).random(8)[:, 0]
    assert share(lr) == pytest.approx(points[5])
    assert share(lr) != pytest.approx(points[0])


def test_tpe_models_the_trials_after_the_start():
    """Trials from ``startup`` on are TPE's own (multivariate TPE records the params it sampled
    relatively in the trial's system attrs); the start-up trials are not."""
    search = SearchConfig(trials=10, startup=4)
    study = optuna.create_study(direction="maximize")
    for _ in range(10):
        trial = study.ask()
        study.sampler = search_sampler(search, "g", trial.number, LR)
        lr = trial.suggest_float("lr", 1.0e-4, 1.0e-2, log=True)
        study.tell(trial, -abs(share(lr) - 0.3))
    modelled = [any(k.startswith("tpe:relative_params") for k in t.system_attrs) for t in study.trials]
    assert modelled == [False] * 4 + [True] * 6


def test_draws_are_reproducible_and_differ_by_seed_and_group():
    first = draws(SearchConfig(), 6)
    assert draws(SearchConfig(), 6) == first
    assert [u for _, u in draws(SearchConfig(seed=1), 4)] != [u for _, u in first[:4]]
    assert [u for _, u in draws(SearchConfig(), 4, group="h")] != [u for _, u in first[:4]]


def test_the_tpe_sampler_is_the_old_one_draw_for_draw():
    """``sampler: tpe`` without ``startup`` is what searches used before the option existed."""
    search = SearchConfig(trials=4, sampler="tpe")
    assert search.startup_trials == 10
    for number in range(4):
        sampler = search_sampler(search, "g", number, LR)
        old = trial_sampler(search.seed, number)
        assert isinstance(sampler, optuna.samplers.TPESampler) and sampler._n_startup_trials == 10
        assert sampler._rng.rng.randint(1 << 30) == old._rng.rng.randint(1 << 30)
    assert [name for name, _ in draws(SearchConfig(trials=4, sampler="random"), 4)] == ["RandomSampler"] * 4
    assert search_sampler(SearchConfig(trials=9, sampler="tpe", startup=3), "g", 5, LR)._n_startup_trials == 3


def test_a_categorical_and_an_int_space_start_balanced():
    space = {"rank": {"choices": [4, 8, 16, 32]}, "warmup_epochs": {"low": 0, "high": 3}}
    study = optuna.create_study()
    seen = []
    for _ in range(4):
        trial = study.ask()
        study.sampler = search_sampler(SearchConfig(), "g", trial.number, space)
        seen.append((trial.suggest_categorical("rank", [4, 8, 16, 32]), trial.suggest_int("warmup_epochs", 0, 3)))
        study.tell(trial, 0.0)
    assert sorted(r for r, _ in seen) == [4, 8, 16, 32]  # one per quarter of the first axis


@pytest.mark.parametrize("spec, value, expected", [
    (LR["lr"], 9.6e-3, ["lr:high"]),        # log: 0.991 of the range
    (LR["lr"], 1.2e-4, ["lr:low"]),         # log: 0.04
    (LR["lr"], 1.0e-3, []),                 # log: the middle
    (LR["lr"], 8.0e-3, ["lr:high"]),        # log: 0.952
    (LR["lr"], 7.5e-3, []),                 # log: 0.937
    ({"low": 0.0, "high": 1.0}, 0.96, ["lr:high"]),
    ({"low": 0.0, "high": 1.0}, 0.04, ["lr:low"]),
    ({"low": 0.0, "high": 1.0}, 0.5, []),
    ({"low": 0.0, "high": 1.0}, 0.94, []),  # linear: inside; on a log range 0.94 would be far up too
    ({"low": 1.0e-4, "high": 1.0e-2}, 9.0e-4, []),   # linear 0.08: inside (log 0.48)
    ({"low": 1.0e-4, "high": 1.0e-2}, 5.0e-4, ["lr:low"]),  # linear 0.04
    ({"choices": [1.0e-4, 1.0e-2]}, 1.0e-2, []),  # choices are never at an edge
])
def test_edges_on_log_and_linear_ranges(spec, value, expected):
    assert at_edge({"lr": value}, {"lr": spec}) == expected


def test_edges_of_int_ranges_and_the_message():
    space = {"warmup_epochs": {"low": 0, "high": 10}, "rank": {"low": 2, "high": 64, "log": True}}
    assert at_edge({"warmup_epochs": 0, "rank": 64}, space) == ["warmup_epochs:low", "rank:high"]
    assert at_edge({"warmup_epochs": 5, "rank": 8}, space) == []
    assert at_edge({}, space) == []  # a parameter the search did not choose
    assert edge_messages("synth-f1-tiny-LoRA", {"lr": 9.6e-3}, LR) == [
        "search synth-f1-tiny-LoRA: lr chose 9.6e-3, at the high edge of [1e-4, 1e-2]: widen the range"]
    assert edge_messages("g", {"rank": 2}, space) == ["search g: rank chose 2, at the low edge of [2, 64]: widen the range"]


@pytest.mark.parametrize("values, message", [
    ({"sampler": "cmaes"}, "search.sampler must be one of"),
    ({"trials": 4, "startup": 5}, "search.startup must be between 1 and search.trials (4), got 5"),
    ({"startup": 0}, "search.startup must be between 1"),
    ({"trials": 0}, "search.trials must be at least 1"),
])
def test_search_fields_are_validated(values, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SearchConfig(**values)


def test_the_default_start_up():
    assert [SearchConfig(trials=n).startup_trials for n in (1, 3, 4, 12, 13, 30)] == [1, 3, 4, 4, 4, 10]
    assert SearchConfig(trials=30, startup=6).startup_trials == 6


def test_search_settings_are_not_in_cell_keys(tmp_path):
    """A study file written before ``sampler``/``startup`` loads with the new default and keeps
    every cell's key (the searched cells are keyed by the chosen params, not by how they were found)."""
    old = load_study(write_study(tmp_path / "old", search={"trials": 4, "space": {"LoRA": LR}}))
    assert (old.search.sampler, old.search.startup, old.search.startup_trials) == ("qmc-tpe", None, 4)
    new = load_study(write_study(tmp_path / "new", search={"trials": 4, "space": {"LoRA": LR},
                                                           "sampler": "tpe", "startup": 2}))
    assert [c.key for c in cells(old)] == [c.key for c in cells(new)]
    with pytest.raises(ValueError, match="search.startup must be between 1 and search.trials"):
        load_study(write_study(tmp_path / "bad", search={"trials": 4, "startup": 8, "space": {"LoRA": LR}}))


class InstantEngine(Engine):
    """Cells that 'train' at once: validation AUROC rises with the learning rate."""

    def train_cell(self, cell, path, on_validation):
        path.mkdir(parents=True, exist_ok=True)
        lr = cell.config.train.lr  # None for FFT, which is not searched here (blr)
        auroc = 0.5 + 0.4 * share(lr) if lr is not None else 0.7
        if on_validation is not None:
            on_validation(0, {"auroc": auroc})
        return {"history": [{"epoch": 0, "val_auroc": auroc}], "val": {"auroc": auroc},
                "test": {"auroc": auroc}}


def test_a_search_at_the_edge_of_its_range_warns_and_marks_its_records(tmp_path):
    path = write_study(tmp_path / "edge", name="edge", fractions=[1.0],
                       search={"trials": 6, "pruner": "none", "space": {"LoRA": LR}})
    console = Console(record=True, width=200, file=io.StringIO())  # a file of its own: warnings stay on it
    engine = InstantEngine(load_study(path), Path(path).parent, console=console)
    engine.work()
    group = next(c.group for c in engine.cells if c.method == "LoRA")
    trials = engine.search_study(group).get_trials(deepcopy=False)
    assert len(trials) == 6
    assert sorted(int(share(t.params["lr"]) * 4) for t in trials if t.number < 4) == [0, 1, 2, 3]
    best = engine.search_result(group)["lr"]
    assert share(best) >= 0.95  # rising AUROC: the search ends at the top of the range
    records = {r["label"]: r for r in engine.records()}
    assert records["LoRA"]["at_edge"] == ["lr:high"] and records["FFT"]["at_edge"] == []
    text = " ".join(console.export_text().split())
    assert f"search {group}: lr chose " in text and "at the high edge of [1e-4, 1e-2]: widen the range" in text
    assert text.count("widen the range") == 1  # once per group, not once per seed


def test_the_report_table_marks_a_cell_searched_at_an_edge():
    from medpeft.studies.grid import build_grid
    from medpeft.studies.tables import AT_EDGE, AT_EDGE_FOOTNOTE, study_table

    def record(label, seed, edge):
        return {"dataset": "d", "fraction": 1.0, "label": label, "method": "lora", "backbone": "b", "seed": seed,
                "variant": {}, "params": {"lr": 9.6e-3}, "run_dir": "r", "at_edge": edge,
                "metrics": {"test": {"auroc": 0.8 + 0.01 * seed}, "steps": 100}}

    records = [record("edge", 0, ["lr:high"]), record("edge", 1, ["lr:high"]), record("inside", 0, []),
               record("inside", 1, [])]
    table = study_table(build_grid(records, "auroc", n_bootstrap=0), title="t", baseline="inside")
    cells = {row[0]: row[1] for row in table.rows}
    assert cells["edge"].endswith(AT_EDGE) and AT_EDGE not in cells["inside"]
    assert AT_EDGE_FOOTNOTE in table.caption
