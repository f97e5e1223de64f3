"""The fine-tuning loop end to end: learning, determinism, resume, NaN, run directory, CLI."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from medpeft.cli import main
from medpeft.inference import evaluate_run
from medpeft.models import BackboneConfig
from medpeft.runtime import DataConfig, RunConfig, TrainConfig, TrainingDiverged
from medpeft.train import finetune
from medpeft.train import finetuning as loop_module
from rich.console import Console

QUIET = Console(quiet=True)
TINY_DATA = "synthetic-cxr?n=96&n_val=48&n_test=64&size=16"


def tiny_config(method="lora", epochs=2, **train) -> RunConfig:
    return RunConfig(
        data=DataConfig(spec=TINY_DATA),
        backbone=BackboneConfig("vit_tiny", img_size=16, patch_size=4, drop_path=0.1,
                                timm_kwargs={"depth": 2}),
        method=method,
        train=TrainConfig(epochs=epochs, batch_size=32, n_bootstrap=20, **train))


def pneumonia_config(method: str, fraction: float, epochs: int, root) -> RunConfig:
    return RunConfig(
        data=DataConfig(spec="medmnist:pneumoniamnist", data_root=str(root), fraction=fraction),
        backbone=BackboneConfig("vit_tiny", img_size=28, patch_size=4, drop_path=0.0),
        method=method, train=TrainConfig(epochs=epochs, layer_decay=1.0, warmup_epochs=0.5, n_bootstrap=100))


def test_run_directory_contract(tmp_path):
    metrics = finetune(tiny_config(), tmp_path / "run", console=QUIET)
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} == {"config.yaml", "metrics.json", "log.txt", "adapter_config.json",
                                               "adapter_model.safetensors", "predictions-test.npz"}
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["test"]["auroc"] == pytest.approx(metrics["test"]["auroc"])
    for key in ("val", "test", "best_epoch", "epochs_run", "trainable_params", "total_params",
                "wall_time_s", "train_img_per_s", "steps", "planned_steps", "planned_epochs", "val_every"):
        assert key in saved
    assert (saved["steps"], saved["planned_steps"], saved["planned_epochs"], saved["val_every"]) == (6, 6, 2, 1)
    # the thresholds chosen on validation are stored with the adapter and reported beside the 0.5 figures
    labels = ["nodule", "effusion", "cardiomegaly", "opacity", "pneumothorax"]
    assert list(saved["test"]["thresholds"]) == labels
    assert json.loads((run / "adapter_config.json").read_text())["thresholds"] == saved["test"]["thresholds"]
    for key in ("acc_at_val_threshold", "f1_macro_at_val_threshold"):
        assert 0.0 <= saved["test"][key] <= 1.0
    low, high = saved["test"]["auroc_ci95"]
    assert 0.0 <= low <= saved["test"]["auroc"] <= high <= 1.0
    adapter = load_file(str(run / "adapter_model.safetensors"))
    assert sum(t.numel() for t in adapter.values()) == saved["trainable_params"]
    assert len((run / "log.txt").read_text().splitlines()) >= 3
    # the saved weights score the same when re-attached to a rebuilt backbone
    again = evaluate_run(run, n_bootstrap=0)
    assert again["auroc"] == pytest.approx(metrics["test"]["auroc"], abs=1e-6)
    assert again["thresholds"] == saved["test"]["thresholds"]
    assert again["f1_macro_at_val_threshold"] == pytest.approx(saved["test"]["f1_macro_at_val_threshold"])


def test_same_config_and_seed_give_the_same_metrics(tmp_path):
    first = finetune(tiny_config(), tmp_path / "a", console=QUIET)
    second = finetune(tiny_config(), tmp_path / "b", console=QUIET)
    assert first["test"] == second["test"]
    other = finetune(tiny_config(seed=1), tmp_path / "c", console=QUIET)
    assert other["test"]["auroc"] != first["test"]["auroc"]


def kill_in_third_epoch(config: RunConfig, out, monkeypatch) -> None:
    """Train ``config`` into ``out`` and interrupt it after one optimiser step of the third
    epoch (96 images / batch 32 = 3 steps per epoch), leaving the epoch-2 checkpoint."""
    real_loss = loop_module.ClassifierJob.loss
    calls = {"n": 0}

    def killed(job, batch):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return real_loss(job, batch)

    with monkeypatch.context() as patch:
        patch.setattr(loop_module.ClassifierJob, "loss", killed)
        with pytest.raises(KeyboardInterrupt):
            finetune(config, out, console=QUIET)


@pytest.mark.parametrize("length", [{"epochs": 3}, {"steps": 14, "val_every": 2, "patience": 1}],
                         ids=["epochs", "steps-val_every"])  # the second stops early after epoch 4
def test_resume_after_a_kill_mid_epoch_matches_an_uninterrupted_run(tmp_path, monkeypatch, length):
    config = tiny_config(method="fft", keep_checkpoint=True, **length)
    reference = finetune(config, tmp_path / "whole", console=QUIET)

    kill_in_third_epoch(config, tmp_path / "killed", monkeypatch)
    assert not (tmp_path / "killed" / "metrics.json").exists()
    assert torch.load(tmp_path / "killed" / "checkpoint-last.pt", weights_only=True)["epoch"] == 1
    resumed = finetune(config, tmp_path / "killed", resume=True, console=QUIET)
    assert resumed["test"] == reference["test"]
    assert resumed["history"] == reference["history"]
    a = load_file(str(tmp_path / "whole" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_started_by_an_earlier_medpeft_resumes(tmp_path, monkeypatch):
    """A field added since the run started (at its default) or a value that used to be written
    out resolved must not block --resume: configs are compared as today's code reads them."""
    from medpeft.serialization import load_yaml, save_yaml
    from medpeft.runtime import resolve_run_config
    from medpeft.runtime.rundir import config_digest
    config = tiny_config(method="fft", epochs=3, keep_checkpoint=True)
    reference = finetune(config, tmp_path / "whole", console=QUIET)
    run = tmp_path / "old"
    kill_in_third_epoch(config, run, monkeypatch)
    old = load_yaml(run / "config.yaml")  # as an earlier medpeft wrote it: no small_stem, no feature_cache
    del old["backbone"]["small_stem"], old["train"]["feature_cache"]
    save_yaml(run / "config.yaml", old)
    state = torch.load(run / "checkpoint-last.pt", weights_only=True)
    torch.save({**state, "config_digest": config_digest(old, loop_module.MAY_CHANGE)}, run / "checkpoint-last.pt")

    resumed = finetune(config, run, resume=True, console=QUIET)
    assert resumed["test"] == reference["test"] and resumed["history"] == reference["history"]
    assert load_yaml(run / "config.yaml") == resolve_run_config(config)[0].to_dict()  # today's spelling


