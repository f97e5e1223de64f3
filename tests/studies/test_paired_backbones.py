"""Paired differences between backbones (issue 26, item 3): with ``report.baseline_backbone``, each
method on another backbone is paired with the same method on the baseline backbone, by (seed,
label subset) unit on the same test items. Δ against a direct computation with
``runtime.metrics.macro_auroc`` from the saved predictions, the CI bracketing it, bold exactly
when the CI excludes 0, every n/a reason (a unit without saved predictions, no cell on the
baseline backbone, no shared unit), the table and ``paired-backbones.csv`` of the report, and
the load-time error for a label that is no backbone of the study."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from medpeft.runtime.metrics import macro_auroc
from medpeft.studies.grid import build_grid
from medpeft.studies.paired import paired_cells, paired_table
from medpeft.studies.report import write_report
from medpeft.studies.spec import load_study

from .conftest import TINY_BACKBONE, write_study
from .test_hostile_studies import refused
from .test_report import record

OLD, NEW = "MAE 20 epochs", "MAE to plateau"
COLUMN = ("PneumoniaMNIST", 0.01)


def runs(tmp_path, rng, labels, label, method, backbone, signal, units=((0, 0), (0, 1), (0, 2), (0, 3)),
         save=True, fraction=0.01):
    """Records of one row, each (seed, subset) unit's scores saved in its own run folder."""
    out = []
    for seed, subset in units:
        folder = tmp_path / f"{label}-{backbone}-{fraction}-s{seed}-sub{subset}"
        folder.mkdir()
        scores = np.round(labels * (0.3 + signal) + rng.random(labels.shape), 3)
        if save:
            np.savez(folder / "predictions-test.npz", scores=scores, labels=labels)
        r = record(label, method, seed, macro_auroc(scores, labels, "binary"), backbone=backbone,
                   fraction=fraction, run_dir=str(folder))
        r["subset"] = subset
        out.append(r)
    return out


