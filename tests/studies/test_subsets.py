"""Label subsets per fraction (issue 26, ``subsets`` in a study file): K subsets make K cells
per seed with distinct fraction seeds and keys, fraction 1.0 keeps one, bad values are clear
errors, records carry ``subset``, the grid averages seeds x subsets and the paired differences
resample (seed, subset) units."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from medpeft.runtime.metrics import macro_auroc
from medpeft.studies import records as rec
from medpeft.studies.grid import build_grid
from medpeft.studies.paired import paired_cells, paired_difference, paired_table
from medpeft.studies.report import write_report
from medpeft.studies.spec import cells, load_study
from medpeft.studies.subsets import subset_counts

from .conftest import write_study
from .test_report import record


def by_group(grid):
    out = {}
    for c in grid:
        out.setdefault((c.dataset, c.fraction, c.backbone, c.method), []).append(c)
    return out


def test_k_subsets_make_k_cells_per_seed_with_distinct_fraction_seeds_and_keys(tmp_path):
    plain = cells(load_study(write_study(tmp_path / "p", seeds=[0, 1])))
    grid = cells(load_study(write_study(tmp_path / "s", seeds=[0, 1], subsets=3)))
    groups = by_group(grid)
    assert len(grid) == 2 * (3 * 2 + 1 * 2)  # FFT and LoRA; 3 subsets x 2 seeds at 0.5, 2 seeds at 1.0
    for (_, fraction, _, _), members in groups.items():
        if fraction == 1.0:
            assert [c.subset for c in members] == [None, None]
            assert all(c.config.data.fraction_seed == 0 and "subset" not in c.record() for c in members)
        else:
            assert len(members) == 3 * 2
            assert {(c.seed, c.subset) for c in members} == {(s, i) for s in (0, 1) for i in range(3)}
            assert all(c.config.data.fraction_seed == c.subset for c in members)
            assert all(c.config.train.seed == c.seed for c in members)
            assert all(c.record()["subset"] == c.subset for c in members)
            assert all(f"-s{c.seed}-sub{c.subset}-" in c.key for c in members)  # the run folder is runs/<key>
    assert len({c.key for c in grid}) == len(grid)
    # fraction 1.0 is untouched: the same cells (keys, configs) as without subsets
    full = {c.key: c.config.to_dict() for c in plain if c.fraction == 1.0}
    assert {c.key: c.config.to_dict() for c in grid if c.fraction == 1.0} == full
    # subset 0 trains on the same labels as the study's one subset without `subsets`, under its own key
    zero = {(c.method, c.seed): c for c in grid if c.fraction == 0.5 and c.subset == 0}
    for c in plain:
        if c.fraction == 0.5:
            assert zero[(c.method, c.seed)].config.to_dict() == c.config.to_dict()
            assert zero[(c.method, c.seed)].key != c.key


def test_a_mapping_gives_each_fraction_its_own_count(tmp_path):
    grid = cells(load_study(write_study(tmp_path / "s", fractions=[0.1, 0.5, 1.0], subsets={0.1: 4})))
    counts = {(c.fraction, c.method): len(members) for (_, _, _, _), members in by_group(grid).items()
              for c in members[:1]}
    assert counts == {(0.1, "FFT"): 4, (0.1, "LoRA"): 4, (0.5, "FFT"): 1, (0.5, "LoRA"): 1,
                      (1.0, "FFT"): 1, (1.0, "LoRA"): 1}
    assert {c.subset for c in grid if c.fraction != 0.1} == {None}
    assert sorted(c.config.data.fraction_seed for c in grid if c.fraction == 0.1 and c.method == "FFT") == [0, 1, 2, 3]
    assert subset_counts({"0.1": 2}, [0.1, 1.0]) == {0.1: 2, 1.0: None}  # a key written as text


@pytest.mark.parametrize("subsets, message", [
    (0, "at least 1, got 0"),
    (-2, "at least 1, got -2"),
    ({0.5: 0}, "subsets of fraction 0.5 must be a whole number of label subsets, at least 1, got 0"),
    ({0.25: 3}, "subsets names fraction 0.25, which is not one of the study's fractions"),
    ({1.0: 3}, "fraction 1 has one label subset"),
    ({0.5: 2.5}, "got 2.5"),
    (True, "got True"),
])
def test_bad_subsets_are_clear_errors(tmp_path, subsets, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_study(write_study(tmp_path / "s", subsets=subsets))


def test_subsets_and_vary_subset_are_not_combined(tmp_path):
    with pytest.raises(ValueError, match="subsets and vary_subset both choose the label subsets"):
        load_study(write_study(tmp_path / "s", subsets=2, vary_subset=True))


# --- records, grid and paired units -------------------------------------------------------------

def runs(tmp_path, rng, labels, label, method, signal, seeds=(0, 1), subsets=(0, 1, 2)):
    """Records of a row at 1%, one per (seed, subset), each with its test scores saved."""
    out = []
    for seed in seeds:
        for subset in subsets:
            folder = tmp_path / f"{label}-{seed}-{subset}"
            folder.mkdir()
            scores = np.round(labels * (0.3 + signal) + rng.random(labels.shape), 3)
            np.savez(folder / "predictions-test.npz", scores=scores, labels=labels)
            out.append({**record(label, method, seed, macro_auroc(scores, labels, "binary"), run_dir=str(folder)),
                        "subset": subset})
    return out


def test_the_grid_averages_seeds_and_subsets_and_the_pairs_are_seed_subset_units(tmp_path):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, (80, 1))
    records = runs(tmp_path, rng, labels, "FFT", "fft", 0.0) + runs(tmp_path, rng, labels, "LoRA", "lora", 0.4)
    rec.check_records(records)  # the same seed twice is fine: the subsets differ
    with pytest.raises(ValueError, match="with seed 0 and label subset 1"):
        rec.check_records(records + [dict(records[1])])
    grid = build_grid(records, "auroc", n_bootstrap=50)
    lora = grid.get(("LoRA", "vit_tiny"), ("PneumoniaMNIST", 0.01))
    assert len(lora.records) == 6 and (lora.n_seeds, lora.n_subsets) == (2, 3)
    assert [(r["seed"], r["subset"]) for r in lora.records] == [(s, i) for s in (0, 1) for i in range(3)]
    assert lora.mean == pytest.approx(np.mean([rec.auroc(r) for r in records if r["label"] == "LoRA"]), abs=1e-12)
    assert lora.ci_method == "bootstrap"
    [paired] = paired_cells(grid, "fft", n_bootstrap=200, seed=0)
    assert paired.result.n_units == 6
    # the same as pairing the units by hand, (seed, subset) with (seed, subset)
    base = {(r["seed"], r["subset"]): r for r in records if r["label"] == "FFT"}
    sides = [[], []]
    for r in lora.records:
        for side, run in zip(sides, (r, base[(r["seed"], r["subset"])])):
            with np.load(f"{run['run_dir']}/predictions-test.npz") as npz:
                side.append((npz["scores"], npz["labels"], "binary"))
    direct = paired_difference(sides[0], sides[1], n_bootstrap=200, seed=0)
    assert (paired.result.delta, paired.result.ci) == (direct.delta, direct.ci)
    assert paired.result.delta == pytest.approx(np.mean([rec.auroc(r) - rec.auroc(base[(r["seed"], r["subset"])])
                                                         for r in lora.records]), abs=1e-12)
    caption = paired_table(grid, [paired], n_bootstrap=200).caption
    assert "the mean over the (seed, label subset) units both rows have (6)" in caption
    assert "a percentile bootstrap over seeds, label subsets and test items together" in caption


def test_units_pair_only_the_same_seed_and_subset(tmp_path):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, (40, 1))
    records = runs(tmp_path, rng, labels, "FFT", "fft", 0.0, subsets=(0, 1)) + runs(
        tmp_path, rng, labels, "LoRA", "lora", 0.2, subsets=(1, 2))
    [paired] = paired_cells(build_grid(records, "auroc", n_bootstrap=0), "fft", n_bootstrap=10)
    assert paired.result.n_units == 2  # (0, 1) and (1, 1)
    disjoint = [r for r in records if not (r["label"] == "LoRA" and r["subset"] == 1)]
    [paired] = paired_cells(build_grid(disjoint, "auroc", n_bootstrap=0), "fft", n_bootstrap=10)
    assert paired.result is None and paired.reason == "no seed and subset shared with FFT"


def test_the_report_says_seeds_x_subsets_and_lists_the_subset(tmp_path):
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, (60, 1))
    records = runs(tmp_path, rng, labels, "FFT", "fft", 0.0) + runs(tmp_path, rng, labels, "LoRA", "lora", 0.3)
    files = write_report(records, tmp_path / "report", title="t", command="c", n_bootstrap=20)
    text = files.markdown.read_text()
    assert "Mean ± std over 2 seeds x 3 label subsets" in text
    with open(tmp_path / "report" / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[5:7] == ["seed", "subset"]
    assert sorted((r["seed"], r["subset"]) for r in rows if r["label"] == "FFT") == \
        [(str(s), str(i)) for s in (0, 1) for i in range(3)]
    # without subsets the note and the columns are as before
    plain = [dict(r) for r in records if r["subset"] == 0]
    for r in plain:
        del r["subset"]
    files = write_report(plain, tmp_path / "plain", title="t", command="c", n_bootstrap=0)
    assert "Mean ± std over 2 seeds." in files.markdown.read_text()
    with open(tmp_path / "plain" / "results.csv", newline="") as handle:
        assert "subset" not in next(csv.reader(handle))
