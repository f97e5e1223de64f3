"""MAE pretraining: unlabeled images in, MAE-layout checkpoints out, on the shared epoch loop.

Per epoch (driven by :func:`medpeft.runtime.run_epochs`): train with AdamW (MAE's betas
0.9/0.95, no decay on biases, norms and tokens) under the per-iteration warmup-cosine
schedule, score the masked-patch loss of a fixed set of validation images under fixed masks
(comparable across epochs), and write ``checkpoint-last.pt`` (with optimizer state, for
``--resume``) plus ``checkpoint-<epoch>.pth`` at the ``save_at`` epochs. At the end: the final
``checkpoint-<epochs>.pth`` and its card, ``reconstruction.png``, ``metrics.json``, and with
``name`` a copy in the named cache. With ``probe`` set, a linear probe of the encoder is scored
every ``probe_every`` epochs (:mod:`medpeft.pretrain.probe`: ``probe.csv``, ``probe.png``), and
``probe_patience`` stops the run on its plateau; the final checkpoint is then the last epoch run.

Borrowed from facebookresearch/mae ``main_pretrain.py`` / ``engine_pretrain.py``: the
optimizer settings, the blr convention and the per-iteration schedule.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from rich.console import Console
from timm.optim import param_groups_weight_decay

from ..console import make_console
from ..runtime import (EpochEnd, EpochStats, Job, LoopResult, LoopSettings, RunDir, autocast_for, heldout_loss,
                       resolve_device, resolve_precision, run_epochs, seed_everything)
from .checkpoint import PretrainedCheckpoint, checkpoint_name, make_card, publish, save_checkpoint
from .config import PretrainConfig
from .data import UnlabeledData, load_unlabeled
from .figure import save_reconstruction_figure
from .probe import ProbeTracker, load_probe_data
from .mae import MaskedAutoencoderViT, build_mae, kept_count
from .simclr import build_simclr

FIGURE = "reconstruction.png"
VAL_MASK_SEED = 1234  # the held-out loss always hides the same patches
# where extra checkpoints go, how many epochs, and the probe (an observer) keep the weights so far
MAY_CHANGE = ("epochs", "save_at", "probe", "probe_every", "probe_fraction", "probe_patience")


def build_optimizer(model: MaskedAutoencoderViT, config: PretrainConfig) -> torch.optim.AdamW:
    groups = param_groups_weight_decay(model, config.train.weight_decay,
                                       no_weight_decay_list=model.no_weight_decay())
    return torch.optim.AdamW(groups, lr=config.train.learning_rate(), betas=config.train.betas)


class PretrainJob(Job):
    """One batch: the objective's loss (MAE's masked-patch loss or SimCLR's NT-Xent). One epoch:
    the held-out loss, the probe when one is due (and its plateau stop), numbered checkpoints."""

    def __init__(self, model: nn.Module, optimizer, config: PretrainConfig, data: UnlabeledData,
                 device, autocast, run: RunDir, params: dict, probe: ProbeTracker | None = None):
        self.model, self.optimizer, self.config, self.data = model, optimizer, config, data
        self.device, self.autocast, self.run, self.params = device, autocast, run, params
        self.probe = probe

    def loss(self, batch):
        return self.model(batch.to(self.device, non_blocking=True)).loss, len(batch)

    def end_epoch(self, stats: EpochStats) -> EpochEnd:
        val_loss = heldout_loss(self.model, objective_loss(self.model, self.device), self.data.val,
                                self.config.train.batch_size, VAL_MASK_SEED, self.autocast)
        record = {"epoch": stats.epoch + 1, "loss": stats.loss, "val_loss": val_loss, "lr": stats.lr,
                  "img_per_s": stats.images / stats.seconds, "seconds": stats.seconds}
        text = f"val loss {val_loss:.4f}" if val_loss is not None else ""
        if self.probe is None or not self.probe.due(stats.epoch + 1, stats.epochs):
            return EpochEnd(record, text=text)
        record["probe_auroc"] = self.probe.measure(self.model, self.config, self.device, self.autocast)
        stop = self.probe.add(stats.epoch + 1, record["probe_auroc"], val_loss)
        return EpochEnd(record, text=f"{text}  probe auroc {record['probe_auroc']:.4f}".strip(), stop=stop)

    def load_extra_state(self, state: dict) -> None:
        if self.probe is not None:
            self.probe.restore(state["history"])

    def after_record(self, stats: EpochStats, history: list[dict]) -> None:
        epoch, train = stats.epoch + 1, self.config.train
        if epoch in train.save_at and epoch < train.epochs:
            _save_numbered(self.run.path, self.model, self.config, epoch, self.data, history,
                           stats.img_per_s, stats.elapsed, self.params)


def pretrain(config: PretrainConfig, out_dir, *, resume: bool = False, name: str | None = None,
             console: Console | None = None, progress: bool = True) -> dict:
    """Pretrain an MAE into ``out_dir`` and return its summary (also in ``metrics.json``)."""
    console = console or make_console()
    if name is not None:
        PretrainedCheckpoint(name, config).check_publishable()  # a bad or taken name fails now, not after training
    config = config.resolved()
    device = resolve_device(config.train.device)
    probe_data = load_probe_data(config) if config.train.probe else None  # a bad probe fails before training
    run = RunDir(out_dir)
    with run.lock():
        state = run.start(config.to_dict(), resume=resume, may_change=MAY_CHANGE,
                          read=lambda saved: PretrainConfig.from_dict(saved).resolved().to_dict())
        return _pretrain(config, run, state, device, name, console, progress, probe_data)


def _pretrain(config: PretrainConfig, run: RunDir, state, device, name, console, progress, probe_data=None) -> dict:
    train = config.train
    precision, why = resolve_precision(device, train.precision)
    autocast = autocast_for(device, precision)
    data = load_unlabeled(config.data, config.backbone, train.val_images, config.objective)
    seed_everything(train.seed)
    model = build_objective(config).to(device)
    optimizer = build_optimizer(model, config)
    params = _describe(model, optimizer, config, data, device, console)
    console.print(f"precision {precision} ({why})")
    if state is None:
        run.log(f"start: {data.describe()}; {params}; precision {precision} ({why})")
    probe = None
    if probe_data is not None:
        probe = ProbeTracker(probe_data, train.probe_every, train.probe_patience, run.path, train.batch_size,
                             title=f"{config.objective.upper()} {config.backbone.name}: linear probe on {train.probe}")
        console.print(f"probe: logistic regression on {len(probe_data.train)} {probe_data.info.name} training "
                      f"images, AUROC on {len(probe_data.val)} validation images, every {train.probe_every} "
                      f"epochs" + (f", stop after {train.probe_patience} without improvement"
                                   if train.probe_patience else ""))
    job = PretrainJob(model, optimizer, config, data, device, autocast, run, params, probe)
    settings = LoopSettings(epochs=train.epochs, batch_size=train.batch_size, seed=train.seed,
                            lr=train.learning_rate(), min_lr=train.min_lr, warmup_epochs=train.warmup_epochs,
                            clip_grad=train.clip_grad, num_workers=train.num_workers,
                            pin_memory=device.type == "cuda")
    result = run_epochs(job, data.train, settings, run, config=config.to_dict(), may_change=MAY_CHANGE,
                        state=state, autocast=autocast, console=console, progress=progress)
    return _finish(run, model, config, data, result, params, device, name, console, probe)


def build_objective(config: PretrainConfig) -> nn.Module:
    """The model pretraining trains: MAE around a ViT, or SimCLR around any backbone."""
    if config.objective == "simclr":
        c = config.simclr
        return build_simclr(config.backbone, c.projection_dim, c.hidden_dim, c.temperature)
    return build_mae(config.backbone, config.mae)


def objective_loss(model: nn.Module, device):
    """The held-out loss of one batch (for :func:`medpeft.runtime.heldout_loss`): MAE hides the
    patches the generator draws, SimCLR's views come from the seeded global RNG."""
    def loss(batch, generator):
        images = batch.to(device)
        out = model(images, generator=generator) if isinstance(model, MaskedAutoencoderViT) else model(images)
        return out.loss, len(batch)
    return loss