def test_resume_refuses_a_different_config(tmp_path, monkeypatch):
    config = tiny_config(epochs=2, keep_checkpoint=True)
    finetune(config, tmp_path / "run", console=QUIET)
    (tmp_path / "run" / "metrics.json").unlink()  # pretend it stopped early
    with pytest.raises(ValueError, match="different config"):
        finetune(tiny_config(epochs=2, seed=5), tmp_path / "run", resume=True, console=QUIET)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_loss = loop_module.loss_function
    calls = {"n": 0}

    class NanAfterFirstEpoch(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, logits, targets):
            calls["n"] += 1
            loss = self.inner(logits, targets)
            return loss * float("nan") if calls["n"] > 3 else loss  # 96 images / 32 = 3 steps per epoch

    monkeypatch.setattr(loop_module, "loss_function", lambda task: NanAfterFirstEpoch(real_loss(task)))
    with pytest.raises(TrainingDiverged, match="epoch 2, step 1.*epoch 1"):
        finetune(tiny_config(epochs=3), tmp_path / "run", console=QUIET)
    state = torch.load(tmp_path / "run" / "checkpoint-last.pt", weights_only=True)
    assert state["epoch"] == 0
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert "diverged" in (tmp_path / "run" / "log.txt").read_text()


def test_finished_run_is_not_overwritten(tmp_path):
    finetune(tiny_config(epochs=1), tmp_path / "run", console=QUIET)
    with pytest.raises(ValueError, match="already"):
        finetune(tiny_config(epochs=1), tmp_path / "run", console=QUIET)