def two_backbones(tmp_path, seed=3, n=150):
    """FFT and LoRA on both backbones: FFT much better on NEW (a real signal), LoRA the same."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, (n, 1))
    return (runs(tmp_path, rng, labels, "FFT", "fft", OLD, 0.0) + runs(tmp_path, rng, labels, "LoRA", "lora", OLD, 0.3)
            + runs(tmp_path, rng, labels, "FFT", "fft", NEW, 0.8) + runs(tmp_path, rng, labels, "LoRA", "lora", NEW, 0.3))


def direct_delta(records, label) -> float:
    """Mean over units of AUROC(label on NEW) − AUROC(label on OLD), recomputed from the saved files."""
    def aurocs(backbone):
        out = {}
        for r in records:
            if (r["label"], r["backbone"]) == (label, backbone):
                with np.load(f"{r['run_dir']}/predictions-test.npz") as npz:
                    out[(r["seed"], r["subset"])] = macro_auroc(npz["scores"], npz["labels"], "binary")
        return out
    new, old = aurocs(NEW), aurocs(OLD)
    return float(np.mean([new[u] - old[u] for u in sorted(set(new) & set(old))]))


def test_delta_is_the_direct_difference_of_the_backbones_and_bold_iff_the_ci_excludes_zero(tmp_path):
    records = two_backbones(tmp_path)
    grid = build_grid(records, "auroc", n_bootstrap=0)
    cells = paired_cells(grid, OLD, n_bootstrap=300, seed=0, by="backbone")
    by_row = {c.row: c for c in cells}
    assert list(by_row) == [("FFT", NEW), ("LoRA", NEW)]  # rows on the baseline backbone are not paired
    for (label, _), paired in by_row.items():
        result = paired.result
        assert paired.baseline == (label, OLD) and paired.against == OLD and paired.reason == ""
        assert result.n_units == 4
        assert result.delta == pytest.approx(direct_delta(records, label), abs=1e-12)
        assert result.ci[0] <= result.delta <= result.ci[1]
        assert result.significant == (result.ci[0] > 0 or result.ci[1] < 0)
    assert by_row[("FFT", NEW)].result.significant and by_row[("FFT", NEW)].result.ci[0] > 0
    assert not by_row[("LoRA", NEW)].result.significant  # the same signal on both backbones: a tie

    table = paired_table(grid, cells, n_bootstrap=300)
    assert table.title.startswith(f"Paired differences to {OLD}: test macro AUROC")
    assert table.columns == ["Method", "Backbone", "PneumoniaMNIST 1%"]
    assert [row[:2] for row in table.rows] == [["FFT", NEW], ["LoRA", NEW]]
    assert table.bold == {(0, 2)}  # FFT only: the one significant difference
    assert f"minus the same method's on {OLD} on the same test items" in table.caption
    assert "(seed, label subset) units" in table.caption


def test_the_same_records_paired_by_method_are_unchanged_by_the_backbone_pairing(tmp_path):
    records = two_backbones(tmp_path)
    grid = build_grid(records, "auroc", n_bootstrap=0)
    by_method = paired_cells(grid, "FFT", n_bootstrap=50)
    assert [(c.row, c.baseline, c.by) for c in by_method] == [(("LoRA", OLD), ("FFT", OLD), "method"),
                                                               (("LoRA", NEW), ("FFT", NEW), "method")]
    assert paired_cells(grid, "no such backbone", by="backbone") == []
    with pytest.raises(ValueError, match="by must be one of method, backbone"):
        paired_cells(grid, OLD, by="dataset")


def test_a_unit_that_cannot_be_paired_reads_n_a_with_its_reason(tmp_path):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, (60, 1))
    records = (runs(tmp_path, rng, labels, "FFT", "fft", OLD, 0.0)
               + runs(tmp_path, rng, labels, "FFT", "fft", NEW, 0.5, units=((0, 0), (0, 1), (0, 2)))
               # a unit without saved predictions
               + runs(tmp_path, rng, labels, "LoRA", "lora", OLD, 0.0)
               + runs(tmp_path, rng, labels, "LoRA", "lora", NEW, 0.5, units=((0, 0),))
               + runs(tmp_path, rng, labels, "LoRA", "lora", NEW, 0.5, units=((0, 1),), save=False)
               # no unit shared with the baseline backbone
               + runs(tmp_path, rng, labels, "FFT", "fft", OLD, 0.0, units=((1, 0),), fraction=0.1)
               + runs(tmp_path, rng, labels, "FFT", "fft", NEW, 0.5, units=((2, 0),), fraction=0.1)
               # no cell on the baseline backbone
               + runs(tmp_path, rng, labels, "LoRA", "lora", NEW, 0.5, fraction=1.0))
    grid = build_grid(records, "auroc", n_bootstrap=0)
    found = {(c.row[0], c.column[1]): c for c in paired_cells(grid, OLD, n_bootstrap=100, by="backbone")}
    # units missing on one side: the shared ones are paired (3 of FFT's 4)
    assert found[("FFT", 0.01)].result.n_units == 3
    assert found[("FFT", 0.01)].result.delta == pytest.approx(direct_delta(
        [r for r in records if r["fraction"] == 0.01], "FFT"), abs=1e-12)
    assert found[("LoRA", 0.01)].result is None and found[("LoRA", 0.01)].reason == "predictions not saved"
    assert found[("FFT", 0.1)].reason == f"no seed and subset shared with {OLD}"
    assert found[("LoRA", 1.0)].reason == f"no LoRA cell on {OLD}"
    table = paired_table(grid, list(found.values()), n_bootstrap=100)
    texts = {row[0]: row[2:] for row in table.rows}
    assert texts["LoRA"] == ["n/a: predictions not saved", "–", f"n/a: no LoRA cell on {OLD}"]
    assert texts["FFT"][1] == f"n/a: no seed and subset shared with {OLD}"
    assert "n/a: no paired difference, for the reason given." in table.caption


def test_the_report_writes_the_backbone_table_and_its_csv_only_when_asked(tmp_path):
    records = two_backbones(tmp_path)
    plain = write_report(records, tmp_path / "plain", title="t", command="c", n_bootstrap=100)
    assert plain.paired_backbones is None and not (tmp_path / "plain" / "paired-backbones.csv").exists()
    assert "Paired differences to FFT" in plain.markdown.read_text()

    files = write_report(records, tmp_path / "report", title="t", command="c", n_bootstrap=100,
                         baseline_backbone=OLD)
    assert files.paired_backbones == tmp_path / "report" / "paired-backbones.csv"
    assert files.paired_backbones in files.all() and files.paired in files.all()
    text = files.markdown.read_text()
    assert "Paired differences to FFT" in text and f"Paired differences to {OLD}" in text
    assert "`paired-backbones.csv`" in text and f"Paired differences to {OLD}" in files.html.read_text()
    with open(files.paired_backbones, newline="") as handle:
        rows = list(csv.DictReader(handle))
    with open(files.paired, newline="") as handle:
        assert list(rows[0]) == list(next(csv.DictReader(handle)))  # the same columns as paired-auroc.csv
    assert [(r["row"], r["backbone"], r["column"]) for r in rows] == [("FFT", NEW, "PneumoniaMNIST 1%"),
                                                                     ("LoRA", NEW, "PneumoniaMNIST 1%")]
    fft = rows[0]
    assert float(fft["delta"]) == pytest.approx(direct_delta(records, "FFT"), abs=1e-12)
    assert fft["n_units"] == "4" and fft["significant"] == "true" and fft["reason"] == ""
    shown = f"**↑{100 * float(fft['delta']):.1f} [{100 * float(fft['ci_low']):+.1f}, " \
            f"{100 * float(fft['ci_high']):+.1f}]**"
    assert shown in text
    # the same bootstrap seed and resamples give the same numbers
    again = write_report(records, tmp_path / "again", title="t", command="c", n_bootstrap=100, baseline_backbone=OLD)
    assert again.paired_backbones.read_text() == files.paired_backbones.read_text()


def test_a_baseline_backbone_that_is_no_backbone_fails_at_load_naming_the_labels(tmp_path, capsys):
    backbones = [{"label": "tiny", "backbone": TINY_BACKBONE}, {"label": "other", "backbone": TINY_BACKBONE}]
    path = write_study(tmp_path / "nope", backbones=backbones, report={"baseline_backbone": "Nope"})
    refused(capsys, path, "report.baseline_backbone 'Nope' is no backbone of the study",
            "backbone labels (tiny, other)")
    study = load_study(write_study(tmp_path / "ok", backbones=backbones, report={"baseline_backbone": "other"}))
    assert study.report.baseline_backbone == "other" and study.report.baseline == "fft"
    assert load_study(write_study(tmp_path / "default")).report.baseline_backbone is None


def test_a_baseline_backbone_with_one_row_is_paired_with_every_method(tmp_path):
    """A model trained from scratch with its own recipe is one row: every method of a pretrained
    backbone is paired with it (e.g. "does a linear probe of SimCLR features beat a ResNet-18
    trained from scratch on the same labels?")."""
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, (150, 1))
    scratch = "ResNet-18 from scratch"
    records = (runs(tmp_path, rng, labels, "FFT (v2 recipe)", "fft", scratch, 0.0)
               + runs(tmp_path, rng, labels, "FFT", "fft", NEW, 0.8)
               + runs(tmp_path, rng, labels, "Linear probe", "linear", NEW, 0.0))
    grid = build_grid(records, "auroc", n_bootstrap=0)
    cells = paired_cells(grid, scratch, n_bootstrap=300, by="backbone")
    by_row = {c.row: c for c in cells}
    assert list(by_row) == [("FFT", NEW), ("Linear probe", NEW)]
    for (label, _), paired in by_row.items():
        assert paired.baseline == ("FFT (v2 recipe)", scratch)
        mine = {(r["seed"], r["subset"]): r["metrics"]["test"]["auroc"] for r in records if r["label"] == label}
        base = {(r["seed"], r["subset"]): r["metrics"]["test"]["auroc"] for r in records if r["backbone"] == scratch}
        assert paired.result.delta == pytest.approx(np.mean([mine[u] - base[u] for u in mine]), abs=1e-12)
    assert by_row[("FFT", NEW)].result.significant and not by_row[("Linear probe", NEW)].result.significant
    table = paired_table(grid, cells, n_bootstrap=300)
    assert f"minus FFT (v2 recipe)'s on {scratch} on the same test items" in table.caption
    # a column the single row has no cell in names that row
    extra = records + runs(tmp_path, rng, labels, "FFT", "fft", NEW, 0.8, fraction=0.1)
    found = {c.column[1]: c for c in paired_cells(build_grid(extra, "auroc", n_bootstrap=0), scratch,
                                                  n_bootstrap=0, by="backbone") if c.row[0] == "FFT"}
    assert found[0.1].reason == f"no FFT (v2 recipe) cell on {scratch}"
