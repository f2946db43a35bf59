"""The training loop for temporal models on cached CNN features. Read it top to bottom.

``train(cfg)``:

1. read the data (class-per-subfolder folder or annotation list) and, when
   ``work_dir/last.pt`` exists, its resume state (checked against these classes)
2. extract features for every video whose cache is missing or stale; without a
   validation set, hold out a stratified part of the training videos whose features
   could be made (once per run: ``held_out.json``)
3. build the temporal model, AdamW, warm-up + cosine schedule
4. resume: load the model, optimiser, schedule and random states read in step 1
5. epochs: train (label smoothing, gradient clipping, mixed precision on CUDA and with
   train.cpu_amp on bf16 CPUs, non-finite checks),
   validate, log to ``metrics.jsonl``, save ``last.pt`` and ``best.pt`` (the epoch of best
   validation accuracy, or with ``train.select: last`` the last one) atomically, stop
   early when validation accuracy stops improving
6. evaluate ``best.pt`` on the test set when one is given

Works in one process or under ``torchrun`` (DistributedDataParallel; rank 0 writes).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .atomic import InUseError, atomic_write_bytes, atomic_write_text, exclusive_lock, remove_dead_temporaries
from .backbones import grid_size, same_weights
from .checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from .config import Config, load_config, reverse_pair_names, save_config, validate
from .datasets import (OUTSIDE_PREFIX, VideoSample, class_labels, load_dataset, none_found_hint, read_class_labels,
                       stratified_split, ucf101_group, ucf101_named, warn_problems, warn_shared_videos)
from .feature_dataset import EpochSampler, FeatureDataset, collate_features
from .device import autocast_dtype, precision_name, resolve_device
from .extract import SamplingSpec, cache_key, extract_features
from .distributed import all_gather_objects, barrier, broadcast_object
from .notices import VideoactWarning
from .spawn import main_script_hidden
from .temporal import create_temporal_model

# The run's summary lines (its data, exclusions, resuming, nothing left to train). The
# videoact command prints them on stdout; a program sees them if it configures logging (INFO).
log = logging.getLogger("videoact.train")


class TrainingError(RuntimeError):
    """Training cannot go on (for example a non-finite loss with ``nonfinite: stop``)."""


# ---------------------------------------------------------------- helpers


def seed_everything(seed: int, device: torch.device | None = None) -> None:
    """Seed random, numpy and torch: on a CPU run only torch's CPU generator (torch.manual_seed
    also replaces a CUDA seed the caller queued), on an accelerator every device's, as
    torch.manual_seed does (CUDA, MPS, ...)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if device is None or device.type != "cpu":
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)


