"""A diffusion run, from its config to a finished run directory, on the shared epoch loop.

Pretraining (``method: full``, no ``base``) and adaptation (a ``base`` and a method) are the
same run: the loop (:func:`medpeft.runtime.run_epochs`) gives resume, per-epoch seeding, the
warmup-cosine schedule, NaN refusal and the checkpoint; :class:`DiffusionJob` says what a batch
does (the DDPM noise-prediction loss, Ho et al. 2020, with the caption dropped for classifier-
free guidance at rate ``text.drop``) and what an epoch reports (a held-out denoising loss with
fixed noise and timesteps, about ten times a run). The final weights are kept: a held-out
denoising loss says little about sample quality, so no epoch is picked by it.

At the end the run directory holds ``config.yaml``, ``log.txt``, the trained tensors as
``adapter_config.json`` + ``adapter_model.safetensors`` (every weight for ``full``),
``samples/<prompt>.png`` grids, and ``metrics.json`` with the losses, parameter counts, times
and, when ``score.judge`` is set, the scores and their real-vs-real floor (:mod:`.scores`).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from rich.console import Console

from ..console import make_console
from ..methods._base import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from ..models.cache import cache_root, checkpoint_dir, publish_files
from ..runtime import (EpochEnd, EpochStats, Job, LoopSettings, Plan, RunDir, heldout_loss, resolve_device,
                       run_epochs, seed_everything)
from ..runtime.named_cache import CachedModel
from ..runtime.rundir import CONFIG, METRICS
from .captions import captions_of, most_frequent
from .config import DiffusionConfig, auto_val_every
from .data import CaptionedData, load_captioned, to_model_range
from ..methods import Method, adapter_state_dict, apply_method, create_method, load_adapter, save_adapter
from .sample import generate, save_grid, slug
from .scores import prompt_items, scores, split_halves
from .text import NAME as TEXT_ENCODER, text_encoder
from .unet import build_unet, train_scheduler

MAY_CHANGE = ("epochs", "steps", "min_steps")
VAL_SEED = 4321  # the held-out loss always uses the same noise and timesteps
VAL_BATCH = 64
SAMPLES = "samples"


class Conditioning:
    """Token states of a fixed list of captions, plus the empty caption's (for guidance)."""

    def __init__(self, captions: list[str], max_tokens: int, device):
        encoder = text_encoder(max_tokens)
        self.states, self.mask = encoder.encode(captions)
        self.empty_states, self.empty_mask = encoder.encode([""])
        self.states, self.mask = self.states.to(device), self.mask.to(device)
        self.empty_states, self.empty_mask = self.empty_states.to(device), self.empty_mask.to(device)

    def lookup(self, ids: torch.Tensor, drop: float = 0.0):
        states, mask = self.states[ids], self.mask[ids]
        if drop > 0:
            dropped = torch.rand(len(ids), device=states.device) < drop
            states = torch.where(dropped[:, None, None], self.empty_states, states)
            mask = torch.where(dropped[:, None], self.empty_mask, mask)
        return states, mask


class DiffusionJob(Job):
    """One batch: the noise-prediction loss. Some epochs: the held-out denoising loss."""

    def __init__(self, unet: nn.Module, method: Method, optimizer, config: DiffusionConfig,
                 data: CaptionedData, conditioning: Conditioning, device, val_every: int):
        self.model, self.method, self.optimizer, self.config = unet, method, optimizer, config
        self.data, self.conditioning, self.device, self.val_every = data, conditioning, device, val_every
        self.scheduler = train_scheduler(config.unet)

    def denoising_loss(self, images, ids, generator=None, drop: float = 0.0) -> torch.Tensor:
        images, ids = images.to(self.device), ids.to(self.device)
        noise = torch.randn(images.shape, generator=generator).to(self.device)
        t = torch.randint(0, self.config.unet.timesteps, (len(images),), generator=generator).to(self.device)
        states, mask = self.conditioning.lookup(ids, drop)
        noisy = self.scheduler.add_noise(images, noise, t)
        predicted = self.model(noisy, t, states, encoder_attention_mask=mask).sample
        return F.mse_loss(predicted.float(), noise)

    def loss(self, batch):
        images, ids = batch
        return self.denoising_loss(images, ids, drop=self.config.text.drop), len(images)

    def heldout_batch(self, batch, generator):
        """The held-out loss of one batch: noise and timesteps drawn from ``generator``, no caption dropped."""
        images, ids = batch
        return self.denoising_loss(images, ids, generator), len(images)

    def end_epoch(self, stats: EpochStats) -> EpochEnd:
        record = {"epoch": stats.epoch + 1, "loss": stats.loss, "lr": stats.lr, "steps": stats.steps}
        if (stats.epoch + 1) % self.val_every and stats.epoch + 1 != stats.epochs:
            return EpochEnd(record)
        record["val_loss"] = heldout_loss(self.model, self.heldout_batch, self.data.val, VAL_BATCH, VAL_SEED)
        return EpochEnd(record, text=f"val loss {record['val_loss']:.4f}" if record["val_loss"] is not None else "")

    def model_state(self) -> dict:
        return adapter_state_dict(self.model, self.method)

    def load_model_state(self, state: dict) -> None:
        self.model.load_state_dict(state, strict=False)


