"""Study reports on hand-made result records: the paper table's exact cells (mean ± std, the
↑/↓ difference to FFT, the bold best (chosen on validation), not-a-result markers, published rows), the CI of the
seed mean from saved predictions against a hand computation, the CSV files read back, the
self-contained HTML and the PNG plots."""
from __future__ import annotations

import base64
import csv
import math
import re
import struct

import numpy as np
import pytest

from medpeft.runtime.metrics import macro_auroc
from medpeft.studies import records as rec
from medpeft.studies.bootstrap import columns_of, weighted_macro_auroc
from medpeft.studies.grid import build_grid
from medpeft.studies.plots import plot_grid, variant_axes
from medpeft.studies.report import report_markdown, report_tables, results_rows, write_report
from medpeft.studies.tables import study_table

PNG = b"\x89PNG\r\n\x1a\n"


def record(label, method, seed, auroc, *, dataset="PneumoniaMNIST", fraction=0.01, backbone="vit_tiny",
           variant=None, steps=500, trainable=1000, total=100_000, ci=None, run_dir=None, **test):
    return {"dataset": dataset, "fraction": fraction, "method": method, "label": label, "backbone": backbone,
            "seed": seed, "variant": variant or {}, "run_dir": run_dir,
            "metrics": {"test": {"auroc": auroc, "f1_macro": auroc - 0.2, "acc": auroc - 0.1, "n": 100,
                                 **({"auroc_ci95": ci} if ci else {}), **test},
                        "val": {"auroc": auroc}, "trainable_params": trainable, "total_params": total,
                        "steps": steps, "best_epoch": 3, "epochs_run": 5, "wall_time_s": 2.5, "train_size": 47}}


def three_methods(fraction=0.01, **kw):
    """FFT 92.0 ± 2.0, LoRA 94.0 ± 1.0 (FFT + 2.0), linear 86.0 ± 1.0 (FFT − 6.0) at ``fraction``."""
    return ([record("FFT", "fft", s, v, fraction=fraction, trainable=100_000, **kw)
             for s, v in enumerate([0.90, 0.92, 0.94])]
            + [record("LoRA r=8", "lora", s, v, fraction=fraction, variant={"rank": 8}, **kw)
               for s, v in enumerate([0.93, 0.95, 0.94])]
            + [record("Linear", "linear", s, v, fraction=fraction, trainable=123, **kw)
               for s, v in enumerate([0.85, 0.86, 0.87])])


def table_of(records, metric="auroc", **kw):
    return study_table(build_grid(records, metric, n_bootstrap=0), title="t", **kw)


def cells(table) -> dict:
    return {row[0]: dict(zip(table.columns, row)) for row in table.rows}


# --- the paper table ------------------------------------------------------------------------

def test_cells_are_mean_std_and_the_difference_to_fft_with_arrows():
    records = three_methods(1.0) + three_methods(0.01)  # columns sorted by fraction, not by arrival
    table = table_of(records)
    assert table.columns == ["Method", "PneumoniaMNIST 1%", "PneumoniaMNIST 100%", "Trainable"]
    assert [row[0] for row in table.rows] == ["FFT", "LoRA r=8", "Linear"]
    got = cells(table)
    assert got["FFT"]["PneumoniaMNIST 1%"] == "92.0 ± 2.0"  # the baseline has no difference
    assert got["LoRA r=8"]["PneumoniaMNIST 1%"] == "94.0 ± 1.0 ↑2.0"
    assert got["Linear"]["PneumoniaMNIST 100%"] == "86.0 ± 1.0 ↓6.0"
    assert [got[m]["Trainable"] for m in ("FFT", "LoRA r=8", "Linear")] == ["100%", "1%", "0.123%"]
    assert "difference of the mean to FFT" in table.caption and "over 3 seeds" in table.caption


def test_the_best_mean_of_each_column_is_bold_and_ties_share_it():
    records = three_methods() + [record("LoRA r=4", "lora", s, v, variant={"rank": 4})
                                 for s, v in enumerate([0.9401, 0.9399, 0.94])]
    table = table_of(records)
    assert table.bold == {(1, 1), (3, 1)}  # LoRA r=8 and r=4: the same validation (and test) mean, 94.0
    markdown = table.to_markdown()
    assert "| LoRA r=8 | **94.0 ± 1.0 ↑2.0** |" in markdown
    assert "| FFT | 92.0 ± 2.0 |" in markdown


