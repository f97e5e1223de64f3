"""Paired differences to the baseline row (issue 26): Δ against a direct computation with
``runtime.metrics.macro_auroc``, the paired CI (zero for identical rows, excluding 0 for a real
signal, including it for noise, narrower than the two rows' own CIs on correlated data), the
refusal of unpaired items, the report's table and CSV, and the "still improving" mark."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from medpeft.runtime.metrics import macro_auroc
from medpeft.studies import records as rec
from medpeft.studies.bootstrap import bootstrap_seed_mean
from medpeft.studies.grid import build_grid
from medpeft.studies.paired import paired_cells, paired_difference
from medpeft.studies.report import write_report
from medpeft.studies.tables import study_table

from .test_report import cells, record, table_of


def units_of(rng, n=80, seeds=3, task="binary", noise=0.8):
    """Per seed (scores, labels, task) of the same n test items, scores weakly informative."""
    k = {"binary": 1, "multiclass": 3, "multilabel": 4}[task]
    labels = rng.integers(0, k if task == "multiclass" else 2, (n, 1 if task != "multilabel" else k))
    truth = np.eye(k)[labels[:, 0]] if task == "multiclass" else labels
    return [(np.round(truth * 0.3 + rng.random((n, k)) * noise, 2), labels, task) for _ in range(seeds)], truth


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_identical_predictions_differ_by_exactly_zero(task):
    units, _ = units_of(np.random.default_rng(0), task=task)
    result = paired_difference(units, [(s.copy(), l.copy(), t) for s, l, t in units], n_bootstrap=200, seed=0)
    assert result.delta == 0.0 and result.ci == (0.0, 0.0) and result.n_units == 3
    assert not result.significant


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_a_clear_signal_on_positives_is_significant_and_delta_is_the_direct_difference(task):
    baseline, truth = units_of(np.random.default_rng(1), n=120, task=task)
    method = [(s + 0.25 * truth, l, t) for s, l, t in baseline]
    result = paired_difference(method, baseline, n_bootstrap=300, seed=0)
    direct = np.mean([macro_auroc(m[0], m[1], task) - macro_auroc(b[0], b[1], task)
                      for m, b in zip(method, baseline)])
    assert result.delta == pytest.approx(direct, abs=1e-12) and result.delta > 0.05
    low, high = result.ci
    assert 0.0 < low < result.delta < high and result.significant


def test_a_difference_that_is_pure_noise_has_a_ci_around_zero():
    """Two seeds with the rows' predictions swapped: the true difference is 0 by symmetry."""
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, (100, 1))
    a, b = (np.round(labels * 0.3 + rng.random((100, 1)), 2) for _ in range(2))
    assert abs(macro_auroc(a, labels, "binary") - macro_auroc(b, labels, "binary")) > 0.02  # not trivially 0
    result = paired_difference([(a, labels, "binary"), (b, labels, "binary")],
                               [(b, labels, "binary"), (a, labels, "binary")], n_bootstrap=500, seed=0)
    assert result.delta == 0.0
    low, high = result.ci
    assert low < -0.01 and high > 0.01 and not result.significant


def test_units_scored_on_different_items_are_refused():
    units, _ = units_of(np.random.default_rng(3))
    other = [(s, 1 - l, t) for s, l, t in units]
    with pytest.raises(ValueError, match="different test items"):
        paired_difference(units, other, n_bootstrap=10)
    with pytest.raises(ValueError, match="different test items"):
        paired_difference(units, [(s[:-1], l[:-1], t) for s, l, t in units], n_bootstrap=10)
    with pytest.raises(ValueError, match="pair them by seed"):
        paired_difference(units, units[:2], n_bootstrap=10)
    with pytest.raises(ValueError, match="task"):
        paired_difference(units, [(s, l, "multilabel") for s, l, _ in units], n_bootstrap=10)


def test_pairing_is_narrower_than_the_difference_of_the_rows_own_cis_on_correlated_data():
    rng = np.random.default_rng(4)
    baseline, truth = units_of(rng, n=100, seeds=3)
    method = [(s + 0.05 * truth + 0.02 * rng.random(s.shape), l, t) for s, l, t in baseline]
    paired = paired_difference(method, baseline, n_bootstrap=300, seed=0)
    labels = baseline[0][1]
    m_low, m_high = bootstrap_seed_mean([s for s, _, _ in method], labels, "binary", 300, 0)
    b_low, b_high = bootstrap_seed_mean([s for s, _, _ in baseline], labels, "binary", 300, 0)
    unpaired = (m_low - b_high, m_high - b_low)
    assert m_low < b_high  # the rows' own CIs overlap ...
    assert paired.significant  # ... yet the paired difference is clear
    assert paired.ci[1] - paired.ci[0] < 0.5 * (unpaired[1] - unpaired[0])


