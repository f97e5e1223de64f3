"""The judge: a medpeft classifier trained on real images of the target domain, read back from
its run directory (``medpeft finetune ... --method fft``), whose pre-logit features are the
space of the Fréchet distance and precision/recall and whose decisions give the conditional
accuracy (:mod:`.scores`). Its decisions use the thresholds it chose on its own validation split.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..methods import load_adapter, read_adapter_config
from ..runtime import RunConfig, RunDir, build_base


class Judge:
    def __init__(self, run_dir, device: str | torch.device = "cpu"):
        run = RunDir(run_dir)
        if not run.is_complete():
            raise ValueError(f"judge {run_dir}: not a finished classifier run (no metrics.json); train one "
                             "with `medpeft finetune --data <target> --method fft --out <dir>`")
        self.config = RunConfig.from_dict(run.load_config())
        adapter = read_adapter_config(run.path)
        model, _ = build_base(self.config, adapter["num_outputs"])
        self.model, _ = load_adapter(model, run.path)
        self.model.to(device).eval()
        self.device = torch.device(device)
        self.task, self.labels = adapter["task"], list(adapter["labels"])
        thresholds = adapter.get("thresholds") or {}
        self.thresholds = torch.tensor([float(thresholds.get(name, 0.5)) for name in self.labels])
        backbone = self.config.backbone.with_defaults()[0]
        self.img_size = backbone.img_size
        self.mean = torch.tensor(_three(backbone.mean)).view(1, 3, 1, 1)
        self.std = torch.tensor(_three(backbone.std)).view(1, 3, 1, 1)
        self.path = str(run.path)

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [0, 1] -> the judge's input (N, 3, S, S), normalised."""
        images = images.float()
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        if images.shape[-1] != self.img_size:
            images = F.interpolate(images, size=(self.img_size, self.img_size), mode="bilinear", antialias=True,
                                   align_corners=False)
        return (images - self.mean) / self.std

    @torch.no_grad()
    def read(self, images: torch.Tensor, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(features (N, D), decisions (N, L)) for images (N, C, H, W) in [0, 1]."""
        features, decisions = [], []
        for start in range(0, len(images), batch_size):
            x = self._prepare(images[start:start + batch_size]).to(self.device)
            pooled = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
            logits = self.model.get_classifier()(pooled).float().cpu()
            features.append(pooled.float().cpu())
            decisions.append(self._decide(logits))
        return torch.cat(features).numpy(), np.concatenate(decisions)

    def _decide(self, logits: torch.Tensor) -> np.ndarray:
        if self.task == "multiclass":
            return logits.argmax(1, keepdim=True).numpy()
        return (torch.sigmoid(logits) >= self.thresholds).long().numpy()


def _three(values) -> list[float]:
    values = [float(v) for v in values]
    return values * 3 if len(values) == 1 else values