def test_the_bold_best_is_chosen_by_validation_not_by_test():
    records = three_methods()  # by test: LoRA 94.0 > FFT 92.0 > Linear 86.0
    for r in records:  # validation prefers FFT: 0.97 against LoRA's 0.95
        r["metrics"]["val"]["auroc"] = {"fft": 0.97, "lora": 0.95, "linear": 0.80}[r["method"]]
    table = table_of(records)
    assert table.bold == {(0, 1)}  # FFT, the validation winner, though LoRA has the better test mean
    assert "| FFT | **92.0 ± 2.0** |" in table.to_markdown()
    assert "Bold: the best mean validation score (validation AUROC) of each column among results " \
           "(test only reports)." in table.caption
    assert table_of(records, metric="f1").bold == {(0, 1)}  # the F1 table bolds the same choice
    records[1]["metrics"]["val"]["auroc"] = 0.99  # FFT seed 1: the seed mean decides, 0.97 -> 0.9767
    records[3]["metrics"]["val"]["auroc"] = 1.0  # LoRA seed 0: 0.95 -> 0.9667
    assert table_of(records).bold == {(0, 1)}
    for r in records[3:6]:  # a tie on validation: both bold
        r["metrics"]["val"]["auroc"] = 0.9766666666666667
    assert table_of(records).bold == {(0, 1), (1, 1)}


def test_a_column_with_a_result_without_a_validation_score_has_no_bold_and_says_so():
    records = three_methods() + three_methods(1.0)
    del records[7]["metrics"]["val"]  # Linear at 1%, seed 1: an older metrics.json
    table = table_of(records)
    assert table.bold == {(1, 2)}  # the 100% column is chosen (LoRA); the 1% column is not
    assert "No bold in PneumoniaMNIST 1%: a result there has no validation score recorded" in table.caption
    assert math.isnan(rec.val_auroc(records[7])) and rec.val_auroc(records[0]) == 0.90
    for r in records[6:9]:  # Linear at 1% is not a result (too few steps): the rest are chosen from
        r["metrics"]["steps"] = 10
    assert table_of(records).bold == {(1, 1), (1, 2)}
    assert "No bold" not in table_of(three_methods()).caption


def test_rows_follow_the_given_order_then_first_seen_and_ignore_absent_labels():
    table = study_table(build_grid(three_methods(), "auroc", rows=["Linear", "ghost", "FFT"], n_bootstrap=0),
                        title="t")
    assert [row[0] for row in table.rows] == ["Linear", "FFT", "LoRA r=8"]


def test_the_baseline_is_found_by_label_or_by_method_and_may_be_absent():
    by_label = cells(table_of(three_methods(), baseline="Linear"))
    assert by_label["FFT"]["PneumoniaMNIST 1%"] == "92.0 ± 2.0 ↑6.0"
    assert by_label["Linear"]["PneumoniaMNIST 1%"] == "86.0 ± 1.0"
    none = table_of(three_methods(), baseline="nothing")
    assert not any(re.search(r" [↑↓=]\d", c) for row in none.rows for c in row[1:])
    assert "No baseline row 'nothing'" in none.caption


@pytest.mark.parametrize("bad, marker, footnote", [
    ({"steps": 10}, "†", "fewer than 50 optimiser steps"),
    ({"one_class": True}, "‡", "flagged one-class"),
])
def test_a_cell_that_is_not_a_result_is_marked_footnoted_and_never_best(bad, marker, footnote):
    records = three_methods()
    seed1 = records[4]  # LoRA, seed 1: the best column mean, 94.0
    if "steps" in bad:
        seed1["metrics"]["steps"] = bad["steps"]
    else:
        seed1["metrics"]["test"].update(bad)
    table = table_of(records)
    assert cells(table)["LoRA r=8"]["PneumoniaMNIST 1%"] == f"94.0 ± 1.0 ↑2.0{marker}"
    assert table.bold == {(0, 1)}  # FFT, the best result
    assert footnote in table.caption and table.caption.count(marker) == 1
    assert "†" not in table_of(three_methods()).caption


def test_fifty_steps_is_a_result_and_forty_nine_is_not():
    assert rec.not_a_result(record("a", "fft", 0, 0.9, steps=50)) == []
    assert rec.not_a_result(record("a", "fft", 0, 0.9, steps=49)) == ["steps"]


