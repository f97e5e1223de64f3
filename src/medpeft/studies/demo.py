"""``make demo``: MED-PEFT's Table 1 in miniature, on the embedded synthetic chest X-rays.

FFT vs linear probe vs LoRA at 1%, 10% and 100% of the training labels with a small ViT,
printed as one table (test macro AUROC, each method's difference to FFT, trainable share,
wall time) and written to ``<out>/table.md``. Finished runs are reused, so a second ``make demo`` only
prints the table. Budget: under 10 minutes on a 2-core CPU, including the one-off MAE
pretraining of the backbone (cached in ``$MEDPEFT_CACHE``, reused by later demos).
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from ..console import make_console, print_renderable
from ..models import BackboneConfig
from ..runtime import DataConfig, RunConfig, RunDir, TrainConfig, run_slug
from ..train import finetune
from .tables import paper_table, write_markdown

METHOD_LABELS = {"fft": "FFT", "linear": "Linear probe", "lora": "LoRA r=8"}


@dataclass
class DemoConfig:
    data: str = "synthetic-cxr?n=1000&n_val=300&n_test=1000&size=32"
    backbone: BackboneConfig = field(default_factory=lambda: BackboneConfig(
        "vit_tiny", img_size=32, patch_size=4, drop_path=0.0, timm_kwargs={"depth": 6}))
    methods: tuple[str, ...] = ("fft", "linear", "lora")
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0)
    # more passes over small subsets, so every fraction gets a comparable number of steps
    epochs: dict = field(default_factory=lambda: {0.01: 30, 0.1: 12, 1.0: 6})
    seed: int = 0
    batch_size: int = 64
    n_bootstrap: int = 200
    # MAE-pretrain the backbone once (cached under the name below) on unlabeled images from
    # another seed of the generator, i.e. other patients than the labelled ones.
    pretrain: bool = True
    pretrain_data: str = "synthetic-cxr?n=4000&n_val=200&n_test=1&size=32&seed=1"
    pretrain_epochs: int = 12
    pretrain_name: str = "demo-vit-tiny-mae"

    def pretrain_config(self):
        from ..pretrain import PretrainConfig, PretrainDataConfig, PretrainTrainConfig
        return PretrainConfig(data=PretrainDataConfig(specs=(self.pretrain_data,)), backbone=self.backbone,
                              train=PretrainTrainConfig(epochs=self.pretrain_epochs, figure_images=4))

    def run_config(self, method: str, fraction: float, checkpoint: str | None) -> RunConfig:
        return RunConfig(
            data=DataConfig(spec=self.data, fraction=fraction),
            backbone=dataclasses.replace(self.backbone, checkpoint=checkpoint),
            method=method,
            method_options={"rank": 8} if method == "lora" else {},
            train=TrainConfig(epochs=self.epochs[fraction], batch_size=self.batch_size, seed=self.seed,
                              warmup_epochs=1.0, layer_decay=1.0 if checkpoint is None else 0.75,
                              n_bootstrap=self.n_bootstrap))


def _pretrained_backbone(config: DemoConfig, console: Console) -> str | None:
    """The name of a cached MAE backbone for the demo, or None (random initialisation)."""
    if not config.pretrain:
        return None
    from ..pretrain import ensure_pretrained
    ensure_pretrained(config.pretrain_name, config.pretrain_config(), console=console)
    return config.pretrain_name


def run_demo(out: str | Path = "runs/demo", *, console: Console | None = None, fresh: bool = False,
             config: DemoConfig | None = None) -> str:
    console = console or make_console()
    config = config or DemoConfig()
    out = Path(out)
    started = time.perf_counter()
    checkpoint = _pretrained_backbone(config, console)
    init = (f"MAE-pretrained backbone '{checkpoint}' ({config.pretrain_epochs} epochs on "
            f"{config.pretrain_data})" if checkpoint else
            "randomly initialised backbone (no pretrained weights available)")
    console.rule(f"medpeft demo: {config.data}, {config.backbone.name}, {init}")
    results = {}
    for fraction in config.fractions:
        for method in config.methods:
            run_dir = out / run_slug("mae" if checkpoint else "scratch", method, f"f{fraction:g}")
            if fresh or not RunDir(run_dir).is_complete():
                if fresh and run_dir.exists():
                    shutil.rmtree(run_dir)
                console.rule(f"{METHOD_LABELS[method]}, {fraction:.0%} of the labels")
                finetune(config.run_config(method, fraction, checkpoint), run_dir, resume=True,
                         console=console)
            results[(method, fraction)] = RunDir(run_dir).load_metrics()
    table = paper_table(results, config.methods, config.fractions, METHOD_LABELS,
                        title=f"Test macro AUROC (%) on {config.data}; {config.backbone.name} "
                              f"({init}); seed {config.seed}")
    print_renderable(console, table.to_rich())
    markdown = write_markdown(out / "table.md", table, command="make demo",
                              note=f"one seed; total demo time {time.perf_counter() - started:.0f} s")
    console.print(f"written {out / 'table.md'}")
    return markdown