def _save_numbered(folder: Path, model, config, epoch, data: UnlabeledData, history, img_per_s,
                   wall_time_s, params) -> Path:
    card = make_card(config, epoch=epoch, sources=data.sources, history=history, img_per_s=img_per_s,
                     wall_time_s=wall_time_s, params=params)
    return save_checkpoint(folder / checkpoint_name(epoch), model, config, epoch, card)


def _finish(run: RunDir, model, config: PretrainConfig, data: UnlabeledData, result: LoopResult, params,
            device, name, console, probe: ProbeTracker | None = None) -> dict:
    train, history = config.train, result.history
    epochs = history[-1]["epoch"]  # train.epochs, or fewer when the probe stopped the run
    final = _save_numbered(run.path, model, config, epochs, data, history, result.img_per_s,
                           result.elapsed, params)
    console.print(f"checkpoint: {final}")
    figure = None
    if train.figure_images and len(data.val) and isinstance(model, MaskedAutoencoderViT):
        picks = torch.linspace(0, len(data.val) - 1, min(train.figure_images, len(data.val))).round().long()
        images = torch.stack([data.val[int(i)] for i in picks]).to(device)
        figure = save_reconstruction_figure(
            model, images, run.path / FIGURE, mean=config.backbone.mean, std=config.backbone.std,
            title=f"MAE {config.backbone.name}, {config.backbone.img_size} px, mask "
                  f"{config.mae.mask_ratio:g}, epoch {epochs}")
        console.print(f"reconstruction figure: {figure}")
    summary = {"checkpoint": str(final), "epochs": epochs, "final_loss": history[-1]["loss"],
               "final_val_loss": history[-1]["val_loss"], "img_per_s": round(result.img_per_s, 1),
               "wall_time_s": round(result.elapsed, 1), "params": params,
               "figure": str(figure) if figure else None, "history": history}
    if probe is not None and probe.history:
        summary.update(probe=probe.history, final_probe_auroc=probe.history[-1]["probe_auroc"],
                       best_probe_epoch=probe.best()["epoch"], best_probe_auroc=probe.best()["probe_auroc"],
                       stopped_early=bool(result.stopped_early), stopped_because=result.stopped_early or None)
    if name:
        summary["cached"] = str(publish(final, name))
        console.print(f"published as {name!r}: {summary['cached']} (use --checkpoint {name})")
    run.save_metrics(summary)
    if not train.keep_checkpoint:
        run.remove_checkpoint()
    run.log(f"done: loss {history[-1]['loss']:.4f}, {result.img_per_s:.0f} img/s, {result.elapsed:.0f} s")
    return summary