def test_published_figures_are_rows_of_their_own_not_ranked():
    anchors = [{"label": "MedMNIST v2 ResNet-18 (published)", "dataset": "PneumoniaMNIST", "fraction": 0.01,
                "metric": "auroc", "value": 0.991},
               {"label": "Dutt et al. (published)", "dataset": "PneumoniaMNIST", "fraction": 0.01, "metric": "f1",
                "value": 0.5},
               {"label": "Elsewhere", "dataset": "BreastMNIST", "fraction": 1.0, "metric": "auroc", "value": 0.9}]
    table = table_of(three_methods(), anchors=anchors)
    assert [row[0] for row in table.rows] == ["FFT", "LoRA r=8", "Linear", "MedMNIST v2 ResNet-18 (published)"]
    assert table.rows[-1][1:] == ["99.1", ""]  # as printed: no std, no difference, no trainable share
    assert table.rules_after == {2}
    assert table.bold == {(1, 1)}  # 99.1 is higher, but only measured rows are ranked
    assert "published figures" in table.caption
    assert "Elsewhere on BreastMNIST 100%" in table.caption  # no such column: named, not dropped silently
    f1 = table_of(three_methods(), metric="f1", anchors=anchors)
    assert f1.rows[-1] == ["Dutt et al. (published)", "50.0", ""]  # each metric's table its own figures
    assert "Elsewhere" not in f1.caption


def test_published_figures_must_be_fractions_with_known_metrics():
    base = {"label": "x", "dataset": "d", "fraction": 1.0, "metric": "auroc"}
    with pytest.raises(ValueError, match=r"94.4% -> 0.944"):
        rec.check_anchors([{**base, "value": 94.4}])
    with pytest.raises(ValueError, match="metric must be one of auroc, f1"):
        rec.check_anchors([{**base, "metric": "acc", "value": 0.9}])
    with pytest.raises(ValueError, match="lacks value"):
        rec.check_anchors([base])


def test_several_backbones_get_a_column_and_their_own_baseline():
    def on_vit_base(r):  # 2 points lower
        test = {**r["metrics"]["test"], "auroc": r["metrics"]["test"]["auroc"] - 0.02}
        return {**r, "backbone": "vit_base", "metrics": {**r["metrics"], "test": test}}

    records = three_methods() + [on_vit_base(r) for r in three_methods() if r["label"] != "Linear"]
    records[-1]["metrics"]["test"]["auroc"] = 0.97  # vit_base LoRA seed 2: mean (0.91 + 0.93 + 0.97) / 3
    table = table_of(records)
    assert table.columns[:2] == ["Method", "Backbone"]
    assert [tuple(row[:2]) for row in table.rows] == [("FFT", "vit_tiny"), ("LoRA r=8", "vit_tiny"),
                                                      ("Linear", "vit_tiny"), ("FFT", "vit_base"),
                                                      ("LoRA r=8", "vit_base")]
    assert table.rules_after == {2}
    assert table.rows[4][2] == "93.7 ± 3.1 ↑3.7"  # to vit_base's FFT (90.0), not vit_tiny's


def test_f1_table_reads_the_validation_threshold_f1_when_runs_have_it():
    records = three_methods()
    for r in records:
        r["metrics"]["test"]["f1_macro_at_val_threshold"] = r["metrics"]["test"]["auroc"] - 0.1
    tables = report_tables(records, title="S", n_bootstrap=0)
    assert cells(tables["f1"])["LoRA r=8"]["PneumoniaMNIST 1%"] == "84.0 ± 1.0 ↑2.0"
    assert "threshold chosen on validation" in tables["f1"].title
    plain = report_tables(three_methods(), n_bootstrap=0)["f1"]
    assert cells(plain)["LoRA r=8"]["PneumoniaMNIST 1%"] == "74.0 ± 1.0 ↑2.0"
    assert "threshold 0.5" in plain.title


def test_records_that_would_mix_two_things_in_one_row_or_cell_are_refused():
    with pytest.raises(ValueError, match="give each method variant its own label"):
        build_grid([record("LoRA", "lora", 0, 0.9, variant={"rank": 4}),
                    record("LoRA", "lora", 1, 0.9, variant={"rank": 8})], "auroc")
    build_grid([record("LoRA", "lora", 0, 0.9, variant={"model": "tiny"}),  # one label, two backbones: fine
                record("LoRA", "lora", 0, 0.9, variant={"model": "base"}, backbone="vit_base")], "auroc")
    with pytest.raises(ValueError, match="two result records for FFT"):
        build_grid([record("FFT", "fft", 0, 0.9), record("FFT", "fft", 0, 0.8)], "auroc")
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        build_grid([record("FFT", "fft", 0, 0.9, fraction=10)], "auroc")