# ------------------------------------------------------------------------------ models

def resolve_model(reference: str) -> Path:
    """A diffusion run directory, or the folder of a cached diffusion model named ``reference``."""
    path = Path(reference).expanduser()
    for folder in ([path] if path.is_dir() else []) + ([checkpoint_dir(reference)] if "/" not in reference else []):
        if (folder / CONFIG).is_file() and (folder / ADAPTER_WEIGHTS).is_file():
            return folder
    raise FileNotFoundError(f"diffusion model {reference!r} is neither a finished diffusion run directory nor a "
                            f"cached name in {cache_root() / 'checkpoints'} (make one with `medpeft diffusion "
                            "pretrain --name NAME`)")


def with_base_defaults(values: dict) -> dict:
    """A config dict (e.g. from the command line) that names a ``base`` but not the model's shape
    gets the base's UNet, image size and caption length."""
    if not values.get("base"):
        return values
    base = RunDir(resolve_model(values["base"])).load_config()
    values = dict(values)
    values.setdefault("unet", base.get("unet", {}))
    values["data"] = {"img_size": base.get("data", {}).get("img_size", 28), **(values.get("data") or {})}
    values["text"] = {"max_tokens": base.get("text", {}).get("max_tokens", 24), **(values.get("text") or {})}
    return values


def base_unet(config: DiffusionConfig, channels: int) -> nn.Module:
    """The model a run starts from: its base (loaded, frozen state) or a seeded random UNet."""
    if config.base is None:
        seed_everything(config.train.seed)
        return build_unet(config.unet, config.data.img_size, channels)
    unet, base_config, method = load_model(config.base)
    if method.name != "fft":
        raise ValueError(f"base {config.base!r} is itself a {method.name} adaptation; adapt from a pretrained "
                         "(method full) model")
    if base_config.unet != config.unet or base_config.data.img_size != config.data.img_size:
        raise ValueError(f"base {config.base!r} has another UNet or image size than this run's config; copy "
                         f"its unet and img_size (unet: {base_config.to_dict()['unet']}, "
                         f"img_size: {base_config.data.img_size})")
    return unet


def load_model(reference: str) -> tuple[nn.Module, DiffusionConfig, Method]:
    """A finished run's UNet (its base plus its adapter), its config and its method."""
    folder = resolve_model(reference)
    config = DiffusionConfig.from_dict(RunDir(folder).load_config())
    channels = read_channels(folder)
    unet = base_unet(config, channels)
    unet, method = load_adapter(unet, folder)  # the UNet family's defaults under the saved options
    return unet.eval(), config, method


def read_channels(folder: Path) -> int:
    """The image channels of a diffusion run; a folder whose adapter is not a diffusion one is an error."""
    from ..serialization import load_json

    adapter = load_json(folder / ADAPTER_CONFIG, "adapter config")
    if adapter.get("kind") != "diffusion":
        raise ValueError(f"{folder}: not a diffusion adapter ({ADAPTER_CONFIG} has no kind: diffusion)")
    return int(adapter.get("channels", 1))


def model_files(run: Path) -> dict[str, Path]:
    """What a cached diffusion model is: its run's config, metrics and adapter files."""
    return {file_name: Path(run) / file_name for file_name in (CONFIG, METRICS, ADAPTER_CONFIG, ADAPTER_WEIGHTS)}


class CachedDiffusion(CachedModel):
    """The cached diffusion model ``name`` made with ``config``: the files of a finished run."""

    scratch, marker = "diffusion-runs", CONFIG

    def __init__(self, name: str, config: DiffusionConfig):
        super().__init__(name, config.to_dict())

    def read(self, values: dict) -> dict:
        return DiffusionConfig.from_dict(values).to_dict()

    def files(self, run: Path) -> dict[str, Path]:
        return model_files(run)


def publish(run_dir: Path, name: str) -> Path:
    """Copy a finished run's model files into the named cache (``--base NAME`` then finds it)."""
    return publish_files(name, model_files(run_dir))