def _describe(model, optimizer, config, data, device, console) -> dict[str, int]:
    """Print the resolved setup (nanoGPT's habit) and return parameter counts."""
    encoder_keys = set(model.encoder_keys())
    trainable = [(n, p.numel()) for n, p in model.named_parameters() if p.requires_grad]
    encoder = sum(size for n, size in trainable if n in encoder_keys)
    decoder = sum(size for n, size in trainable if n not in encoder_keys)
    groups = ", ".join(f"{len(g['params'])} tensors / {sum(p.numel() for p in g['params']):,} params "
                       f"at weight decay {g['weight_decay']:g}" for g in optimizer.param_groups)
    b, m, t = config.backbone, config.mae, config.train
    console.print(data.describe())
    if isinstance(model, MaskedAutoencoderViT):
        console.print(f"MAE {b.name} {b.img_size} px, patch {model.patch_size} ({model.num_patches} patches, "
                      f"{kept_count(model.num_patches, m.mask_ratio)} visible), "
                      f"decoder {m.decoder_depth} x {m.decoder_dim}; trainable: encoder {encoder:,}, "
                      f"decoder {decoder:,}")
    else:
        c = config.simclr
        console.print(f"SimCLR {b.name} {b.img_size} px, two views per image, NT-Xent temperature "
                      f"{c.temperature:g}, projection {c.hidden_dim} -> {c.projection_dim}; trainable: encoder "
                      f"{encoder:,}, projection head {decoder:,}")
    console.print(f"AdamW betas {t.betas}, peak lr {t.learning_rate():.3g} (blr {t.blr:g} x {t.batch_size}/256"
                  f"{'' if t.lr is None else ', overridden by --lr'}), {t.epochs} epochs, warmup "
                  f"{t.warmup_epochs:g}; groups: {groups}; device {device}")
    return {"encoder": encoder, "decoder": decoder}