# --- the CI of the seed mean ------------------------------------------------------------------

def fake_runs(tmp_path, n=40, seeds=3, task="binary", seed=0):
    """Run folders with predictions-test.npz: noisy scores of the same test items per seed."""
    rng = np.random.default_rng(seed)
    k = {"binary": 1, "multiclass": 3, "multilabel": 4}[task]
    labels = rng.integers(0, k if task == "multiclass" else 2, (n, 1 if task != "multilabel" else k))
    truth = np.eye(k)[labels[:, 0]] if task == "multiclass" else labels
    runs, scores = [], []
    for s in range(seeds):
        score = np.round(truth * 0.6 + rng.random((n, k)) * 0.8, 2)  # rounded: ties, as real scores have
        folder = tmp_path / f"run-{s}"
        folder.mkdir()
        np.savez(folder / "predictions-test.npz", scores=score, labels=labels)
        runs.append(folder)
        scores.append(score)
    return runs, scores, labels


def hand_ci(scores, labels, task, n_bootstrap, seed=0):
    """The interval written out with runtime.metrics.macro_auroc on copies of the items."""
    rng = np.random.default_rng(seed)
    values = []
    while len(values) < n_bootstrap:
        index = rng.integers(0, len(labels), len(labels))
        value = np.mean([macro_auroc(s[index], labels[index], task) for s in scores])
        if not math.isnan(value):
            values.append(value)
    return np.percentile(values, [2.5, 97.5])


def test_the_ci_of_the_seed_mean_is_a_joint_bootstrap_over_test_items(tmp_path):
    runs, scores, labels = fake_runs(tmp_path)
    records = [record("LoRA", "lora", s, macro_auroc(scores[s], labels, "binary"), run_dir=str(folder),
                      ci=[0.1, 0.2]) for s, folder in enumerate(runs)]
    grid = build_grid(records, "auroc", n_bootstrap=200, bootstrap_seed=0)
    cell = grid.get(("LoRA", "vit_tiny"), ("PneumoniaMNIST", 0.01))
    assert cell.ci_method == "bootstrap"
    assert cell.ci == pytest.approx(tuple(hand_ci(scores, labels, "binary", 200)), abs=1e-12)
    low, high = cell.ci
    assert 0.5 < low < cell.mean < high <= 1.0 and high - low < 0.4
    text = cells(study_table(grid, title="t"))["LoRA"]["PneumoniaMNIST 1%"]
    assert text.endswith(f" [{100 * low:.1f}, {100 * high:.1f}]") and "≈" not in text
    assert "percentile bootstrap over test items (200 resamples" in study_table(grid, title="t").caption


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_resample_weights_score_exactly_like_macro_auroc_on_copies(task):
    rng = np.random.default_rng(3)
    scores, labels = fake_runs_arrays(task, rng)
    for _ in range(20):
        index = rng.integers(0, len(labels), len(labels))
        expected = macro_auroc(scores[index], labels[index], task)
        got = weighted_macro_auroc(columns_of(scores, labels, task),
                                   np.bincount(index, minlength=len(labels)).astype(float))
        assert got == pytest.approx(expected, abs=1e-12)


def fake_runs_arrays(task, rng, n=30):
    k = {"binary": 1, "multiclass": 4, "multilabel": 5}[task]
    labels = rng.integers(0, k if task == "multiclass" else 2, (n, 1 if task != "multilabel" else k))
    if task == "multilabel":
        labels[:, 0] = 0  # a label with one class: left out of the macro mean, as macro_auroc does
    return np.round(rng.random((n, k)), 1), labels


def test_without_every_seeds_predictions_the_ci_is_the_mean_of_the_runs_intervals(tmp_path):
    runs, _, _ = fake_runs(tmp_path)
    (runs[2] / "predictions-test.npz").unlink()
    records = [record("LoRA", "lora", s, 0.9, run_dir=str(folder), ci=[0.80 + s / 100, 0.95 + s / 100])
               for s, folder in enumerate(runs)]
    grid = build_grid(records, "auroc", n_bootstrap=50)
    cell = grid.get(("LoRA", "vit_tiny"), ("PneumoniaMNIST", 0.01))
    assert cell.ci_method == "seed-ci-mean" and cell.ci == pytest.approx((0.81, 0.96))
    table = study_table(grid, title="t")
    assert cells(table)["LoRA"]["PneumoniaMNIST 1%"] == "90.0 ± 0.0 ≈[81.0, 96.0]"
    assert "≈[lo, hi]: predictions not saved for every seed" in table.caption
    one = build_grid(records[:1], "auroc", n_bootstrap=0).get(("LoRA", "vit_tiny"), ("PneumoniaMNIST", 0.01))
    assert (one.ci_method, one.ci) == ("run", (0.80, 0.95))


