"""Every study file shipped in experiments/ loads and builds every cell's config (no data is read)."""
from __future__ import annotations

from pathlib import Path

import pytest

from medpeft.studies.spec import cells, load_study, search_space

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
CLASSIFIER_STUDIES = sorted(p for p in EXPERIMENTS.glob("*/study.yaml") if p.parent.name != "diffusion")
# the low-label slices of MED-PEFT's Table 1 re-run: their ResNet-18 anchor (a 100%-label recipe)
# is re-run in the study of all the labels, experiments/table1-full-labels
ANCHOR_ELSEWHERE = {"demo": None, "table1": "table1-full-labels", "table1-budget-val": "table1-full-labels",
                    "table1-full-labels-long": "table1-full-labels"}


def test_the_shipped_studies_are_found():
    assert {p.parent.name for p in CLASSIFIER_STUDIES} >= {"demo", "mae_pretraining", "lora-rank", "dutt-methods"}


@pytest.mark.parametrize("path", CLASSIFIER_STUDIES, ids=lambda p: p.parent.name)
def test_a_shipped_study_loads_with_its_anchor(path):
    study = load_study(path)
    grid = cells(study)
    assert len({c.key for c in grid}) == len(grid)
    assert all(c.config.train.min_steps >= 150 or c.config.train.steps for c in grid), "every cell is trained"
    if path.parent.name not in ANCHOR_ELSEWHERE:  # issue 12: the MedMNIST v2 ResNet-18 is re-run in every table
        assert any(c.config.backbone.name == "resnet18" for c in grid)
        assert {a.dataset for a in study.report.anchors} == {d.label for d in study.data}


def test_the_dutt_study_searches_every_method_but_the_anchor():
    for name in ("dutt-methods", "dutt-methods-pneumonia-10"):
        study = load_study(EXPERIMENTS / name / "study.yaml")
        grid = cells(study)
        methods = {(c.backbone, c.method) for c in grid}
        assert len({m for b, m in methods if b.startswith("ViT")}) == 18
        assert len({m for b, m in methods if b.startswith("ResNet-50")}) == 7
        for backbone, method in methods:
            assert bool(search_space(study, method, "")) == (not backbone.startswith("ResNet-18")), method


def test_every_dutt_slice_is_a_slice_of_the_full_study():
    """A slice (its own file, usually with ``extends: ../dutt-methods``) trains exactly the full
    study's cells for its data and fraction: the same run configs, foundation models and search."""
    full = load_study(EXPERIMENTS / "dutt-methods" / "study.yaml")

    def where(cell):
        return cell.dataset, cell.fraction, cell.backbone, cell.method, cell.seed

    whole = {where(c): c for c in cells(full)}
    slices = sorted(EXPERIMENTS.glob("dutt-methods-*/study.yaml"))
    assert {p.parent.name for p in slices} >= {"dutt-methods-pneumonia-10", "dutt-methods-pneumonia-1",
                                                "dutt-methods-breast-100"}
    for path in slices:
        study = load_study(path)
        assert study.search == full.search and study.seeds == full.seeds, path.parent.name
        for cell in cells(study):
            twin = whole[where(cell)]
            assert cell.config.to_dict() == twin.config.to_dict(), (path.parent.name, where(cell))
            assert (cell.pretrain.to_dict() if cell.pretrain else None) == \
                (twin.pretrain.to_dict() if twin.pretrain else None), (path.parent.name, where(cell))


# Each shipped study's cell keys when they were last checked (shipped_study_keys.json: a digest
# of the study file's values but its description, report and reuse, the number of cells and a digest of their keys in order). A change
# of code that renames a shipped study's cells (e.g. a new study-file option such as `subsets`
# entering every key) loses the finished runs of that study; this catches it. A study file that
# was edited since (its values' digest differs) fails too, with the command that records its new
# keys (`python tests/studies/test_shipped_studies.py`) when they are intended.
KEYS_FILE = Path(__file__).with_name("shipped_study_keys.json")
WITH_SUBSETS = {"table1", "table1-budget-val", "cnn-foundation"}  # written with `subsets:` (issue 26)


def key_digests(path: Path) -> dict:
    import hashlib
    import json

    from medpeft.studies.spec import read_study_file
    _, values = read_study_file(path)
    for name in ("folder", "description", "report", "reuse"):  # never part of a cell's key
        values.pop(name, None)
    keys = [c.key for c in cells(load_study(path))]
    return {"file": hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16],
            "cells": len(keys), "keys": hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]}


@pytest.mark.parametrize("path", CLASSIFIER_STUDIES, ids=lambda p: p.parent.name)
def test_a_shipped_study_keeps_its_cell_keys(path):
    import json
    known = json.loads(KEYS_FILE.read_text()).get(path.parent.name)
    now = key_digests(path)
    record = "python tests/studies/test_shipped_studies.py records the keys if the change is intended"
    assert known is not None and known["file"] == now["file"], \
        f"{path.parent.name}: study file new or edited since its keys were recorded; {record}"
    assert now == known, f"{path.parent.name}: the cells' keys changed (finished runs would be trained again); {record}"
    if path.parent.name not in WITH_SUBSETS:  # the studies from before `subsets` kept cells without a subset
        assert load_study(path).subsets is None and not any("subset" in c.record() for c in cells(load_study(path)))


if __name__ == "__main__":  # record the shipped studies' keys (after an intended change)
    import json
    KEYS_FILE.write_text(json.dumps({p.parent.name: key_digests(p) for p in CLASSIFIER_STUDIES},
                                    indent=1, sort_keys=True) + "\n")
