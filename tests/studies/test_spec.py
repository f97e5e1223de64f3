"""Study files: cell expansion and the cell key (what identifies a cell across runs)."""
from __future__ import annotations

import pytest

from medpeft.runtime import RunConfig
from medpeft.studies.spec import cells, load_study, with_params

from .conftest import write_study


def test_cells_are_the_grid_of_data_fractions_backbones_methods_and_seeds(tmp_path):
    path = write_study(tmp_path / "s", seeds=[0, 1], backbones=[
        {"label": "vit", "backbone": {"name": "vit_tiny", "img_size": 16, "patch_size": 8, "timm_kwargs": {"depth": 1}}},
        {"label": "cnn", "backbone": {"name": "resnet18", "img_size": 16}}])
    grid = cells(load_study(path))
    # LoRA fits ViTs only: vit gets FFT and LoRA, cnn only FFT; 2 fractions, 2 seeds
    assert len(grid) == (2 + 1) * 2 * 2
    assert {(c.backbone, c.method) for c in grid} == {("vit", "FFT"), ("vit", "LoRA"), ("cnn", "FFT")}
    assert len({c.key for c in grid}) == len(grid)
    assert all(c.config.train.seed == c.seed for c in grid)


def test_the_key_follows_the_study_file_not_the_codes_defaults(tmp_path, monkeypatch):
    path = write_study(tmp_path / "s")
    before = [c.key for c in cells(load_study(path))]
    real = RunConfig.to_dict
    monkeypatch.setattr(RunConfig, "to_dict", lambda self: {**real(self), "an_option_added_later": 1})
    assert [c.key for c in cells(load_study(path))] == before  # a code upgrade keeps the cells
    edited = write_study(tmp_path / "t", train={"epochs": 2, "batch_size": 32, "n_bootstrap": 10})
    assert not set(before) & {c.key for c in cells(load_study(edited))}  # an edit makes new ones


def test_searched_parameters_make_their_own_cell(tmp_path):
    cell = cells(load_study(write_study(tmp_path / "s")))[1]  # LoRA
    tuned = with_params(cell, {"lr": 1e-3, "rank": 4})
    assert tuned.key != cell.key and tuned.key.split("-")[:-1] == cell.key.split("-")[:-1]
    assert tuned.config.train.lr == 1e-3 and tuned.config.method_options.rank == 4
    with pytest.raises(ValueError, match="cannot apply searched parameter 'nope'"):
        with_params(cell, {"nope": 1})


def test_a_cnn_backbone_is_pretrained_with_simclr_and_a_bad_objective_is_refused(tmp_path):
    from medpeft.studies.spec import pretrain_config
    resnet = {"label": "cnn", "backbone": {"name": "resnet50", "img_size": 16},
              "pretrain": {"name": "r50-simclr", "objective": "simclr", "simclr": {"temperature": 0.2},
                           "train": {"epochs": 2}}}
    study = load_study(write_study(tmp_path / "s", backbones=[resnet]))
    config = pretrain_config(study, study.backbones[0])
    assert (config.objective, config.simclr.temperature, config.train.epochs) == ("simclr", 0.2, 2)
    assert (config.backbone.name, config.backbone.img_size) == ("resnet50", 16)
    assert {c.config.backbone.checkpoint for c in cells(study)} == {"r50-simclr"}
    bad = {**resnet, "pretrain": {**resnet["pretrain"], "objective": "mae"}}
    with pytest.raises(ValueError, match="MAE pretraining needs a ViT"):
        pretrain_config(study, load_study(write_study(tmp_path / "t", backbones=[bad])).backbones[0])


# The fields of the study file's entries when cell keys were first written; a field added since
# must be marked ``added_later`` so that a study run before the upgrade keeps its finished cells.
KEYED_FIELDS = {"DataEntry": {"spec", "label", "data_root", "augment", "skip_bad"},
                "PretrainStep": {"name", "data", "mae", "train"}}


def test_fields_added_to_the_study_schema_do_not_rename_existing_cells(tmp_path):
    import dataclasses

    from medpeft.studies import spec
    for name, keyed in KEYED_FIELDS.items():
        fields = dataclasses.fields(getattr(spec, name))
        assert {f.name for f in fields if not f.metadata.get("added_later")} == keyed, name
    mae = {"label": "vit", "backbone": {"name": "vit_tiny", "img_size": 16, "patch_size": 8},
           "pretrain": {"name": "vit-mae", "train": {"epochs": 1}}}
    declared = cells(load_study(write_study(tmp_path / "s", backbones=[mae])))[0].declared
    assert set(declared["backbone"]["pretrain"]) == KEYED_FIELDS["PretrainStep"]
    assert set(declared["data"]) == KEYED_FIELDS["DataEntry"]
    explicit = {**mae, "pretrain": {**mae["pretrain"], "objective": "simclr"}}
    declared = cells(load_study(write_study(tmp_path / "t", backbones=[explicit])))[0].declared
    assert declared["backbone"]["pretrain"]["objective"] == "simclr"  # a value that is not the default counts


def test_a_slice_extends_a_study_and_gets_its_cells(tmp_path):
    import yaml
    full = write_study(tmp_path / "full", data=[{"spec": "synthetic-cxr?n=96&n_val=48&n_test=64&size=16", "label": "a"},
                                                {"spec": "synthetic-cxr?n=96&n_val=48&n_test=64&size=16&seed=5",
                                                 "label": "b"}], fractions=[0.5, 1.0])
    (tmp_path / "slice").mkdir()
    (tmp_path / "slice" / "study.yaml").write_text(yaml.safe_dump(
        {"extends": "../full", "name": "slice", "data": [{"spec": "synthetic-cxr?n=96&n_val=48&n_test=64&size=16&seed=5",
                                                        "label": "b"}], "fractions": [1.0]}))
    whole, part = cells(load_study(full)), cells(load_study(tmp_path / "slice"))
    assert len(whole) == 8 and len(part) == 2  # FFT and LoRA on b at 100%
    # the same cells (same keys, same run configs) as the full study's, so their runs are interchangeable
    assert {c.key: c.config.to_dict() for c in part} == {c.key: c.config.to_dict() for c in whole
                                                         if c.dataset == "b" and c.fraction == 1.0}
    assert load_study(tmp_path / "slice").folder == str((tmp_path / "slice").resolve())


def test_a_missing_or_circular_extends_is_a_clear_error(tmp_path):
    import yaml
    for name, base in (("a", "../b"), ("b", "../a"), ("c", "../nowhere")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "study.yaml").write_text(yaml.safe_dump({"extends": base, "name": name}))
    with pytest.raises(ValueError, match="study files extend each other"):
        load_study(tmp_path / "a")
    with pytest.raises(ValueError, match="extends '../nowhere', which is not a study file"):
        load_study(tmp_path / "c")
