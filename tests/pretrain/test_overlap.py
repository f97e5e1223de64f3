"""``allow_overlap`` for pretraining and diffusion data (issue 27, item 2): the same image in two
splits of a spec they read is an error there too, unless ``allow_overlap`` (``--allow-overlap``),
for the pooled images, the probe's labelled splits and diffusion's captioned images; the key
round-trips through the config's dict and YAML forms, and configs saved before it load (False)."""
from __future__ import annotations

import re

import pytest

from medpeft.cli import build_parser
from medpeft.cli.diffusion import diffusion_config_from_args
from medpeft.cli.pretrain import pretrain_config_from_args
from medpeft.data import DataError
from medpeft.diffusion import CaptionConfig, DiffusionConfig, DiffusionDataConfig
from medpeft.diffusion.data import load_captioned
from medpeft.pretrain import PretrainConfig, PretrainDataConfig, PretrainTrainConfig
from medpeft.pretrain.data import load_unlabeled
from medpeft.pretrain.probe import load_probe_data
from medpeft.serialization import load_yaml, save_yaml

from ..data.test_lying_data import images, table_rows, write_table
from .conftest import tiny_backbone

OVERLAP = r"3 image\(s\) of test are listed in train too"


@pytest.fixture
def overlapping(tmp_path) -> str:
    """A CSV spec whose test split lists three training images again."""
    names = images(tmp_path / "img", 40)
    rows = table_rows(names) + [(names[i], i % 2, "test") for i in range(3)]
    table = write_table(tmp_path / "data.csv", rows)
    return f"csv:{table}?root={tmp_path / 'img'}"


def test_allow_overlap_round_trips_and_configs_saved_before_it_load(tmp_path):
    config = PretrainConfig(data=PretrainDataConfig(specs=("synthetic-cxr",), allow_overlap=True))
    assert config.to_dict()["data"]["allow_overlap"] is True
    assert PretrainConfig.from_dict(config.to_dict()) == config
    save_yaml(tmp_path / "config.yaml", config.to_dict())
    assert "allow_overlap: true" in (tmp_path / "config.yaml").read_text()
    assert PretrainConfig.from_dict(load_yaml(tmp_path / "config.yaml")).data.allow_overlap is True
    before = config.to_dict()
    del before["data"]["allow_overlap"]  # a config.yaml written before the key existed
    assert PretrainConfig.from_dict(before).data.allow_overlap is False
    assert PretrainDataConfig().allow_overlap is False

    diffusion = DiffusionConfig(data=DiffusionDataConfig(allow_overlap=True))
    assert DiffusionConfig.from_dict(diffusion.to_dict()).data.allow_overlap is True
    before = diffusion.to_dict()
    del before["data"]["allow_overlap"]
    assert DiffusionConfig.from_dict(before).data.allow_overlap is False


def test_the_flag_is_on_the_pretrain_and_diffusion_commands():
    parser = build_parser()
    args = parser.parse_args(["pretrain", "--data", "synthetic-cxr", "--allow-overlap"])
    assert pretrain_config_from_args(args).data.allow_overlap is True
    args = parser.parse_args(["pretrain", "--data", "synthetic-cxr"])
    assert pretrain_config_from_args(args).data.allow_overlap is False
    args = parser.parse_args(["diffusion", "pretrain", "--data", "synthetic-cxr?size=28", "--allow-overlap"])
    assert diffusion_config_from_args(args).data.allow_overlap is True


def test_pretraining_data_with_overlapping_splits_errors_without_allow_overlap(overlapping):
    backbone = PretrainConfig(backbone=tiny_backbone()).resolved().backbone  # with its mean and std
    with pytest.raises(DataError, match=OVERLAP + r".*--allow-overlap"):
        load_unlabeled(PretrainDataConfig(specs=(overlapping,)), backbone, val_images=4)
    with pytest.warns(UserWarning, match=OVERLAP + r" \(--allow-overlap\)"):
        data = load_unlabeled(PretrainDataConfig(specs=(overlapping,), allow_overlap=True), backbone, val_images=4)
    assert len(data.train) == 24 and len(data.val) == 4
    assert data.splits[0].duplicates.path_across == {"train/test": 3}


def test_the_probe_loads_its_labelled_splits_with_the_config_s_allow_overlap(overlapping):
    def config(allow: bool) -> PretrainConfig:
        return PretrainConfig(data=PretrainDataConfig(specs=("synthetic-cxr?n=48&size=16",), allow_overlap=allow),
                              backbone=tiny_backbone(),
                              train=PretrainTrainConfig(epochs=1, probe=overlapping, device="cpu")).resolved()

    with pytest.raises(ValueError, match=re.escape(f"probe {overlapping!r}: ") + ".*" + OVERLAP):
        load_probe_data(config(False))
    with pytest.warns(UserWarning, match=OVERLAP + r" \(--allow-overlap\)"):
        splits = load_probe_data(config(True))
    assert len(splits.test) == 11


def test_diffusion_data_with_overlapping_splits_errors_without_allow_overlap(overlapping):
    with pytest.raises(DataError, match=OVERLAP):
        load_captioned(DiffusionDataConfig(specs=(overlapping,), img_size=16), CaptionConfig(modality="noise"),
                       val_images=4)
    with pytest.warns(UserWarning, match=OVERLAP + r" \(--allow-overlap\)"):
        data = load_captioned(DiffusionDataConfig(specs=(overlapping,), img_size=16, allow_overlap=True),
                              CaptionConfig(modality="noise"), val_images=4)
    assert len(data.train) == 24
