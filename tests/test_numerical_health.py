"""Numerical health: training detects non-finite losses (a learning rate of 1e30) and
non-finite cached features, says where, and stops or skips as configured without ever
writing a checkpoint with NaN weights."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from faults import FAST_TRAIN, run_main, write_two_class_folder

from videoact.checkpoint import load_checkpoint
from videoact.feature_cache import load_features, save_features


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> tuple[Path, Path]:
    """Two classes of four coded videos, with their features already cached."""
    base = tmp_path_factory.mktemp("train")
    data = write_two_class_folder(base / "data")
    cache = base / "cache"
    from videoact.cli import main  # in this process: no interpreter and torch start-up

    assert main([str(a) for a in ("train", "--data", data, "--work-dir", base / "warmup", "--set", "train.epochs=1",
                                  "--set", f"feature.cache_dir={cache}", *FAST_TRAIN)]) == 0
    return data, cache


def checkpoints_finite(work: Path) -> list[str]:
    names = []
    for name in ("best.pt", "last.pt"):
        if (work / name).exists():
            state = load_checkpoint(work / name)["model_state"]
            assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), name
            names.append(name)
    return names


def test_nonfinite_loss_stops_and_writes_no_nan_checkpoint(small_dataset, tmp_path, capsys):
    data, cache = small_dataset
    work = tmp_path / "w"
    proc = run_main(capsys, "train", "--data", data, "--work-dir", work, "--set", f"feature.cache_dir={cache}",
                   "--set", "train.lr=1e30", "--set", "train.grad_clip=0", "--set", "train.epochs=3", *FAST_TRAIN)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert ("videoact train: non-finite loss (nan) at epoch 1, step 2; stopping "
            "(no checkpoint was written: the first epoch did not finish)") in proc.stderr
    assert checkpoints_finite(work) == []


def test_nonfinite_gradient_with_a_finite_loss_is_not_stepped():
    """A finite loss whose gradient is infinite (d sqrt(x) / dx at 0): the gradient check,
    not the loss check, must catch it, and nothing is updated."""
    from videoact.training import optimizer_step

    weight = torch.nn.Parameter(torch.ones(3))
    model = torch.nn.Module()
    model.weight = weight
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    loss = torch.sqrt(weight - weight.detach()).sum() + weight.sum()  # 3.0, gradient inf
    assert torch.isfinite(loss)
    assert optimizer_step(loss, model, optimizer, scaler, grad_clip=None) == "nonfinite"
    assert torch.equal(weight.detach(), torch.ones(3))
    ok = (weight * 2).sum()
    assert optimizer_step(ok, model, optimizer, scaler, grad_clip=1.0) == "ok"
    assert not torch.equal(weight.detach(), torch.ones(3))


def test_weights_blowing_up_after_the_first_epoch_stop_the_run(small_dataset, tmp_path, capsys):
    """lr 1e10 blows the weights up slowly: the run stops after the first epoch, at the
    first step whose loss or gradient norm is not finite. Which comes first depends on the
    CPU's float kernels (the gradient on a Zen 4, the loss on a Zen 3)."""
    data, cache = small_dataset
    work = tmp_path / "w"
    proc = run_main(capsys, "train", "--data", data, "--work-dir", work, "--set", f"feature.cache_dir={cache}",
                   "--set", "train.lr=1e10", "--set", "train.grad_clip=0", "--set", "train.epochs=3", *FAST_TRAIN)
    assert proc.returncode == 2, proc.stderr[-2000:]
    message = proc.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"videoact train: non-finite (gradient norm|loss \((nan|-?inf)\)) at epoch \d+, step \d+; "
                        r"stopping \(.*\)", message), message
    assert "epoch 1," not in message  # the first epoch finished and was saved, finite
    assert checkpoints_finite(work) == ["best.pt", "last.pt"]


def test_nonfinite_loss_skip_goes_on_without_nan_weights(small_dataset, tmp_path, capsys):
    data, cache = small_dataset
    work = tmp_path / "w"
    proc = run_main(capsys, "train", "--data", data, "--work-dir", work, "--set", f"feature.cache_dir={cache}",
                   "--set", "train.lr=1e30", "--set", "train.grad_clip=0", "--set", "train.epochs=2",
                   "--set", "train.nonfinite=skip", *FAST_TRAIN)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "warning: non-finite loss (nan) at epoch 1, step 2; step skipped" in proc.stderr
    def strict(constant):  # NaN and Infinity are not JSON: other readers refuse them
        raise ValueError(f"metrics.jsonl holds {constant}")

    history = [json.loads(line, parse_constant=strict) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert history[-1]["skipped_steps"] == 3  # every step after the first blew up
    assert history[-1]["train_loss"] is None and history[-1]["val_loss"] is None  # not 0.0 and NaN
    assert checkpoints_finite(work) == ["best.pt", "last.pt"]


def test_nan_in_cached_features_is_reported_by_file(small_dataset, tmp_path, capsys):
    data, cache = small_dataset
    bad_cache = tmp_path / "cache"
    for p in cache.rglob("*.safetensors"):
        (bad_cache / p.relative_to(cache)).parent.mkdir(parents=True, exist_ok=True)
        (bad_cache / p.relative_to(cache)).write_bytes(p.read_bytes())
    target = bad_cache / "a" / "v1.mp4.safetensors"
    cached = load_features(target)
    features = cached.features.clone()
    features[1, :5] = float("inf")
    save_features(target, features, cached.frame_indices, cached.metadata)  # still "current": not re-extracted
    for workers in ("0", "2"):  # also when the error comes back from a DataLoader worker
        proc = run_main(capsys, "train", "--data", data, "--work-dir", tmp_path / f"w{workers}",
                       "--set", f"feature.cache_dir={bad_cache}", "--set", "train.epochs=2", *FAST_TRAIN,
                       "--set", f"data.num_workers={workers}")
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines()[-1] == (
            f"videoact train: {target}: features of video {data / 'a' / 'v1.mp4'} contain NaN or inf "
            "(delete this file to extract it again)")
        assert checkpoints_finite(tmp_path / f"w{workers}") == []