def test_seeds_scored_on_different_items_fall_back_to_the_runs_intervals(tmp_path):
    runs, scores, labels = fake_runs(tmp_path)
    np.savez(runs[1] / "predictions-test.npz", scores=1 - scores[1], labels=1 - labels)  # same AUROC
    records = [record("LoRA", "lora", s, macro_auroc(scores[s], labels, "binary"), run_dir=str(f), ci=[0.8, 0.95])
               for s, f in enumerate(runs)]
    cell = build_grid(records, "auroc", n_bootstrap=50).get(("LoRA", "vit_tiny"), ("PneumoniaMNIST", 0.01))
    assert cell.ci_method == "seed-ci-mean"


def test_predictions_that_do_not_give_the_runs_auroc_are_not_used(tmp_path):
    runs, scores, labels = fake_runs(tmp_path)
    records = [record("LoRA", "lora", s, macro_auroc(scores[s], labels, "binary"), run_dir=str(f), ci=[0.8, 0.95])
               for s, f in enumerate(runs)]
    records[2]["metrics"]["test"]["auroc"] += 0.01  # the run was scored on something else
    cell = build_grid(records, "auroc", n_bootstrap=50).get(("LoRA", "vit_tiny"), ("PneumoniaMNIST", 0.01))
    assert cell.ci_method == "seed-ci-mean"
    records[2]["metrics"]["test"]["auroc"] -= 0.01
    cell = build_grid(records, "auroc", n_bootstrap=50).get(("LoRA", "vit_tiny"), ("PneumoniaMNIST", 0.01))
    assert cell.ci_method == "bootstrap"


# --- files ---------------------------------------------------------------------------------------

def study_records(tmp_path):
    """Two datasets x two fractions x {FFT, LoRA r=4/8/16, a label with a script tag}, 2 seeds."""
    rng = np.random.default_rng(0)
    records = []
    for dataset in ("PneumoniaMNIST", "BreastMNIST"):
        labels = rng.integers(0, 2, (40, 1))
        for fraction in (0.1, 1.0):
            for label, method, variant, trainable in [("FFT", "fft", {}, 5_000_000),
                                                      ("LoRA r=4", "lora", {"rank": 4}, 40_000),
                                                      ("LoRA r=8", "lora", {"rank": 8}, 80_000),
                                                      ("LoRA r=16", "lora", {"rank": 16}, 160_000),
                                                      ("<script>alert(1)</script>", "bitfit", {}, 9_000)]:
                for seed in range(2):
                    folder = tmp_path / "runs" / f"{dataset}-{fraction}-{trainable}-{seed}"
                    folder.mkdir(parents=True)
                    score = np.clip(labels * 0.5 + rng.random((40, 1)) * (0.6 + fraction), 0, 1)
                    np.savez(folder / "predictions-test.npz", scores=score, labels=labels)
                    records.append(record(label, method, seed, macro_auroc(score, labels, "binary"), dataset=dataset,
                                          fraction=fraction, variant=variant, trainable=trainable, total=5_000_000,
                                          run_dir=str(folder), steps=20 if method == "bitfit" else 400))
    return records


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    records = study_records(tmp)
    anchors = [{"label": "MedMNIST v2 ResNet-18 (published)", "dataset": "PneumoniaMNIST", "fraction": 1.0,
                "metric": "auroc", "value": 0.944}]
    files = write_report(records, tmp / "report", title="Rank <study> & co", command="medpeft study run `x`.yaml",
                         anchors=anchors, note="two seeds", n_bootstrap=100)
    return records, files