def test_cli_finetune_then_eval(tmp_path, capsys):
    out = tmp_path / "cli-run"
    code = main(["finetune", "--data", TINY_DATA, "--backbone", "vit_tiny", "--img-size", "16",
                 "--patch-size", "4", "--timm-kwargs", "{depth: 2}", "--method", "lora", "--rank", "4",
                 "--fraction", "0.5", "--epochs", "1", "--n-bootstrap", "100", "--no-progress",
                 "--out", str(out)])
    assert code == 0
    config = (out / "config.yaml").read_text()
    assert "rank: 4" in config and "fraction: 0.5" in config
    assert main(["eval", str(out), "--n-bootstrap", "100"]) == 0
    assert "AUROC" in capsys.readouterr().out
    # a recipe plus a flag: the flag wins, the rest comes from the recipe
    assert main(["finetune", "--config", str(out / "config.yaml"), "--seed", "3", "--no-progress",
                 "--out", str(tmp_path / "from-recipe")]) == 0
    assert "seed: 3" in (tmp_path / "from-recipe" / "config.yaml").read_text()
    assert "rank: 4" in (tmp_path / "from-recipe" / "config.yaml").read_text()


def test_cli_reports_bad_options_without_a_traceback(tmp_path, capsys):
    code = main(["finetune", "--data", TINY_DATA, "--method", "linear", "--rank", "4",
                 "--out", str(tmp_path / "x")])
    assert code == 2
    assert "unknown option" in capsys.readouterr().err


def test_a_step_budget_runs_exactly_that_many_optimiser_steps(tmp_path, monkeypatch):
    from medpeft.runtime import loop as runtime_loop
    real_step, taken = runtime_loop.optimizer_step, []

    def counted(*args, **kwargs):
        taken.append(kwargs["epoch"])
        return real_step(*args, **kwargs)

    monkeypatch.setattr(runtime_loop, "optimizer_step", counted)
    metrics = finetune(tiny_config(epochs=10, steps=5), tmp_path / "run", console=QUIET)  # 3 steps per epoch
    assert taken == [0, 0, 0, 1, 1]  # the budget ends in the middle of the second epoch
    assert (metrics["steps"], metrics["planned_steps"], metrics["planned_epochs"], metrics["epochs_run"]) == (5, 5, 2, 2)
    assert [h["steps"] for h in metrics["history"]] == [3, 5]
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "5 optimiser steps (2 epochs of 3 steps, the last one 2)" in log
    assert "(best epoch" in log and "5 steps" in log.splitlines()[-2]


def test_min_steps_raises_the_epochs_of_a_small_label_fraction(tmp_path):
    config = tiny_config(epochs=2, min_steps=12)
    config.data.fraction = 0.1  # 10 of 96 training images: one step per epoch
    metrics = finetune(config, tmp_path / "run", console=QUIET)
    assert metrics["train_size"] <= 32 and metrics["steps_per_epoch"] == 1
    assert (metrics["planned_epochs"], metrics["epochs_run"], metrics["steps"]) == (12, 12, 12)
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "warning: this run takes only 12 optimiser steps" in log and "--min-steps" in log