def ensure_model(name: str, config: DiffusionConfig, *, console: Console | None = None,
                 progress: bool = True) -> Path:
    """The cached diffusion model ``name`` made with exactly ``config`` (trained once, then reused;
    the skeleton is :class:`medpeft.runtime.named_cache.CachedModel`)."""
    cached = CachedDiffusion(name, config)

    def train(work: Path) -> None:
        train_diffusion(config, work, resume=True, console=console, progress=progress)
        (console or make_console()).print(f"trained the diffusion model {name!r}; later runs reuse {cached.folder}")
        cached.publish(work)

    return cached.ensure(train)


# ------------------------------------------------------------------------------ the run

def train_diffusion(config: DiffusionConfig, out_dir, *, resume: bool = False, name: str | None = None,
                    console: Console | None = None, progress: bool = True) -> dict:
    """Train (or, with ``train.steps`` 0, only score) ``config`` into ``out_dir``; returns its metrics."""
    console = console or make_console()
    if name is not None:
        CachedDiffusion(name, config).check_publishable()  # a bad or taken name fails now, not after training
    run = RunDir(out_dir)
    with run.lock():
        state = run.start(config.to_dict(), resume=resume, may_change=MAY_CHANGE,
                          read=lambda saved: DiffusionConfig.from_dict(saved).to_dict())
        metrics = _train(config, run, state, console, progress)
    if name is not None:
        console.print(f"published as {name!r}: {publish(run.path, name)} (use --base {name})")
    return metrics


def _train(config: DiffusionConfig, run: RunDir, state, console: Console, progress: bool) -> dict:
    train = config.train
    device = resolve_device(train.device)
    data = load_captioned(config.data, config.captions, train.val_images)
    conditioning = Conditioning(data.captions, config.text.max_tokens, device)
    unet = base_unet(config, data.channels)
    seed_everything(train.seed)  # the method's own initialisation (LoRA's A) is seeded too
    method = create_method(config.method, config.method_options, family="unet")
    unet = apply_method(unet, method).to(device)
    trainable = sum(p.numel() for p in unet.parameters() if p.requires_grad)
    total = sum(p.numel() for p in unet.parameters())
    params = {"trainable_params": trainable, "total_params": total, "trainable_pct": 100.0 * trainable / total}
    console.print(data.describe())
    console.print(f"UNet {list(config.unet.channels)} ch, {config.data.img_size} px, text {TEXT_ENCODER} (frozen); "
                  f"{method.name}: trainable {trainable:,} of {total:,} ({params['trainable_pct']:.3g}%)"
                  + (f"; base {config.base}" if config.base else ""))
    if state is None:
        run.log(f"start: {data.describe()}; {method.name}, trainable {trainable:,} of {total:,}")
    history, elapsed, images_per_s, steps = [], 0.0, 0.0, 0
    if train.steps != 0:
        settings = LoopSettings(epochs=train.epochs, batch_size=train.batch_size, seed=train.seed,
                                lr=config.learning_rate, min_lr=train.min_lr, warmup_epochs=train.warmup_epochs,
                                clip_grad=train.clip_grad, num_workers=train.num_workers,
                                pin_memory=device.type == "cuda", steps=train.steps, min_steps=train.min_steps)
        plan = Plan.of(settings, len(data.train))
        console.print(f"AdamW, peak lr {config.learning_rate:.3g}, batch {train.batch_size}, {plan.describe()}")
        optimizer = torch.optim.AdamW([p for p in unet.parameters() if p.requires_grad], lr=config.learning_rate,
                                      weight_decay=train.weight_decay)
        job = DiffusionJob(unet, method, optimizer, config, data, conditioning, device, auto_val_every(plan.epochs))
        result = run_epochs(job, data.train, settings, run, config=config.to_dict(), may_change=MAY_CHANGE,
                            state=state, console=console, progress=progress)
        history, elapsed, images_per_s, steps = result.history, result.elapsed, result.img_per_s, result.steps
    return _finish(run, config, unet, method, data, params, history, elapsed, images_per_s, steps, device, console)