# --- in the report ------------------------------------------------------------------------------

def runs(tmp_path, rng, labels, label, method, signal, seeds=(0, 1), save=True, **kw):
    """Records of a row, each seed's scores saved in its own run folder."""
    out = []
    for seed in seeds:
        folder = tmp_path / f"{label}-{kw.get('fraction', 0.01)}-{seed}"
        folder.mkdir()
        scores = np.round(labels * (0.3 + signal) + rng.random(labels.shape), 3)
        if save:
            np.savez(folder / "predictions-test.npz", scores=scores, labels=labels)
        out.append(record(label, method, seed, macro_auroc(scores, labels, "binary"), run_dir=str(folder), **kw))
    return out


def test_the_report_has_a_paired_table_and_csv(tmp_path):
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, (120, 1))
    records = (runs(tmp_path, rng, labels, "FFT", "fft", 0.0) + runs(tmp_path, rng, labels, "LoRA", "lora", 0.6)
               + runs(tmp_path, rng, labels, "Linear", "linear", 0.0, save=False)
               + runs(tmp_path, rng, labels, "LoRA", "lora", 0.6, fraction=1.0, seeds=(7,)))
    files = write_report(records, tmp_path / "report", title="t", command="c", n_bootstrap=100)
    text = files.markdown.read_text()
    assert "Paired differences to FFT" in text
    assert "significant only when the paired 95% CI excludes 0" in text
    with open(files.paired, newline="") as handle:
        rows = {(r["row"], r["column"]): r for r in csv.DictReader(handle)}
    assert list(next(iter(rows.values()))) == ["row", "backbone", "column", "n_units", "delta", "ci_low",
                                               "ci_high", "significant", "reason"]
    lora = rows[("LoRA", "PneumoniaMNIST 1%")]
    by_seed = {(r["label"], r["seed"]): rec.auroc(r) for r in records if r["fraction"] == 0.01}
    assert float(lora["delta"]) == pytest.approx(np.mean([by_seed[("LoRA", s)] - by_seed[("FFT", s)]
                                                          for s in (0, 1)]), abs=1e-12)
    assert lora["n_units"] == "2" and lora["significant"] == "true" and lora["reason"] == ""
    assert float(lora["ci_low"]) > 0
    assert rows[("Linear", "PneumoniaMNIST 1%")]["reason"] == "predictions not saved"
    assert rows[("LoRA", "PneumoniaMNIST 100%")]["reason"] == "no FFT cell"
    assert rows[("Linear", "PneumoniaMNIST 1%")]["delta"] == ""
    shown = f"**↑{100 * float(lora['delta']):.1f} [{100 * float(lora['ci_low']):+.1f}, " \
            f"{100 * float(lora['ci_high']):+.1f}]**"
    assert shown in text and "n/a: predictions not saved" in text
    assert files.paired in files.all() and "`paired-auroc.csv`" in text
    assert "Paired differences to FFT" in files.html.read_text()


def test_cells_without_a_shared_seed_are_not_paired(tmp_path):
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 2, (40, 1))
    records = runs(tmp_path, rng, labels, "FFT", "fft", 0.0, seeds=(0,)) + runs(
        tmp_path, rng, labels, "LoRA", "lora", 0.2, seeds=(1,))
    [paired] = paired_cells(build_grid(records, "auroc", n_bootstrap=0), "fft", n_bootstrap=10)
    assert paired.result is None and paired.reason == "no seed shared with FFT"
    assert paired_cells(build_grid(records, "auroc", n_bootstrap=0), "no-such-row") == []


# --- still improving ----------------------------------------------------------------------------

def test_a_cell_whose_best_validation_is_its_last_epoch_is_marked_still_improving():
    records = [record("FFT", "fft", s, 0.9 + s / 100) for s in range(2)] + [
        record("LoRA", "lora", s, 0.92 + s / 100) for s in range(2)]
    records[3]["metrics"].update(best_epoch=5, epochs_run=5)  # LoRA seed 1
    assert rec.still_improving(records[3]) and not rec.still_improving(records[2])
    assert not rec.still_improving({"metrics": {"test": {}}})  # older metrics.json without the keys
    table = table_of(records)
    got = cells(table)
    assert got["LoRA"]["PneumoniaMNIST 1%"].endswith("§") and not got["FFT"]["PneumoniaMNIST 1%"].endswith("§")
    assert "§ still improving: best validation at the last epoch" in table.caption
    assert table.bold == {(1, 1)}  # still a result
    assert table.right_aligned()[1]
    assert "still improving" not in study_table(build_grid(records[:2], "auroc", n_bootstrap=0), title="t").caption