def test_a_short_run_and_a_warmup_as_long_as_the_run_are_warned_about():
    from medpeft.runtime import Plan, TrainConfig as Train
    from medpeft.train.finetuning import MIN_STEPS, plan_warnings
    train = Train(warmup_epochs=1.0)
    short = plan_warnings(Plan(steps_per_epoch=1, total_steps=MIN_STEPS - 1, epochs=MIN_STEPS - 1, warmup_steps=1),
                          47, train)
    assert len(short) == 1 and "only 49 optimiser steps" in short[0] and "--min-steps" in short[0]
    assert "--steps" in short[0]
    assert plan_warnings(Plan(1, MIN_STEPS, MIN_STEPS, 1), 47, train) == []
    warmup = plan_warnings(Plan(74, 60, 1, 74), 4708, train)  # --steps 60 with one warmup epoch of 74 steps
    assert len(warmup) == 1 and "--warmup-epochs" in warmup[0]


def scripted_validation(monkeypatch, aurocs):
    """Validation during training returns the next of ``aurocs``; the final scoring is real."""
    real, calls = loop_module.evaluate, iter(aurocs)

    def evaluate(*args, **kwargs):
        if "thresholds" in kwargs:  # the test split, at the end
            return real(*args, **kwargs)
        return {"auroc": next(calls), "acc": 0.5}

    monkeypatch.setattr(loop_module, "evaluate", evaluate)


def test_val_every_validates_every_nth_epoch_and_patience_counts_validations(tmp_path, monkeypatch):
    # validations after epochs 2, 4, 6, 8: best at the second (epoch 4), then two without improvement
    scripted_validation(monkeypatch, [0.6, 0.7, 0.65, 0.69, 0.99])
    metrics = finetune(tiny_config(epochs=12, val_every=2, patience=2), tmp_path / "run", console=QUIET)
    assert metrics["epochs_run"] == 8 and metrics["best_epoch"] == 4 and metrics["val_every"] == 2
    assert [h["epoch"] + 1 for h in metrics["history"] if "val_auroc" in h] == [2, 4, 6, 8]
    assert [h.get("val_auroc") for h in metrics["history"]] == [None, 0.6, None, 0.7, None, 0.65, None, 0.69]
    assert "early stopping: no val improvement in 2 validation(s) (4 epochs)" in (tmp_path / "run" / "log.txt").read_text()


def test_the_last_epoch_is_always_validated(tmp_path, monkeypatch):
    scripted_validation(monkeypatch, [0.6, 0.7, 0.8])
    metrics = finetune(tiny_config(epochs=5, val_every=2), tmp_path / "run", console=QUIET)
    assert [h["epoch"] + 1 for h in metrics["history"] if "val_auroc" in h] == [2, 4, 5]
    assert metrics["best_epoch"] == 5


def test_a_run_that_predicts_one_class_is_flagged(tmp_path, monkeypatch):
    import io
    from medpeft.runtime import scoring
    monkeypatch.setattr(scoring, "probabilities", lambda logits, task: torch.full_like(logits, 0.3))
    out = io.StringIO()
    metrics = finetune(tiny_config(epochs=1), tmp_path / "run", console=Console(file=out, width=400))
    assert metrics["test"]["one_class"] is True and len(metrics["test"]["one_class_labels"]) == 5
    assert metrics["test"]["one_class_at_val_threshold"] is True
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["test"]["one_class_labels"] == metrics["test"]["one_class_labels"]
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "ONE CLASS" in log and "warning: the model gives every test image the same decision" in log
    assert "ONE CLASS" in out.getvalue() and "same decision" in out.getvalue()


# The accuracy bars on PneumoniaMNIST over seeds and against weak references: test_accuracy_bars.py.
@pytest.mark.slow
def test_pneumoniamnist_full_labels_reaches_088(medmnist_root, tmp_path):
    metrics = finetune(pneumonia_config("fft", 1.0, 4, medmnist_root), tmp_path / "full", console=QUIET)
    assert metrics["test"]["auroc"] >= 0.88