def _finish(run, config, unet, method, data, params, history, elapsed, images_per_s, steps, device, console) -> dict:
    save_adapter(unet, method, run.path, extra={"kind": "diffusion", "base": config.base, "channels": data.channels,
                                                "img_size": config.data.img_size, "text_encoder": TEXT_ENCODER})
    started = time.perf_counter()
    grids = save_sample_grids(unet, config, most_frequent(list(data.counts.elements()), config.sample.grid_prompts),
                              data.channels, run.path / SAMPLES)
    metrics = {"final_loss": history[-1]["loss"] if history else None,
               "val_loss": next((h["val_loss"] for h in reversed(history) if h.get("val_loss") is not None), None),
               **params, "steps": steps, "train_size": len(data.train), "wall_time_s": round(elapsed, 2),
               "train_img_per_s": round(images_per_s, 1), "grids": [str(g.relative_to(run.path)) for g in grids],
               "history": history}
    if config.score.judge:
        metrics["scores"] = score_model(unet, config, data, data.channels, device, console)
    metrics["sample_wall_time_s"] = round(time.perf_counter() - started, 2)
    run.save_metrics(metrics)
    if not config.train.keep_checkpoint:
        run.remove_checkpoint()
    line = final_line(metrics)
    console.print(line)
    run.log(line)
    return metrics


def final_line(metrics: dict) -> str:
    text = f"done: {metrics['steps']} steps, loss {metrics['final_loss'] or float('nan'):.4f}, {metrics['wall_time_s']:.0f} s"
    if "scores" in metrics:
        gen, real = metrics["scores"]["generated"], metrics["scores"]["real"]
        text += (f"; FD {gen['fd']:.2f} (real vs real {real['fd']:.2f}), precision {gen['precision']:.3f}, "
                 f"recall {gen['recall']:.3f}, conditional accuracy {gen['cond_acc']:.3f} "
                 f"(real {real['cond_acc']:.3f})")
    return text


def images_for(unet, config: DiffusionConfig, captions: list[str], channels: int, seed: int) -> torch.Tensor:
    conditioning = Conditioning(captions, config.text.max_tokens, next(unet.parameters()).device)
    return generate(unet, conditioning.states, conditioning.mask, conditioning.empty_states, conditioning.empty_mask,
                    unet_config=config.unet, sample=config.sample, seed=seed, img_size=config.data.img_size,
                    channels=channels)


def save_sample_grids(unet, config: DiffusionConfig, prompts: list[str], channels: int, folder: Path) -> list[Path]:
    if not config.sample.grid_images:
        return []
    paths = []
    for index, prompt in enumerate(prompts):
        images = images_for(unet, config, [prompt] * config.sample.grid_images, channels,
                            sampling_seed(config) + index)
        paths.append(save_grid(images, folder / f"{slug(prompt)}.png", title=prompt))
    return paths


def score_model(unet, config: DiffusionConfig, data: CaptionedData, channels: int, device, console) -> dict:
    """Scores of generated images of the target's test captions, and their real-vs-real floor."""
    from .judge import Judge

    judge = Judge(config.score.judge, device)
    target = data.splits[-1]  # the last spec is the target domain
    if list(judge.labels) != list(target.info.column_names):
        raise ValueError(f"judge {config.score.judge} predicts {judge.labels}, but {target.info.name} has "
                         f"{list(target.info.column_names)}; train the judge on the target data")
    test = target.test
    first, second = split_halves(test.labels, config.score.seed)
    prompts = prompt_items(first, test.labels, min(config.score.images, len(second)), config.score.seed)
    real = lambda items: torch.stack([(to_model_range(test.images.load(int(i)), config.data.img_size) + 1) / 2
                                      for i in items])
    reference_features, _ = judge.read(real(second))
    prompt_features, prompt_decisions = judge.read(real(prompts))
    captions = captions_of(test.labels[prompts], target.info, config.captions)
    generated = images_for(unet, config, captions, channels, sampling_seed(config))
    fake_features, fake_decisions = judge.read(generated)
    k, task, prompted = config.score.neighbours, target.info.task, test.labels[prompts]
    out = {"generated": scores(reference_features, fake_features, fake_decisions, prompted, task, k),
           "real": scores(reference_features, prompt_features, prompt_decisions, prompted, task, k),
           "reference_n": int(len(second)), "judge": judge.path, "dataset": target.info.name}
    out["generated"]["per_prompt_acc"] = per_prompt_accuracy(captions, fake_decisions, prompted)
    return out


def sampling_seed(config: DiffusionConfig) -> int:
    """The scores' sampling noise varies with the training seed; the real test halves do not."""
    return config.score.seed + 1000 * config.train.seed


def per_prompt_accuracy(captions: list[str], decisions: np.ndarray, prompted: np.ndarray) -> dict[str, float]:
    """Share of the generated images of each prompt that the judge reads as what the prompt asks."""
    out = {}
    for caption in dict.fromkeys(captions):
        rows = [i for i, c in enumerate(captions) if c == caption]
        out[caption] = float((decisions[rows] == prompted[rows]).all(axis=1).mean())
    return out