def _dist() -> tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` in one process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum numbers over ranks (identity in one process)."""
    if _dist()[1] == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_finite(value: torch.Tensor, device: torch.device) -> bool:
    """Whether ``value`` is finite on every rank (itself in one process). Ranks must skip a
    step together: DDP's backward is a collective, one rank skipping it would pair the
    others' gradient reductions with the wrong steps."""
    finite = bool(torch.isfinite(value).all())
    if _dist()[1] == 1:
        return finite
    return _all_sum([float(not finite)], device)[0] == 0


def optimizer_step(loss: torch.Tensor, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler, grad_clip: float | None) -> str:
    """Backward, clip the gradient norm, step. Returns ``"ok"``; ``"overflow"`` when float16
    loss scaling overflowed (the scaler skipped the update and lowered its scale: routine, it
    is how the scaler finds its scale); ``"nonfinite"`` when the gradient is not finite
    otherwise (nothing updated; the caller decides)."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    # After backward, DDP has averaged the gradients: every rank clips by the same norm.
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip or float("inf"))
    if torch.isfinite(grad_norm):
        scaler.step(optimizer)
        scaler.update()
        return "ok"
    # An overflow at a scale of 1 or less is no longer the scaling's doing.
    overflow = scaler.is_enabled() and scaler.get_scale() > 1.0
    if overflow:
        scaler.step(optimizer)  # sees the inf gradients and skips the update
        scaler.update()
        return "overflow"
    # Clear the step's record but keep the scale: halving it below 1 on every skipped
    # step would leave float16 gradients underflowing to zero for thousands of steps.
    scaler.update(scaler.get_scale())
    return "nonfinite"


def lr_factor(step: int, warmup_steps: int, total_steps: int, min_factor: float = 0.01) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_factor``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalization weights (1-D parameters)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def recorded_weights(weights: Any, weights_id: str) -> str | None:
    """What a checkpoint records to rebuild the backbone elsewhere: a weights file as an
    absolute path (a relative one meant the training's working directory), torchvision
    weights as the enum they resolved to (``DEFAULT`` moves with torchvision releases)."""
    from .backbones import _is_file_spec

    if weights is not None and _is_file_spec(weights):
        return str(Path(weights).expanduser().resolve())
    if ":torchvision:" in weights_id:
        return weights_id.split(":torchvision:", 1)[1]  # "ResNet50_Weights.IMAGENET1K_V2"
    return None if weights is None else str(weights)


def current_weights_id(cfg: Config) -> str | None:
    """The configured backbone's weights id where a ``last.pt`` waits to be resumed (else
    ``None``: nothing to compare). Building the backbone draws random initial weights
    before loading the real ones: from a forked RNG, so a run's random stream (and the
    figures it gives for a seed) is the same with or without this check."""
    from .backbones import create_backbone

    if not (Path(cfg.work_dir) / "last.pt").exists():
        return None
    with torch.random.fork_rng(devices=[]):
        return create_backbone(cfg.feature.backbone, pretrained=True, weights=cfg.feature.weights,
                               pooling=cfg.feature.pooling, layer=cfg.feature.layer).weights_id


def feature_settings(cfg: Config) -> dict[str, Any]:
    """What a checkpoint records about features, so inference can recompute them."""
    from .backbones import create_backbone

    backbone = create_backbone(cfg.feature.backbone, pretrained=True, weights=cfg.feature.weights,
                               pooling=cfg.feature.pooling, layer=cfg.feature.layer)
    return {
        "backbone": backbone.name,
        "weights": recorded_weights(cfg.feature.weights, backbone.weights_id),
        "weights_id": backbone.weights_id,
        "pooling": backbone.pooling,
        "layer": backbone.layer,
        "image_size": int(cfg.feature.image_size or backbone.input_size),
        "resize": cfg.feature.resize,
        "mean": list(backbone.mean),
        "std": list(backbone.std),
        "feature_dim": int(backbone.feature_dim),
        "sampling": dataclasses.asdict(sampling_spec(cfg)),
        "num_segments": cfg.feature.num_segments,
        # What extraction computes in on this machine; inference follows it where it can.
        "precision": precision_name(autocast_dtype(resolve_device(cfg.feature.device), cfg.feature.amp)),
    }


def sampling_spec(cfg: Config) -> SamplingSpec:
    """Frames cached per video. Training then samples ``num_segments`` of them."""
    f = cfg.feature
    return SamplingSpec(mode=f.sampling, num_segments=f.num_segments, stride=f.stride,
                        target_fps=f.target_fps, max_frames=f.max_frames, segment_frames=f.segment_frames)


def rebase(samples: list[VideoSample], root: Path) -> list[VideoSample]:
    """Give every sample its cache key relative to one common root (train and val may
    differ), as ``videoact extract --root`` names it: a cache it filled is reused."""
    return [dataclasses.replace(s, rel=cache_key(Path(s.path), root)) for s in samples]


def cache_root(samples: list[VideoSample], data_root: str | None) -> Path:
    """The folder cache keys are relative to: ``data.root`` when every video lies inside it
    (so the cache matches ``videoact extract --root``), else the videos' common folder, as
    listed: videos that are symlinks into a content store (DVC, git-annex) keep their names."""
    if data_root:
        root = Path(data_root)
        if not any(cache_key(Path(s.path), root).startswith(OUTSIDE_PREFIX) for s in samples):
            return root
    return Path(os.path.commonpath([os.path.abspath(Path(s.path).parent) for s in samples]))


def ensure_features(cfg: Config, samples: list[VideoSample], cache_dir: Path,
                    root: Path) -> tuple[list[VideoSample], dict[str, Any], list[str]]:
    """Extract missing or stale features; return the samples whose features exist, the
    settings their cache files record, and why the others have none (each also warned)."""
    rank, world = _dist()
    result = extract_features(
        [s.path for s in samples], cache_dir, root=root, backbone=cfg.feature.backbone,
        weights=cfg.feature.weights, pooling=cfg.feature.pooling, layer=cfg.feature.layer,
        image_size=cfg.feature.image_size,
        sampling=sampling_spec(cfg), resize=cfg.feature.resize, batch_size=cfg.feature.batch_size, device=cfg.feature.device,
        amp=cfg.feature.amp,
        num_workers=cfg.feature.num_workers, shard=(rank, world), progress=rank == 0 and cfg.train.progress,
    )
    failures = [(f.path, f.reason) for f in result.failed]
    if result.failure_log_error:  # training goes on: the features are written, only their failure record is not
        warnings.warn(f"the failure log {result.failure_log_error}", VideoactWarning, stacklevel=2)
    if world > 1:
        barrier()  # with device_ids on NCCL
        # Each rank extracted its share: every rank must leave out every rank's failures (rank
        # 0 kept another rank's unreadable video and stopped at its missing feature file).
        failures = [f for share in all_gather_objects(failures) for f in share]
    if rank == 0:
        for _path, reason in failures:
            warnings.warn(f"skipping {reason}", VideoactWarning, stacklevel=2)
    failed = {path for path, _reason in failures}
    return [s for s in samples if str(s.path) not in failed], result.settings, [reason for _path, reason in failures]


# ---------------------------------------------------------------- evaluation pass


def batches_of(loader: DataLoader) -> Iterator:
    """``iter(loader)``, with the user's ``__main__`` script hidden while worker processes
    start. Why: where workers are spawned (macOS, Windows; forkserver on Python 3.14) each
    imports the main script, and a script without an ``if __name__ == "__main__":`` guard
    that calls :func:`train` ran itself again in every worker, which died."""
    with main_script_hidden():
        return iter(loader)


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities ``[N, C]`` and labels ``[N]`` for everything in ``loader`` (this rank's part)."""
    model.eval()
    probs, labels = [], []
    for features, lengths, y in loader:
        logits = model(features.to(device), lengths)
        probs.append(logits.float().softmax(-1).cpu())
        labels.append(y)
    return torch.cat(probs), torch.cat(labels)


def evaluate_loss_acc(model: torch.nn.Module, loader: DataLoader, device: torch.device) -> dict[str, float]:
    """Mean cross-entropy (plain: no label smoothing, unlike the training objective) and
    top-1 accuracy over ``loader``'s ``(features [B, T, D], lengths [B], labels [B])``
    batches, summed over all ranks."""
    model.eval()
    totals = [0.0, 0.0, 0.0]  # loss sum, correct, count
    with torch.no_grad():
        for features, lengths, y in batches_of(loader):
            logits = model(features.to(device), lengths).float()
            y = y.to(device)
            totals[0] += F.cross_entropy(logits, y, reduction="sum").item()
            totals[1] += (logits.argmax(-1) == y).sum().item()
            totals[2] += len(y)
    loss_sum, correct, count = _all_sum(totals, device)
    return {"loss": loss_sum / max(count, 1), "acc": correct / max(count, 1)}


# ---------------------------------------------------------------- the loop


def reverse_label_map(pairs: list[str], classes: list[str]) -> dict[int, int]:
    """``["move_left:move_right", ...]`` -> class index -> index of its time-reversed class
    (both ways; ``"a:a"`` marks a class that is its own reverse). A pair of two classes the
    data does not have is skipped with a warning (one config can serve subsets of the
    classes); a pair with one unknown name is an error (a reversed clip would get no label)."""
    out: dict[int, int] = {}
    for pair in pairs:
        names = reverse_pair_names(pair)
        if names is None:
            raise TrainingError(f"train.reverse_pairs: {pair!r} is not 'class_a:class_b'")
        missing = [n for n in names if n not in classes]
        if len(missing) == 2 or (missing and names[0] == names[1]):
            warnings.warn(f"train.reverse_pairs: {pair!r}: neither class is in the training data; ignored",
                          VideoactWarning, stacklevel=2)
            continue
        if missing:
            raise TrainingError(f"train.reverse_pairs: {pair!r} names {', '.join(map(repr, missing))}, "
                                f"not a class of the training data ({', '.join(classes)}), so its reversed "
                                "clips would have no label: correct the name, or leave the pair out "
                                "(--set \"train.reverse_pairs=[...]\" with the pairs to keep; [] for none)")
        a, b = (classes.index(n) for n in names)
        for x, y in ((a, b), (b, a)):
            if out.get(x, y) != y:
                raise TrainingError(f"train.reverse_pairs: {classes[x]!r} is paired twice")
            out[x] = y
    return out


HELD_OUT = "held_out.json"  # the validation videos drawn from the training data, per work dir


def held_out_split(samples: list[VideoSample], cfg: Config) -> tuple[list[VideoSample], list[VideoSample]]:
    """``(train, val)``: ``data.val_fraction`` of ``samples`` drawn for validation, stratified."""
    # UCF101's clips of one group are cut from one long video: held out together, or
    # validation scores clips of videos the model trained on (every group on both sides).
    group = ucf101_group if ucf101_named(samples) else None
    return stratified_split(samples, cfg.data.val_fraction, cfg.train.seed, group_key=group)


def hold_out(samples: list[VideoSample], cfg: Config, work_dir: Path, resuming: bool,
             is_main: bool = True) -> tuple[list[VideoSample], list[VideoSample]]:
    """``(train, val)``: a stratified part of ``samples`` held out for validation (no ``data.val``).

    Drawn once per run and kept in ``work_dir/held_out.json``: a resumed run validates on
    the same videos, never on one it trained on, even when the readable videos or
    ``data.val_fraction`` / ``train.seed`` changed since (a video unreadable then and
    readable now goes to training). ``resuming``: the run goes on from ``last.pt``.
    """
    path = work_dir / HELD_OUT
    # Absolute paths: cache keys change with the common root of all splits (a --test added).
    if resuming and path.exists():
        try:
            saved = set(json.loads(path.read_text(encoding="utf-8"))["videos"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TrainingError(f"{path}: unreadable list of the run's validation videos ({exc}); "
                                "delete it to draw a new one, or use another --work-dir") from None
        val = [s for s in samples if os.path.abspath(s.path) in saved]
        if val:
            return [s for s in samples if os.path.abspath(s.path) not in saved], val
        if is_main:
            warnings.warn(f"none of the validation videos in {path} is among the training data now; "
                          "drawing new ones (the resumed run may validate on videos it trained on)",
                          VideoactWarning, stacklevel=2)
    elif resuming and is_main:
        warnings.warn(f"{work_dir} has no {HELD_OUT} (its run had data.val, or an older videoact started it); "
                      "drawing validation videos now from videos it may have trained on", VideoactWarning, stacklevel=2)
    train, val = held_out_split(samples, cfg)
    if is_main and val:
        atomic_write_text(path, json.dumps({"videos": sorted(os.path.abspath(s.path) for s in val)}, indent=1) + "\n")
    return train, val


def apply_optimizer_settings(optimizer: torch.optim.Optimizer, scheduler: Any, model: torch.nn.Module,
                             cfg: Config, factor: float) -> list[str]:
    """After loading a checkpoint's optimizer and scheduler: the config's ``train.lr`` and
    ``train.weight_decay`` hold (they may change on resume; the state brings the moments
    and the step). ``factor``: the schedule's value at the current step. Returns what changed."""
    changed = []
    fresh = param_groups(model, cfg.train.weight_decay)
    old_lr = scheduler.base_lrs[0]
    if old_lr != cfg.train.lr:
        changed.append(f"train.lr {old_lr:g} -> {cfg.train.lr:g}")
    if optimizer.param_groups[0]["weight_decay"] != fresh[0]["weight_decay"]:
        changed.append(f"train.weight_decay {optimizer.param_groups[0]['weight_decay']:g} -> "
                       f"{cfg.train.weight_decay:g}")
    for group, new in zip(optimizer.param_groups, fresh):
        group["weight_decay"] = new["weight_decay"]
        group["initial_lr"] = cfg.train.lr
        group["lr"] = cfg.train.lr * factor  # what LambdaLR computes: base lr x the schedule
    scheduler.base_lrs = [cfg.train.lr] * len(optimizer.param_groups)
    # get_last_lr() (what the log shows) was loaded with the old schedule's last value.
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    return changed


# What a resumed run may change: how it runs, not what it trains.
# Settings that change how features are computed, not what they are (device and amp: by
# rounding at most; a CPU without bf16 ignores amp): the cache records the precision.
_FREE_ON_RESUME = {"feature.cache_dir", "feature.batch_size", "feature.num_workers", "feature.device", "feature.amp"}


def check_resumable(work_dir: Path, cfg: Config) -> None:
    """Refuse to resume ``work_dir/last.pt`` under other ``model``/``feature`` settings
    than its ``config.yaml`` records (the weights would not fit, or the features would
    differ); ``train`` and ``data`` settings may change (more epochs, other paths)."""
    import yaml

    from .config import yaml_load

    saved_file = work_dir / "config.yaml"
    if not (work_dir / "last.pt").exists() or not saved_file.exists():
        return
    try:
        saved = yaml_load(saved_file.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return  # unreadable: the checkpoint's own check (load_state_dict) still applies
    now = cfg.to_dict()
    changed = [f"{section}.{key}: {old!r} -> {now[section].get(key)!r}"
               for section in ("model", "feature") if isinstance(saved.get(section), dict)
               for key, old in saved[section].items()
               if f"{section}.{key}" not in _FREE_ON_RESUME and now[section].get(key) != old]
    if changed:
        raise TrainingError(f"{work_dir} holds a run with other settings ({'; '.join(changed)}): it would "
                            "resume from last.pt; use another --work-dir, or delete last.pt to start over")


def load_resume_state(work_dir: Path, classes: list[str], weights_id: str | None = None,
                      class_ids: list[int] | None = None) -> dict[str, Any] | None:
    """``work_dir/last.pt`` when there is one (``None`` otherwise), refused when it was
    trained on other class names (with as many classes its weights would load, each output
    meaning another class) or other class ids (a classes file's, which integer labels are
    read with), or on features of other backbone weights than ``weights_id``
    (a weights file changed under the same name: config.yaml cannot tell). Loaded before
    extraction and the hold-out, which a refused run must not redo or redraw; the resume
    step uses this state."""
    last = work_dir / "last.pt"
    if not last.exists():
        return None
    state = load_checkpoint(last, map_location="cpu")
    saved = state.get("classes")
    if saved is not None and list(saved) != list(classes):
        raise TrainingError(f"{last} was trained on other classes ({', '.join(saved)}; now {', '.join(classes)}): "
                            "use another --work-dir, or delete it to start over")
    if state.get("class_ids") != class_ids:
        raise TrainingError(f"{last} was trained with class ids {state.get('class_ids')} (data.classes), now "
                            f"{class_ids}: give the same classes file, or use another --work-dir")
    trained_on = (state.get("feature") or {}).get("weights_id")
    if weights_id is not None and trained_on is not None and not same_weights(trained_on, weights_id):
        raise TrainingError(f"{last} was trained on features of backbone weights {trained_on!r}, and the weights "
                            f"now are {weights_id!r} (the weights file changed?): resuming would mix the two; use "
                            "another --work-dir, or delete last.pt to start over")
    return state


def _file_version(path: Path) -> tuple[int, int] | None:
    """(modification time, size) of ``path``, None when it is not there."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


def load_splits(cfg: Config, is_main: bool = True) -> tuple[list[VideoSample], list[VideoSample],
                                                             list[VideoSample], list[str], list[int] | None]:
    """The training, validation and test videos of ``cfg.data`` (validation empty when it
    is to be held out of the training videos, after extraction), the class names and the
    classes file's ids (``None`` without one). Entries with problems are warned about and
    left out; data that cannot train (no videos, one class, nothing to validate on) is
    refused here, before any extraction."""
    excluded: set[str] = set()
    if cfg.data.exclude:  # e.g. the unreadable files found by `videoact check --quarantine`
        from .health import read_exclude_list

        try:
            excluded = read_exclude_list(cfg.data.exclude)
        except ValueError as exc:
            raise TrainingError(str(exc)) from None

    def without_excluded(samples: list[VideoSample], split: str) -> list[VideoSample]:
        if not excluded:
            return samples
        from .health import exclude_paths

        kept, dropped = exclude_paths(samples, excluded, key=lambda s: s.path)
        if dropped and is_main:
            log.info(f"excluded {len(dropped)} {split} videos listed in {cfg.data.exclude}")  # as asked: no problem
        return kept

    # A classes file fixes the order (a checkpoint's output i is line i) and keeps classes
    # that have no training video; otherwise the training data's sorted label names.
    file_labels = read_class_labels(cfg.data.classes) if cfg.data.classes else None
    train_samples, classes, problems = load_dataset(cfg.data.train, root=cfg.data.root, classes=file_labels)
    train_samples = without_excluded(train_samples, "training")
    warn_problems(cfg.data.train, problems)
    if not train_samples:
        hint = none_found_hint(cfg.data.train, cfg.data.root, problems, "--root (data.root)")
        raise TrainingError(f"{cfg.data.train}: no training videos found{hint}")
    present = {s.label for s in train_samples}
    if len(present) < 2:
        raise TrainingError(f"{cfg.data.train}: one class only ({classes[min(present)]}): a classifier needs videos "
                            "of at least two classes (one folder per class, or two labels in the list)")
    if is_main and len(present) < len(classes):
        unseen = [name for i, name in enumerate(classes) if i not in present]
        source = cfg.data.classes or cfg.data.train
        warnings.warn(f"{len(unseen)} of the {len(classes)} classes of {source} have no usable training video "
                      f"({', '.join(unseen[:10])}{', ...' if len(unseen) > 10 else ''}): the model can never "
                      "learn to name them", VideoactWarning, stacklevel=3)
    # The file's ids (classInd.txt) read the integer labels of every list, and go in the checkpoint.
    class_ids = sorted(file_labels) if isinstance(file_labels, dict) else None
    label_set = class_labels(classes, class_ids)
    val_samples: list[VideoSample] = []  # without data.val: held out after extraction (no unreadable ones)
    if cfg.data.val:
        val_samples, _, problems = load_dataset(cfg.data.val, root=cfg.data.root, classes=label_set)
        val_samples = without_excluded(val_samples, "validation")
        warn_problems(cfg.data.val, problems)
        if not val_samples:  # said now, not after the extraction
            hint = none_found_hint(cfg.data.val, cfg.data.root, problems, "--root (data.root)")
            raise TrainingError(f"{cfg.data.val}: no validation videos found{hint}")
    test_samples: list[VideoSample] = []
    if cfg.data.test:
        test_samples, _, problems = load_dataset(cfg.data.test, root=cfg.data.root, classes=label_set)
        test_samples = without_excluded(test_samples, "test")
        warn_problems(cfg.data.test, problems)
        if not test_samples:  # asked for: not a run that ends without the figure it was for
            hint = none_found_hint(cfg.data.test, cfg.data.root, problems, "--root (data.root)")
            raise TrainingError(f"{cfg.data.test}: no test videos found{hint}")
    if is_main:
        warn_shared_videos([("training", cfg.data.train, train_samples), ("validation", cfg.data.val, val_samples),
                            ("test", cfg.data.test, test_samples)])
    # Without validation clips, best.pt and early stopping would follow an accuracy of 0.
    if not cfg.data.val and not held_out_split(train_samples, cfg)[1]:
        raise no_validation(cfg)
    return train_samples, val_samples, test_samples, list(classes), class_ids


def no_validation(cfg: Config) -> TrainingError:
    """The error for a run without ``data.val`` that can hold out no validation video."""
    return TrainingError(f"{cfg.data.train}: no validation videos: each class has a single usable video, "
                         "so none can be held out; pass --val (data.val) or add videos")


def check_backbone_settings(cfg: Config) -> None:
    """An unknown backbone or a weights file that is not there, refused before the run
    writes anything (they surfaced at extraction, after the work directory was made)."""
    from .backbones import WeightsNotFoundError, check_backbone_name, weights_file

    for setting, check, value in (("feature.backbone", check_backbone_name, cfg.feature.backbone),
                                  ("feature.weights", weights_file, cfg.feature.weights)):
        try:
            check(value)
        except (ValueError, WeightsNotFoundError) as exc:  # create_backbone's own checks, named by setting
            raise TrainingError(f"{setting}: {exc}") from None


def claim_work_dir(cfg: Config, held: contextlib.ExitStack, last_seen: tuple[int, int] | None,
                   is_main: bool, world: int) -> None:
    """Create and lock ``cfg.work_dir`` for this run (the lock stays in ``held``), refusing
    when another run holds it or wrote ``last.pt`` since ``last_seen``; remove what killed
    runs left there; write ``config.yaml`` for a new run. Under torchrun rank 0 does this
    and every rank raises its refusal."""
    work_dir = Path(cfg.work_dir)
    refusal: Exception | None = None
    if is_main:
        work_dir.mkdir(parents=True, exist_ok=True)
        try:
            locked = held.enter_context(exclusive_lock(work_dir / ".lock", f"work directory {work_dir}"))
            if _file_version(work_dir / "last.pt") != last_seen:  # a run that held the lock until now wrote it
                raise TrainingError(f"{work_dir}: another run wrote last.pt while this one was starting; run the "
                                    "command again to resume from it, or use another --work-dir")
            # What a killed run left (.metrics.jsonl.tmp-<pid>-<n>, ...). This process's own pid
            # too: nothing writes here yet, and in a container a killed run often had our pid.
            # Only under the lock: without it (a network file system) another host's run may be
            # writing here, and its pids mean nothing on this one.
            if locked:
                remove_dead_temporaries(work_dir, own=True)
        except (InUseError, TrainingError) as exc:
            refusal = exc
        if refusal is None and not (work_dir / "last.pt").exists():  # when resuming: once last.pt has loaded
            save_config(cfg, work_dir / "config.yaml")
    if world > 1:  # every rank stops with rank 0 (the others would wait in the next collective)
        message = broadcast_object(None if refusal is None else str(refusal))
        if message is not None and not is_main:
            raise TrainingError(message)
    if refusal is not None:
        raise refusal


def train(cfg: Config | Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """Train a temporal model as configured; return the final metrics.

    ``cfg``: a :class:`Config`, a nested mapping over the defaults
    (``{"data": {"train": "videos/"}, "train": {"epochs": 5}}``) or a YAML config file.
    It is validated first, as a loaded one is: a value set in code that is out of range
    is refused before hours of feature extraction. The global random generators
    (``random``, numpy, torch's CPU one, and the accelerator's when the run uses one) are
    seeded with ``train.seed`` for the run and given back to the caller as they were when
    it ends (an MPS device's is not given back).

    It prints only what ``train.progress`` asks for (bars, per-epoch lines); the run's
    summary lines go to the ``videoact.train`` logger at INFO, and problems it goes on
    past are :class:`~videoact.notices.VideoactWarning` warnings.

    Returns a dict: ``best_val_acc``; ``best_epoch`` and ``selected_epoch`` (the one
    ``best.pt`` holds), counted from 0 as ``metrics.jsonl``'s ``epoch`` is (the command
    line prints epochs from 1); ``epochs_run``, ``stopped_early``, ``work_dir``,
    ``classes``, ``history`` (``metrics.jsonl``'s records), ``unreadable`` (why videos
    were left out) and, with ``data.test``, ``test`` (:func:`videoact.evaluation.classification_metrics`
    of ``best.pt``, also written to ``work_dir/test.json``)."""
    if isinstance(cfg, (str, os.PathLike)):
        cfg = load_config(cfg)
    elif isinstance(cfg, Mapping):
        cfg = Config.from_dict(dict(cfg))
    elif not isinstance(cfg, Config):
        raise TypeError(f"train() takes a Config, a mapping of its sections or a YAML file, not {type(cfg).__name__}")
    cfg = validate(cfg, fallback="train() config")
    # Training seeds the global generators (train.seed); the caller's own streams are
    # given back afterwards, as they were.
    python_rng, numpy_rng = random.getstate(), np.random.get_state()
    # The GPUs' generators only where the run uses them (a CPU run leaves them alone).
    device = resolve_device(cfg.train.device)
    cuda = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), contextlib.ExitStack() as held:  # held: the work dir's lock
        try:
            return _train(cfg, held, device)
        finally:
            random.setstate(python_rng)
            np.random.set_state(numpy_rng)


def _train(cfg: Config, held: contextlib.ExitStack, device: torch.device) -> dict[str, Any]:
    """:func:`train` of a validated config, top to bottom, on ``device`` (``train.device``
    resolved); ``held`` keeps the work directory locked until the run ends."""
    if not cfg.data.train:
        raise TrainingError("no training data: set data.train to a folder of class sub-folders or an annotation "
                            "list (videoact train --data ...)")
    rank, world = _dist()
    is_main = rank == 0
    work_dir = Path(cfg.work_dir)
    check_resumable(work_dir, cfg)  # before config.yaml is rewritten: it describes last.pt
    seed_everything(cfg.train.seed, device)

    # 1. data
    train_samples, val_samples, test_samples, classes, class_ids = load_splits(cfg, is_main)
    last_seen = _file_version(work_dir / "last.pt")
    resume_state = load_resume_state(work_dir, list(classes), current_weights_id(cfg), class_ids)
    reverse_labels = reverse_label_map(cfg.train.reverse_pairs, classes)  # before hours of extraction
    check_backbone_settings(cfg)
    # Only now: a run refused for its data or settings leaves no work directory behind.
    claim_work_dir(cfg, held, last_seen, is_main, world)

    # 2. features (one cache for all splits, keyed by paths relative to a common root)
    everything = train_samples + val_samples + test_samples
    root = cache_root(everything, cfg.data.root)
    train_samples, val_samples, test_samples = (rebase(s, root) for s in (train_samples, val_samples, test_samples))
    cache_dir = Path(cfg.feature.cache_dir) if cfg.feature.cache_dir else work_dir / "features"
    # Extraction draws random numbers (a backbone's initial weights before its pretrained
    # ones load; the decode loader's seed did, only when there was something to extract):
    # forked, training's initial weights do not depend on what extraction did (a run that
    # found its features cached had trained from other ones than a run that made them).
    with torch.random.fork_rng(devices=[]):
        usable, settings, unreadable = ensure_features(cfg, train_samples + val_samples + test_samples, cache_dir,
                                                       root)
    ok = {str(s.path) for s in usable}
    train_samples, val_samples, test_samples = ([s for s in x if str(s.path) in ok]
                                                for x in (train_samples, val_samples, test_samples))
    if not train_samples:
        raise TrainingError("no training video has usable features (the warnings above say why)")
    if not cfg.data.val:
        train_samples, val_samples = hold_out(train_samples, cfg, work_dir, resume_state is not None, is_main)
    if not val_samples:
        raise no_validation(cfg) if not cfg.data.val else TrainingError(
            "no validation video has usable features (the warnings above say why)")
    if is_main:
        held_out = f"from {cfg.data.val}" if cfg.data.val else "held out of the training videos"
        log.info(f"{len(classes)} classes: {len(train_samples)} training videos, {len(val_samples)} validation "
                 f"videos ({held_out})" + (f", {len(test_samples)} test videos" if test_samples else ""))
    segments = cfg.feature.num_segments
    train_set = FeatureDataset(train_samples, cache_dir, num_segments=segments, train=True,
                               temporal_jitter=cfg.train.temporal_jitter, seed=cfg.train.seed,
                               reverse_labels=reverse_labels, preload=cfg.data.preload, settings=settings)
    val_set = FeatureDataset(val_samples, cache_dir, num_segments=segments, train=False, preload=cfg.data.preload,
                             settings=settings)

    if cfg.train.batch_size % world:
        raise TrainingError(f"train.batch_size={cfg.train.batch_size} is not divisible by the {world} ranks "
                            "(each rank takes an equal share of every global batch)")
    per_rank_batch = cfg.train.batch_size // world
    # The same epoch-seeded permutation in one process and under torchrun: rank r takes
    # positions r, r + world, ... of each global batch, so N ranks with batch B/N see
    # exactly the batches one process sees with batch B (DistributedSampler pads the
    # epoch to a multiple of world by repeating a few items when it does not divide).
    from torch.utils.data.distributed import DistributedSampler

    from .distributed import ShardSampler

    # (epoch, index) items: persistent workers would otherwise keep the first epoch's jitter.
    sampler = EpochSampler(DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True,
                                              seed=cfg.train.seed))
    generator = torch.Generator().manual_seed(cfg.train.seed)
    workers = cfg.data.num_workers
    train_loader = DataLoader(train_set, batch_size=per_rank_batch, sampler=sampler,
                              generator=generator, collate_fn=collate_features, num_workers=workers,
                              persistent_workers=workers > 0, drop_last=False)
    # Evaluation: every item exactly once over the ranks (no padding), sums reduced.
    # Its own generator: a DataLoader without one draws its workers' base seed from the global
    # RNG (dropout's) at each new iterator, once per process with persistent workers, so
    # a resumed run, or one with other num_workers, drew other dropout masks.
    val_loader = DataLoader(val_set, batch_size=per_rank_batch, sampler=ShardSampler(val_set, rank, world),
                            collate_fn=collate_features, num_workers=workers, persistent_workers=workers > 0,
                            generator=torch.Generator().manual_seed(cfg.train.seed))

    # 3. model and optimisation
    in_dim = train_set[0][0].shape[-1]
    model_kwargs = dataclasses.asdict(cfg.model)
    name = model_kwargs.pop("name")
    if cfg.model.head == "conv":  # the head needs the features' grid layout
        model_kwargs["grid"] = grid_size(cfg.feature.pooling)
    model = create_temporal_model(name, in_dim=in_dim, num_classes=len(classes), **model_kwargs).to(device)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.train.weight_decay), lr=cfg.train.lr)
    steps_per_epoch = max(1, len(train_loader))
    total_steps = steps_per_epoch * cfg.train.epochs
    warmup_steps = int(round(cfg.train.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup_steps, total_steps))
    amp_dtype = autocast_dtype(device, cfg.train.cpu_amp if device.type == "cpu" else cfg.train.amp)
    use_amp = amp_dtype is not None
    if is_main and device.type == "cpu" and cfg.train.cpu_amp and not use_amp:
        warnings.warn("train.cpu_amp: this CPU has no native bf16 (AVX512-BF16 or AMX), where bf16 is slower "
                      "than float32; training in float32", VideoactWarning, stacklevel=2)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    ddp_model = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    features_info = feature_settings(cfg)
    features_info["feature_dim"] = int(in_dim)

    # 4. resume
    start_epoch, step, best_acc, bad_epochs, skipped_steps = 0, 0, -1.0, 0, 0
    last_path, best_path = work_dir / "last.pt", work_dir / "best.pt"
    history: list[dict] = []
    if resume_state is not None:
        state = resume_state
        try:
            model.load_state_dict(state["model_state"])
        except RuntimeError as exc:  # e.g. config.yaml gone, so check_resumable could not tell
            raise TrainingError(f"{last_path} does not fit the configured model (another run's checkpoint?); "
                                f"use another --work-dir, or delete it to start over: {exc}") from None
        ts = state["train_state"]
        optimizer.load_state_dict(ts["optimizer"])
        scheduler.load_state_dict(ts["scheduler"])
        # The schedule is in steps; another train.batch_size or other training videos make
        # other steps per epoch: go on from this epoch's start in the new count, not from the
        # old count of steps (which moved the cosine back or forward).
        saved_per_epoch = int(ts.get("steps_per_epoch") or round(int(ts["step"]) / (int(ts["epoch"]) + 1)))
        changed = []
        if saved_per_epoch != steps_per_epoch:
            scheduler.last_epoch = (int(ts["epoch"]) + 1) * steps_per_epoch
            changed.append(f"batches per epoch {saved_per_epoch} -> {steps_per_epoch}")
        saved_lr, saved_base = optimizer.param_groups[0]["lr"], scheduler.base_lrs[0]  # as the run left them
        changed += apply_optimizer_settings(optimizer, scheduler, model, cfg,
                                            lr_factor(scheduler.last_epoch, warmup_steps, total_steps))
        new_lr = optimizer.param_groups[0]["lr"]
        if saved_base == cfg.train.lr and not math.isclose(saved_lr, new_lr, rel_tol=0.01):  # (a new lr is said)
            # More epochs stretch the cosine: the rate rises again, said rather than left to find
            changed.append(f"learning rate {saved_lr:.3g} -> {new_lr:.3g} (the schedule over train.epochs="
                           f"{cfg.train.epochs}, train.warmup_epochs={cfg.train.warmup_epochs:g})")
        if scaler.is_enabled() and ts.get("scaler"):
            scaler.load_state_dict(ts["scaler"])
        start_epoch, step = int(ts["epoch"]) + 1, int(ts["step"])
        best_acc, bad_epochs = float(ts["best_acc"]), int(ts["bad_epochs"])
        skipped_steps = int(ts.get("skipped_steps", 0))
        if "rng" in ts:
            restore_rng_state(ts["rng"], device)
        else:  # written before 2026-11-29: the CPU generator only
            torch.set_rng_state(ts["torch_rng"])
        generator.set_state(ts["loader_rng"])
        history = [h for h in _read_metrics(work_dir / "metrics.jsonl") if h["epoch"] < start_epoch]
        if is_main and start_epoch >= cfg.train.epochs:
            log.info(f"{last_path}: the run is complete ({start_epoch} of {cfg.train.epochs} epochs); nothing to "
                     "train (a larger train.epochs goes on from here)")
        elif is_main and bad_epochs >= cfg.train.early_stopping_patience > 0:
            log.info(f"{last_path}: the run stopped early after {start_epoch} epochs (no better validation accuracy "
                     f"for train.early_stopping_patience={cfg.train.early_stopping_patience}); nothing to train")
        elif is_main:
            log.info(f"resuming from {last_path} at epoch {start_epoch + 1}"
                     + (f" ({', '.join(changed)})" if changed else ""))
            # The settings the run goes on with; a run with nothing to train keeps those it had.
            save_config(cfg, work_dir / "config.yaml")

    def checkpoint(path: Path, epoch: int, metrics: dict) -> None:
        save_checkpoint(
            path, model_state=model.state_dict(), model_config=model.config, classes=list(classes), class_ids=class_ids,
            feature=features_info,
            config=cfg.to_dict(),  # the settings this checkpoint was trained with (config.yaml moves on)
            train_state={
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                "epoch": epoch, "step": step, "steps_per_epoch": steps_per_epoch, "best_acc": best_acc,
                "bad_epochs": bad_epochs, "skipped_steps": skipped_steps,
                "rng": capture_rng_state(device),  # CUDA's too: dropout there
                "loader_rng": generator.get_state(),
            },
            metrics=metrics,
        )

    # 5. epochs
    from tqdm import tqdm

    def skip_step(message: str) -> None:
        """A non-finite loss or gradient: stop (nothing is saved) or drop this step, as configured."""
        nonlocal skipped_steps, step
        skipped_steps += 1
        if cfg.train.nonfinite == "stop":
            raise TrainingError(message + f"; stopping ({_kept(last_path)})")
        warnings.warn(f"{message}; step skipped", VideoactWarning, stacklevel=2)
        optimizer.zero_grad(set_to_none=True)
        step += 1
        scheduler.step()

    for epoch in range(start_epoch, cfg.train.epochs):
        if bad_epochs >= cfg.train.early_stopping_patience > 0:
            break
        ddp_model.train()
        sampler.set_epoch(epoch)
        totals = [0.0, 0.0, 0.0]
        lr_used = scheduler.get_last_lr()[0]  # the lr of this epoch's last step, for the log
        t0 = time.perf_counter()
        bar = tqdm(batches_of(train_loader), total=len(train_loader), desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                   leave=False, disable=not is_main or not cfg.train.progress, dynamic_ncols=True)
        for features, lengths, y in bar:
            features, y = features.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                logits = ddp_model(features, lengths)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.train.label_smoothing)
            if not all_finite(loss, device):
                value = f"({loss.item()})" if world == 1 else f"on some rank (here {loss.item()})"
                skip_step(f"non-finite loss {value} at epoch {epoch + 1}, step {step + 1}")
                continue
            outcome = optimizer_step(loss, model, optimizer, scaler, cfg.train.grad_clip)
            if outcome == "nonfinite":
                skip_step(f"non-finite gradient norm at epoch {epoch + 1}, step {step + 1}")
                continue
            lr_used = scheduler.get_last_lr()[0]
            scheduler.step()
            step += 1
            totals[0] += loss.item() * len(y)
            totals[1] += (logits.argmax(-1) == y).sum().item()
            totals[2] += len(y)
            bar.set_postfix(loss=f"{totals[0] / totals[2]:.3f}", acc=f"{totals[1] / totals[2]:.3f}")
        loss_sum, correct, count = _all_sum(totals, device)
        val = evaluate_loss_acc(model, val_loader, device)
        record = {
            "epoch": epoch, "step": step, "lr": lr_used,
            # null where nothing was measured (every step skipped) or the value is nan/inf:
            # metrics.jsonl stays strict JSON (NaN is not JSON) for any reader
            # train_loss is the objective (label smoothing, dropout on), so it stays above
            # the plain cross-entropy of val_loss even on the same videos.
            "train_loss": loss_sum / count if count else None, "train_acc": correct / count if count else None,
            "val_loss": val["loss"] if math.isfinite(val["loss"]) else None, "val_acc": val["acc"],
            "seconds": time.perf_counter() - t0, "skipped_steps": skipped_steps,
        }
        improved = val["acc"] > best_acc
        if improved:
            best_acc, bad_epochs = val["acc"], 0
        else:
            bad_epochs += 1
        history.append(record)
        if is_main:
            if improved or cfg.train.select == "last":
                checkpoint(best_path, epoch, record)
            # metrics.jsonl before last.pt: a crash in between then repeats this epoch on
            # resume (whose history keeps only epochs before last.pt's) instead of losing its line.
            atomic_write_text(work_dir / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
            checkpoint(last_path, epoch, record)
            if cfg.train.progress:
                train_part = ("every step skipped" if record["train_loss"] is None else
                              f"loss {record['train_loss']:.4f} acc {record['train_acc']:.3f}")
                print(f"epoch {epoch + 1}: {train_part} | val loss {val['loss']:.4f} acc {val['acc']:.3f}"
                      + (" *" if improved else ""))
    if world > 1:
        barrier()  # with device_ids on NCCL

    # 6. test the selected checkpoint (best.pt)
    best_epoch = next((h["epoch"] for h in history if h["val_acc"] == best_acc), None)  # counted from 0
    selected = best_epoch if cfg.train.select == "best" or not history else history[-1]["epoch"]
    best = load_checkpoint(best_path) if is_main and best_path.exists() else None  # read once: summary and test
    if best is not None:
        # The epoch best.pt holds, as it is: a finished run run again with another
        # train.select trains nothing (the summary named the epoch the new setting would
        # have chosen, and the test used the old one's).
        in_best = best.get("train_state", {}).get("epoch", selected)
        if cfg.train.select == "last" and history and in_best != history[-1]["epoch"] and last_path.exists():
            atomic_write_bytes(best_path, last_path.read_bytes())  # the last epoch is last.pt's model
            best = load_checkpoint(best_path)
            in_best = history[-1]["epoch"]
        selected = in_best
    summary: dict[str, Any] = {"best_val_acc": best_acc, "best_epoch": best_epoch, "selected_epoch": selected,
                               "epochs_run": len(history),
                               "stopped_early": len(history) < cfg.train.epochs, "work_dir": str(work_dir),
                               "classes": list(classes), "history": history,
                               "unreadable": unreadable}  # why videos were left out (warned as they were)
    if test_samples and is_main:
        from .evaluation import classification_metrics

        model.load_state_dict((best or load_checkpoint(best_path))["model_state"])  # (no best.pt: said as before)
        test_set = FeatureDataset(test_samples, cache_dir, num_segments=segments, train=False, settings=settings)
        probs, labels = predict(model, DataLoader(test_set, batch_size=per_rank_batch, collate_fn=collate_features,
                                                  generator=torch.Generator()), device)  # not the global RNG
        summary["test"] = classification_metrics(probs, labels, list(classes))
        # Kept beside the checkpoints, as videoact test --out writes them (the summary is
        # otherwise only printed): with the checkpoint and epoch they are of.
        from .evaluation import save_metrics

        try:
            save_metrics({**summary["test"], "checkpoint": str(best_path), "epoch": selected,
                          "data": str(cfg.data.test)}, work_dir / "test.json")
        except OSError as exc:  # a full disk: the run's result is still returned and printed
            warnings.warn(f"cannot write {work_dir / 'test.json'}: {exc.strerror or exc}", VideoactWarning,
                          stacklevel=2)
    return summary


def _kept(last_path: Path) -> str:
    if last_path.exists():
        return f"last good checkpoint kept: {last_path}"
    return "no checkpoint was written: the first epoch did not finish"


def _read_metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out