def test_results_csv_has_one_row_per_run_that_reads_back_exactly(report):
    records, files = report
    with open(files.results_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(records)
    for row, r in zip(rows, records):
        assert float(row["auroc"]) == r["metrics"]["test"]["auroc"]  # written exactly, not rounded
        assert float(row["f1"]) == r["metrics"]["test"]["f1_macro"] and row["f1_threshold"] == "0.5"
        assert (row["label"], row["dataset"], float(row["fraction"]), int(row["seed"])) == (
            r["label"], r["dataset"], r["fraction"], r["seed"])
        assert row["rank"] == str(r["variant"].get("rank", ""))
        assert row["run_dir"] == r["run_dir"] and int(row["trainable_params"]) == r["metrics"]["trainable_params"]
        assert row["not_a_result"] == ("steps" if r["method"] == "bitfit" else "")


def test_a_variant_named_like_a_fixed_column_gets_a_prefix():
    columns, rows = results_rows([record("a", "fft", 0, 0.9, variant={"seed": 3, "rank": 2})])
    assert columns[6:8] == ["variant_seed", "rank"] and rows[0][6:8] == ["3", "2"]


def test_table_csvs_and_cells_csv_hold_what_the_tables_show(report):
    records, files = report
    tables = report_tables(records, title="Rank <study> & co", n_bootstrap=100, anchors=[
        {"label": "MedMNIST v2 ResNet-18 (published)", "dataset": "PneumoniaMNIST", "fraction": 1.0,
         "metric": "auroc", "value": 0.944}])
    for metric, path in files.tables.items():
        with open(path, newline="") as handle:
            assert list(csv.reader(handle)) == [tables[metric].columns] + tables[metric].rows
    with open(files.cells_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 2 * 2 * 5  # metrics x datasets x fractions x rows
    fft = [r for r in records if r["label"] == "FFT" and r["dataset"] == "BreastMNIST" and r["fraction"] == 1.0]
    row = next(r for r in rows
               if (r["metric"], r["label"], r["dataset"], r["fraction"]) == ("auroc", "FFT", "BreastMNIST", "1.0"))
    values = [r["metrics"]["test"]["auroc"] for r in fft]
    assert float(row["mean"]) == pytest.approx(np.mean(values), abs=1e-15)
    assert float(row["std"]) == pytest.approx(np.std(values, ddof=1), abs=1e-15)  # sample std over seeds
    assert row["ci_method"] == "bootstrap" and float(row["ci95_lo"]) < float(row["mean"]) < float(row["ci95_hi"])


def test_markdown_has_the_tables_the_command_and_links_to_the_plots(report):
    _, files = report
    text = files.markdown.read_text()
    assert text.startswith("# Rank <study> & co\n")
    assert "```\nmedpeft study run `x`.yaml\n```" in text
    assert "````\nrun ```x```\n````" in report_markdown("t", command="run ```x```")  # fence outruns the command
    assert "| MedMNIST v2 ResNet-18 (published) |" in text and "94.4" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(links) == sorted(p.name for p in files.plots)
    assert "†" in text and "fewer than 50 optimiser steps" in text


def test_html_is_self_contained_and_escapes_user_text(report):
    _, files = report
    html = files.html.read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == len(files.plots) >= 5
    assert all(base64.b64decode(image).startswith(PNG) for image in images)
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<title>Rank &lt;study&gt; &amp; co</title>" in html
    assert not re.search(r'(src|href)="(?!data:)', html) and "<link" not in html  # nothing fetched
    assert "<style>" in html and "<strong>" in html


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_every_plot_is_a_real_png_and_the_rank_ablation_is_drawn(report):
    _, files = report
    names = {p.name for p in files.plots}
    assert names == {f"{m}-{kind}.png" for m in ("auroc", "f1")
                     for kind in ("vs-fraction", "vs-trainable-params", "ablation-rank")}
    for path in files.plots:
        width, height = png_size(path)
        assert width >= 600 and height >= 300 and path.stat().st_size > 20_000
    leftovers = [p.name for p in files.markdown.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # written through temporary names, all renamed


def test_a_single_fraction_gets_no_fraction_plot_and_categorical_variants_get_an_ablation(tmp_path):
    records = [record(f"ViT-{size}", "lora", s, 0.8 + 0.01 * i + 0.01 * s, variant={"model": size})
               for i, size in enumerate(["tiny", "small", "base"]) for s in range(2)]
    grid = build_grid(records, "auroc", n_bootstrap=0)
    assert variant_axes(grid) == ["model"]
    plots = plot_grid(grid, tmp_path)
    assert [p.name for p, _ in plots] == ["auroc-vs-trainable-params.png", "auroc-ablation-model.png"]
    assert all(png_size(p)[0] > 400 for p, _ in plots)
