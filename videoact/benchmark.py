"""Throughput figures for feature extraction and temporal-model training, each next to its bound.

``python tools/benchmark.py [--quick] [--json FILE] [--device cpu|cuda]`` runs
:func:`run_benchmark`: it writes a folder of benchmark clips (the temporal-order
generator, :mod:`videoact.synthetic`, at 320x240, 25 fps, MPEG-4 part 2), samples the
same frames of every clip for every stage, and measures

* decode-only, one process and one decoder thread each: our reader
  (:func:`videoact.decode.open_video`, frame counts verified), raw decord
  (``VideoReader.get_batch``), raw OpenCV (sequential ``grab``/``retrieve``);
* decode-only as the extraction pipeline runs it (its DataLoader: worker processes, or
  the main process with a CPU backbone on up to 2 cores);
* backbone-only: the model extraction runs (BatchNorm folded, channels_last, on CUDA
  autocast) on already-preprocessed frames, at the extraction batch size;
* end-to-end extraction (:func:`videoact.extract.extract_features`: decode, resize,
  normalize, backbone, write) and ``extract_vs_bottleneck_ratio``, end-to-end over the
  slower of decode-only (pipeline) and backbone-only;
* a naive baseline written the way popular CNN-LSTM repositories do it: OpenCV reads
  every frame of one video, PIL ``Resize``/``CenterCrop``/``ToTensor``/``Normalize``
  per frame, the sampled frames of the video as one NCHW batch through the plain
  (unfolded) model, ``np.save`` per video, in a process of its own as its users run it
  (the benchmark process has :func:`videoact.fast_inference.keep_freed_memory` on, like
  extraction; the full run also times the naive code in this process); and
  ``extract_vs_naive_ratio``;
* temporal-model training throughput on the cached features (sequences/s): the
  BiLSTM recognizer with ``nn.LSTM`` (cuDNN on GPU, the fused kernel on CPU) and the
  same model with the LSTM replaced by a per-time-step ``nn.LSTMCell`` loop
  (:class:`LSTMCellLoop`, checked to compute the same outputs);
* distributed extraction: ``torchrun`` with one rank against two ranks on the CPU,
  one thread each, on the same job (wall time, and whether the features are identical);
* on CUDA also backbone-only ``efficientnet_lite0`` and ``resnet50`` at 224x224 in bf16.

Throughput in the pipeline's steady state: end-to-end is timed from the arrival of the
first decoded chunk to the last file written, pipeline decoding from the first chunk to
the last (per-run constants excluded: model preparation, decode-worker start-up and
exit; the wall-clock figures including them are reported too). Stages are measured
round-robin ``repeats`` times, backbone-only right before and after end-to-end, and
medians are reported (ratios: the median of each round's ratio), so a change in machine
load hits the compared figures alike.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .device import resolve_device
from .extract import SamplingSpec, decode_loader, extract_features
from .fast_inference import inference_model, keep_freed_memory

__all__ = [
    "Figure",
    "BenchmarkSettings",
    "LSTMCellLoop",
    "machine_info",
    "make_benchmark_videos",
    "run_benchmark",
    "format_table",
    "main",
]

# Published reference (the issue's): timm's benchmark tables, ResNet-50 inference with AMP
# on an RTX 4090, about 4,300 images/s. Context for GPU figures, not a pass/fail bound.
PUBLISHED_RESNET50_AMP_4090 = 4300.0


@dataclass
class Figure:
    """One measured number. ``bound`` says in words what it is held against; ``target``
    is that bound as a number when there is one (``met`` compares with it)."""

    name: str
    value: float | None
    unit: str
    bound: str = ""
    target: float | None = None
    met: bool | None = None
    samples: list[float] = field(default_factory=list)
    note: str = ""


@dataclass
class BenchmarkSettings:
    """What to run. :meth:`quick` gives the ``--quick`` sizes (under 5 minutes on 2 cores)."""

    device: str = "cpu"
    videos: int = 16
    frames: int = 75  # per clip: 3 s at 25 fps
    height: int = 240
    width: int = 320
    sampling: str = "uniform"
    num_segments: int = 16
    backbone: str = "efficientnet_lite0"
    image_size: int | None = None  # None: the backbone's (224)
    batch_size: int = 64
    workers: int | None = None  # decode workers; None: extraction's default
    repeats: int = 3
    backbone_batches: int = 3
    lstm_batch: int = 32
    lstm_steps: int = 30
    lstm_cell_steps: int = 10
    distributed: bool = True
    naive_same_process: bool = True
    dist_videos: int = 16
    gpu_models: bool = True
    stream: bool = True
    stream_seconds: float = 15.0  # real-time file source for the live-engine figures
    seed: int = 0

    @classmethod
    def quick(cls, **overrides: Any) -> "BenchmarkSettings":
        values = dict(videos=8, frames=50, repeats=2, backbone_batches=2, lstm_steps=12,
                      lstm_cell_steps=4, dist_videos=8, naive_same_process=False, stream_seconds=8.0)
        values.update(overrides)
        return cls(**values)

    def sampling_spec(self) -> SamplingSpec:
        return SamplingSpec(mode=self.sampling, num_segments=self.num_segments)


# ---------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(module: str) -> str:
    try:
        mod = __import__(module)
    except Exception as exc:  # a missing optional library is reported, not fatal
        return f"not importable ({type(exc).__name__})"
    return str(getattr(mod, "__version__", "unknown"))


def machine_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """CPU, cores, memory, GPU, load average and library versions."""
    from .version import __version__

    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        # OpenMP's busy-wait changes the CPU figures (videoact/openmp.py)
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "decord": _version("decord"),
        "opencv": _version("cv2"),
        "videoact": __version__,
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(torch.device(device)) if torch.device(device).type == "cuda" else None,
    }
    with contextlib.suppress(OSError, AttributeError):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = Path("/proc/meminfo").read_text().split("\n")[0].split()
        info["memory_gib"] = round(int(mem[1]) / 2**20, 1)
    if torch.device(device).type == "cuda":
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


# ---------------------------------------------------------------------------- videos


def make_benchmark_videos(folder: str | os.PathLike, count: int, frames: int, height: int = 240,
                          width: int = 320, seed: int = 0) -> list[Path]:
    """``count`` clips of the temporal-order benchmark, ``frames`` frames each, as
    MPEG-4 part 2 ``.mp4`` files in ``folder`` (reused when already there)."""
    from .synthetic import CLASSES, render_clip
    from .testing import write_video

    folder = Path(folder)
    paths = []
    for i in range(count):
        path = folder / f"clip{i:04d}.mp4"
        if not path.exists():
            rng = np.random.default_rng([seed, i])
            clip = render_clip(CLASSES[i % len(CLASSES)], rng, height=height, width=width, num_frames=frames)
            write_video(path, clip, fps=25.0)
        paths.append(path)
    return paths


def sampled_indices(videos: Sequence[Path], sampling: SamplingSpec) -> list[list[int]]:
    """The frame indices each stage reads: the sampling on each clip's verified count."""
    from .decode import open_video

    out = []
    for path in videos:
        with open_video(path) as reader:
            out.append(sampling.indices(len(reader), reader.fps))
    return out


# ---------------------------------------------------------------------------- stages


def _timed(fn: Callable[[], int], min_seconds: float = 0.0) -> tuple[int, float]:
    """Run ``fn`` (returns a count) at least once and until ``min_seconds`` have passed."""
    t0 = time.perf_counter()
    n = fn()
    while time.perf_counter() - t0 < min_seconds:
        n += fn()
    return n, time.perf_counter() - t0


def decode_ours(videos: Sequence[Path], indices: Sequence[list[int]]) -> int:
    """Our reader, one decoder thread: open (count verified), read the sampled frames.
    The per-process cache of verified counts is cleared first: extraction opens each
    video once, so it pays for the verification once per video too."""
    from .decode import clear_cache, open_video

    clear_cache()
    frames = 0
    for path, idx in zip(videos, indices):
        with open_video(path, num_threads=1) as reader:
            frames += len(reader.get(idx))
    return frames


def decode_decord(videos: Sequence[Path], indices: Sequence[list[int]]) -> int:
    """Raw decord, one decoder thread: ``get_batch`` of the sampled frames."""
    from .decode import load_decord  # cv2 and torch loaded before decord: see there

    decord = load_decord()
    frames = 0
    for path, idx in zip(videos, indices):
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        frames += len(reader.get_batch(idx).asnumpy())
        del reader
    return frames


def decode_opencv(videos: Sequence[Path], indices: Sequence[list[int]]) -> int:
    """Raw OpenCV, one decoder thread: ``grab`` every frame up to the last one sampled,
    ``retrieve`` and convert to RGB the sampled ones."""
    import cv2

    frames = 0
    for path, idx in zip(videos, indices):
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
        wanted = set(idx)
        out = {}
        try:
            for i in range(max(wanted) + 1):
                if not cap.grab():
                    break
                if i in wanted:
                    ok, bgr = cap.retrieve()
                    if ok:
                        out[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()
        frames += sum(1 for i in idx if i in out)
    return frames


def decode_pipeline(videos: Sequence[Path], sampling: SamplingSpec, workers: int | None,
                    pin_memory: bool = False) -> tuple[int, float, int, float]:
    """Extraction's decoding stage alone (worker processes).

    Returns ``(frames after the first chunk, seconds from the first chunk to the last,
    all frames, seconds from the start to the last chunk)``: steady-state and wall rates."""
    t0 = time.perf_counter()
    first = last = None
    frames = first_frames = 0
    for item in decode_loader(videos, sampling, num_workers=workers, pin_memory=pin_memory):
        last = time.perf_counter()
        if "error" in item:
            raise RuntimeError(item["error"])
        if first is None:
            first, first_frames = last, len(item["frames"])
        frames += len(item["frames"])
    if first is None or last is None or last <= first:
        raise RuntimeError("too few chunks to time the decode pipeline: use more videos")
    return frames - first_frames, last - first, frames, last - t0


def preprocessed_batch(backbone, videos: Sequence[Path], indices: Sequence[list[int]], batch_size: int,
                       device: torch.device) -> torch.Tensor:
    """The first ``batch_size`` sampled frames, preprocessed as extraction does: ``[B, 3, S, S]``."""
    from .decode import open_video
    from .preprocess import preprocess_frames

    parts, n = [], 0
    while n < batch_size:
        for path, idx in zip(videos, indices):
            with open_video(path) as reader:
                frames = reader.get(idx).frames
            parts.append(preprocess_frames(frames, backbone.input_size, backbone.mean, backbone.std,
                                           device=device, channels_last=True))
            n += len(frames)
            if n >= batch_size:
                break
    return torch.cat(parts)[:batch_size].contiguous(memory_format=torch.channels_last)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def backbone_throughput(model: nn.Module, x: torch.Tensor, batches: int, device: torch.device,
                        amp_dtype: torch.dtype | None = None, warmup: int = 1) -> tuple[int, float]:
    """Images through ``model`` in ``batches`` calls on ``x`` ``[B, 3, S, S]``; (images, seconds)."""
    ctx = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    with torch.inference_mode(), ctx():
        for _ in range(warmup):
            model(x)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(batches):
            model(x)
        _sync(device)
    return batches * len(x), time.perf_counter() - t0


def naive_baseline(videos: Sequence[Path], indices: Sequence[list[int]], model: nn.Module, mean, std,
                   size: int, out_dir: Path, device: torch.device) -> int:
    """The common CNN-LSTM repository recipe, one video at a time (see the module doc)."""
    import cv2
    from PIL import Image
    from torchvision import transforms

    transform = transforms.Compose([
        transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = 0
    for path, idx in zip(videos, indices):
        cap = cv2.VideoCapture(str(path))
        wanted, images, i = set(idx), [], 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            if i in wanted:
                images.append(Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
            i += 1
        cap.release()
        batch = torch.stack([transform(im) for im in images]).to(device)
        with torch.no_grad():
            feats = model(batch).cpu().numpy()
        np.save(out_dir / (path.stem + ".npy"), feats)
        frames += len(images)
    return frames


def _naive_job(videos: list[str], indices: list[list[int]], backbone_name: str, image_size: int | None,
               out_dir: str, device: str) -> tuple[int, float]:
    """The naive baseline in a fresh process (spawned: default allocator, default threads),
    as a user of such a repository runs it. Returns (frames, seconds); model loading untimed."""
    from .backbones import create_backbone

    backbone = create_backbone(backbone_name, pretrained=backbone_name == "efficientnet_lite0")
    if image_size:
        backbone.input_size = int(image_size)
    backbone = backbone.to(device).eval()
    shutil.rmtree(out_dir, ignore_errors=True)
    return _timed(lambda: naive_baseline([Path(v) for v in videos], indices, backbone, backbone.mean,
                                         backbone.std, backbone.input_size, Path(out_dir), torch.device(device)))


# ---------------------------------------------------------------------------- temporal model


class LSTMCellLoop(nn.Module):
    """A one-layer (bi)LSTM stepped through time in Python with ``nn.LSTMCell``: the
    per-time-step reference the fused ``nn.LSTM`` kernel is compared with.

    Drop-in for ``nn.LSTM(batch_first=True)`` on unpacked input: ``[B, T, P] ->
    (out [B, T, dirs*H], (h_n [dirs, B, H], c_n [dirs, B, H]))``.
    """

    def __init__(self, input_size: int, hidden_size: int, bidirectional: bool = True) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.forward_cell = nn.LSTMCell(input_size, hidden_size)
        self.backward_cell = nn.LSTMCell(input_size, hidden_size) if bidirectional else None

    @classmethod
    def from_lstm(cls, lstm: nn.LSTM) -> "LSTMCellLoop":
        """The same weights as a one-layer ``batch_first`` ``nn.LSTM``."""
        if lstm.num_layers != 1 or not lstm.batch_first or lstm.proj_size:
            raise ValueError("LSTMCellLoop copies one-layer batch_first LSTMs without projection")
        loop = cls(lstm.input_size, lstm.hidden_size, lstm.bidirectional)
        cells = [("", loop.forward_cell)] + ([("_reverse", loop.backward_cell)] if lstm.bidirectional else [])
        with torch.no_grad():
            for suffix, cell in cells:
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(cell, name).copy_(getattr(lstm, f"{name}_l0{suffix}"))
        return loop.to(lstm.weight_ih_l0.device)

    def forward(self, x: torch.Tensor, state: Any = None):
        if not isinstance(x, torch.Tensor):
            raise TypeError("LSTMCellLoop takes padded tensors [B, T, P], not packed sequences")
        batch, steps, _ = x.shape
        zeros = x.new_zeros(batch, self.hidden_size)
        outs, hs, cs = [], [], []
        for cell, order in ((self.forward_cell, range(steps)), (self.backward_cell, range(steps - 1, -1, -1))):
            if cell is None:
                continue
            h, c, seq = zeros, zeros, [None] * steps
            for t in order:
                h, c = cell(x[:, t], (h, c))
                seq[t] = h
            outs.append(torch.stack(seq, 1))
            hs.append(h)
            cs.append(c)
        return torch.cat(outs, -1), (torch.stack(hs), torch.stack(cs))


def _feature_batches(cache_files: Sequence[Path], num_segments: int, batch: int, classes: int,
                     device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches ``([B, T, D], [B])`` of cached features (TSN segment centres), cycling the files."""
    from .feature_cache import load_features
    from .sampling import uniform_segments

    seqs = []
    for f in cache_files:
        feats = load_features(f).features.float()
        seqs.append(feats[torch.as_tensor(uniform_segments(len(feats), num_segments, train=False))])
    out = []
    for start in range(0, max(len(seqs), batch) * 2, batch):
        x = torch.stack([seqs[(start + i) % len(seqs)] for i in range(batch)]).to(device)
        y = torch.tensor([(start + i) % classes for i in range(batch)], device=device)
        out.append((x, y))
    return out


def temporal_throughput(model: nn.Module, batches: list, steps: int, device: torch.device,
                        warmup: int = 2) -> tuple[int, float]:
    """Training steps (forward, backward, AdamW) on ``batches``; (sequences, seconds)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    use_amp = device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    model.train()
    t0, seqs = 0.0, 0
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t0 = time.perf_counter()
        x, y = batches[i % len(batches)]
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            seqs += len(y)
    _sync(device)
    return seqs, time.perf_counter() - t0


# ---------------------------------------------------------------------------- distributed


def _tensor_bytes(path: Path) -> bytes:
    """A safetensors file without its header: the raw tensor bytes."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return data[8 + n:]


def compare_caches(a: Path, b: Path) -> tuple[bool, str]:
    """Same cache files, same tensor bytes and same metadata? (and the first difference)."""
    from .feature_cache import read_metadata

    fa = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    if fa != fb:
        return False, f"file lists differ: {sorted(set(fa) ^ set(fb))[:5]}"
    for rel in fa:
        if not rel.endswith(".safetensors"):
            if (a / rel).read_bytes() != (b / rel).read_bytes():
                return False, f"{rel} differs"
            continue
        if _tensor_bytes(a / rel) != _tensor_bytes(b / rel):
            return False, f"{rel}: tensor bytes differ"
        if read_metadata(a / rel) != read_metadata(b / rel):
            return False, f"{rel}: metadata differs"
    return True, f"{len(fa)} files identical"


def sampling_options(sampling: SamplingSpec) -> list[str]:
    """``videoact extract``'s options for ``sampling``: only its own mode's (the command
    refuses another mode's, e.g. --num-segments with --sampling all, which ended the
    benchmark's distributed run and with it the whole benchmark, before any table)."""
    options = ["--sampling", sampling.mode]
    if sampling.mode == "uniform":
        options += ["--num-segments", str(sampling.num_segments), "--segment-frames", str(sampling.segment_frames)]
    elif sampling.mode == "dense":
        options += ["--stride", str(sampling.stride)]
    elif sampling.mode == "fps":
        options += ["--fps", f"{sampling.target_fps:g}"]
    if sampling.max_frames:
        options += ["--max-frames", str(sampling.max_frames)]
    return options


def distributed_extract_seconds(src: Path, out: Path, ranks: int, image_size: int | None, batch_size: int,
                                sampling: SamplingSpec, timeout: float = 600.0) -> float:
    """Wall time of ``torchrun --nproc_per_node=ranks videoact extract`` on the CPU, one
    thread and no decode worker per rank (each rank gets one core's worth of work)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
           "-m", "videoact", "extract", str(src), str(out), "--device", "cpu", "--workers", "0",
           "--batch-size", str(batch_size), "--no-progress", *sampling_options(sampling)]
    if image_size:
        cmd += ["--image-size", str(image_size)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun with {ranks} ranks failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds


# ---------------------------------------------------------------------------- the run


def _median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _figure(name: str, samples: Sequence[float], unit: str, bound: str = "", target: float | None = None,
            note: str = "") -> Figure:
    value = _median(samples)
    met = None if target is None or value is None else bool(value >= target)
    return Figure(name, None if value is None else round(float(value), 4), unit, bound, target, met,
                  [round(float(s), 4) for s in samples], note)


def run_benchmark(settings: BenchmarkSettings, work_dir: str | os.PathLike | None = None,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure everything in ``settings``; returns ``{"machine", "settings", "figures", ...}``
    (JSON-ready). ``work_dir`` holds the clips and caches (a temporary folder if None)."""
    from .backbones import create_backbone

    device = resolve_device(settings.device)
    cuda = device.type == "cuda"
    started = time.perf_counter()
    machine = machine_info(device)
    tmp = None
    if work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="videoact-bench-")
        work_dir = tmp.name
    work = Path(work_dir)
    stack = contextlib.ExitStack()
    try:
        log(f"writing {settings.videos} clips ({settings.frames} frames, {settings.width}x{settings.height}) ...")
        videos = make_benchmark_videos(work / "videos", settings.videos, settings.frames,
                                       settings.height, settings.width, settings.seed)
        sampling = settings.sampling_spec()
        indices = sampled_indices(videos, sampling)
        total = sum(len(i) for i in indices)
        backbone = create_backbone(settings.backbone, pretrained=settings.backbone == "efficientnet_lite0")
        if settings.image_size:
            backbone.input_size = int(settings.image_size)
        backbone = backbone.to(device).eval()
        if not cuda:
            keep_freed_memory()  # as extract_features does on the CPU (process-wide)
        model = inference_model(backbone, device)
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        naive_pool = stack.enter_context(ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")))
        amp_dtype = None  # float32, as extract_features runs by default
        x = preprocessed_batch(backbone, videos, indices, settings.batch_size, device)
        plain = backbone  # the naive baseline's model: unfolded, NCHW
        log(f"{len(videos)} clips, {total} sampled frames ({sampling.mode}), backbone {settings.backbone} "
            f"at {backbone.input_size}px, batch {settings.batch_size}, device {device}")

        s: dict[str, list[float]] = {k: [] for k in (
            "decode_ours", "decode_decord", "decode_opencv", "decode_pipeline", "decode_pipeline_wall",
            "backbone", "extract", "extract_wall", "naive", "naive_same_process", "extract_ratio",
            "naive_ratio")}
        stage_log = []
        for r in range(settings.repeats):
            log(f"round {r + 1}/{settings.repeats}: load average {_load()}")
            # The three readers take turns, pass after pass, for at least 3 s in all.
            decoders = (("decode_ours", decode_ours), ("decode_decord", decode_decord),
                        ("decode_opencv", decode_opencv))
            counts, seconds, t0 = dict.fromkeys(s, 0), dict.fromkeys(s, 0.0), time.perf_counter()
            while time.perf_counter() - t0 < 3.0 or not counts["decode_ours"]:
                for key, fn in decoders:
                    n, sec = _timed(lambda: fn(videos, indices))
                    counts[key] += n
                    seconds[key] += sec
            for key, _ in decoders:
                s[key].append(counts[key] / seconds[key])
            n, steady, n_all, wall = decode_pipeline(videos, sampling, settings.workers, pin_memory=cuda)
            s["decode_pipeline"].append(n / steady)
            s["decode_pipeline_wall"].append(n_all / wall)
            # Backbone-only right before and right after end-to-end (their mean is the
            # bound), so a change in machine load during the round affects both alike.
            n, sec = backbone_throughput(model, x, settings.backbone_batches, device, amp_dtype)
            before = n / sec
            out = work / f"cache{r}"
            shutil.rmtree(out, ignore_errors=True)
            res = extract_features(videos, out, root=work / "videos", backbone=backbone, sampling=sampling,
                                   batch_size=settings.batch_size, num_workers=settings.workers,
                                   device=device, progress=False)
            if res.failed:
                raise RuntimeError(f"benchmark extraction failed: {res.failed[0].reason}")
            n, sec = backbone_throughput(model, x, settings.backbone_batches, device, amp_dtype)
            s["backbone"].append((before + n / sec) / 2)
            fixed = res.stage_seconds.get("startup", 0.0) + res.stage_seconds.get("teardown", 0.0)
            s["extract"].append(res.frames / (res.seconds - fixed))
            s["extract_wall"].append(res.frames / res.seconds)
            stage_log.append({k: round(v, 3) for k, v in res.stage_seconds.items()}
                             | {"total": round(res.seconds, 3), "load_average": _load()})
            n, sec = naive_pool.submit(_naive_job, [str(v) for v in videos], indices, settings.backbone,
                                       settings.image_size, str(work / "naive"), str(device)).result()
            s["naive"].append(n / sec)
            if settings.naive_same_process:
                shutil.rmtree(work / "naive", ignore_errors=True)
                n, sec = _timed(lambda: naive_baseline(videos, indices, plain, backbone.mean, backbone.std,
                                                       backbone.input_size, work / "naive", device))
                s["naive_same_process"].append(n / sec)
            s["extract_ratio"].append(s["extract"][-1] / min(s["decode_pipeline"][-1], s["backbone"][-1]))
            s["naive_ratio"].append(s["extract"][-1] / s["naive"][-1])
            log("  " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in s.items() if v))

        figures = [
            _figure("decode_ours_fps", s["decode_ours"], "frames/s",
                    "raw decord: the same decoder; ours also verifies each frame count once"),
            _figure("decode_decord_fps", s["decode_decord"], "frames/s", "reference (one thread)"),
            _figure("decode_opencv_fps", s["decode_opencv"], "frames/s", "reference (one thread)"),
            _figure("decode_ours_vs_decord_ratio", [a / b for a, b in zip(s["decode_ours"], s["decode_decord"])],
                    "x", "1 = no cost over raw decord (verification costs most on short clips)"),
            _figure("decode_pipeline_fps", s["decode_pipeline"], "frames/s",
                    "stage bound for end-to-end (extraction's decode stage, steady state)"),
            _figure("decode_pipeline_wall_fps", s["decode_pipeline_wall"], "frames/s",
                    "including worker start-up"),
            _figure("backbone_fps", s["backbone"], "images/s",
                    "stage bound for end-to-end, measured just before and after it (fp32)"),
            _figure("extract_fps", s["extract"], "frames/s",
                    "steady state: from the first decoded chunk to the last file written"),
            _figure("extract_wall_fps", s["extract_wall"], "frames/s",
                    "wall clock, including model preparation and decode-worker start-up and exit"),
            _figure("naive_fps", s["naive"], "frames/s",
                    "reference: per-frame PIL, one video per batch, in its own process"),
            _figure("naive_same_process_fps", s["naive_same_process"], "frames/s",
                    "reference: the same, in this process (its allocator setting helps the naive model too)"),
            _figure("extract_vs_bottleneck_ratio", s["extract_ratio"], "x",
                    ">= 0.9 x min(decode_pipeline_fps, backbone_fps)", 0.9),
            _figure("extract_vs_naive_ratio", s["naive_ratio"], "x",
                    ">= 20x naive on a GPU" if cuda else ">= 3x naive on a 2-core CPU", 20.0 if cuda else 3.0),
        ]

        figures = [f for f in figures if f.value is not None]  # e.g. stages skipped by --quick

        # temporal model on the cached features
        log("temporal model training throughput ...")
        from .temporal import BiLSTMRecognizer

        cache_files = sorted((work / "cache0").rglob("*.safetensors"))
        batches = _feature_batches(cache_files, settings.num_segments, settings.lstm_batch, 10, device)
        torch.manual_seed(settings.seed)
        fused = BiLSTMRecognizer(in_dim=batches[0][0].shape[-1], num_classes=10).to(device)
        looped = BiLSTMRecognizer(in_dim=batches[0][0].shape[-1], num_classes=10).to(device)
        looped.load_state_dict(fused.state_dict())
        looped.lstm = LSTMCellLoop.from_lstm(fused.lstm)
        fused.eval(), looped.eval()
        with torch.no_grad():
            diff = float((fused(batches[0][0]) - looped(batches[0][0])).abs().max())
        n, sec = temporal_throughput(fused, batches, settings.lstm_steps, device)
        lstm_fused = n / sec
        n, sec = temporal_throughput(looped, batches, settings.lstm_cell_steps, device)
        lstm_cell = n / sec
        shape = f"B={settings.lstm_batch}, T={settings.num_segments}, D={batches[0][0].shape[-1]}, H=256 bi"
        figures += [
            _figure("temporal_train_lstm_seq_per_s", [lstm_fused], "sequences/s",
                    f">= the LSTMCell loop ({'cuDNN' if cuda else 'fused CPU'} nn.LSTM, {shape})", lstm_cell),
            _figure("temporal_train_lstmcell_loop_seq_per_s", [lstm_cell], "sequences/s",
                    f"reference: per-time-step LSTMCell loop (outputs equal to nn.LSTM within {diff:.1e})"),
            _figure("lstm_vs_lstmcell_ratio", [lstm_fused / lstm_cell], "x", ">= 1", 1.0),
        ]

        if cuda and settings.gpu_models:
            figures += _gpu_backbones(device, settings, log)

        if settings.distributed:
            figures += _distributed_figures(work, settings, log)

        if settings.stream:
            figures += _stream_figures(work, settings, log)
    finally:
        stack.close()
        if tmp is not None:
            tmp.cleanup()
    return {
        "machine": machine,
        "settings": asdict(settings),
        "sampled_frames": total,
        "extract_stage_seconds": stage_log,
        "figures": [asdict(f) for f in figures],
        "values": {f.name: f.value for f in figures},
        "seconds": round(time.perf_counter() - started, 1),
        "load_average_end": _load(),
    }


def _load() -> list[float] | None:
    with contextlib.suppress(OSError, AttributeError):
        return [round(x, 2) for x in os.getloadavg()]
    return None


def _gpu_backbones(device: torch.device, settings: BenchmarkSettings, log) -> list[Figure]:
    """Backbone-only images/s at 224x224 in bf16 autocast for efficientnet_lite0 and resnet50,
    and in float32 for efficientnet_lite0 (random weights: offline, and throughput does not
    depend on the values)."""
    from .backbones import create_backbone

    figures = []
    for name in ("efficientnet_lite0", "resnet50"):
        log(f"GPU backbone-only {name} ...")
        bb = create_backbone(name, pretrained=False).to(device).eval()
        model = inference_model(bb, device)
        x = torch.randn(256, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
        bound = ("published: about 4,300 images/s for ResNet-50 with AMP on an RTX 4090 (timm)"
                 if name == "resnet50" else "compare with resnet50 (Lite0 has ~10x fewer FLOPs)")
        # Lite0 also in float32, the precision extraction uses by default.
        for dtype in ((torch.bfloat16, None) if name == "efficientnet_lite0" else (torch.bfloat16,)):
            samples = []
            for _ in range(max(1, settings.repeats)):
                n, sec = backbone_throughput(model, x, 20, device, dtype, warmup=3)
                samples.append(n / sec)
            tag = "bf16" if dtype else "fp32"
            figures.append(_figure(f"gpu_backbone_{name}_{tag}_fps", samples, "images/s", bound,
                                   note="batch 256, channels_last, BN folded, "
                                        + ("bf16 autocast" if dtype else "float32 (TF32 convolutions allowed)")))
    return figures


def _stream_figures(work: Path, settings: BenchmarkSettings, log) -> list[Figure]:
    """The live engine on a real-time 640x480 30 fps file source (``videoact.stream.benchmark_stream``)."""
    from .stream import benchmark_stream

    log(f"live engine on a real-time 30 fps file source for {settings.stream_seconds:g} s ...")
    (work / "stream").mkdir(parents=True, exist_ok=True)
    r = benchmark_stream(seconds=settings.stream_seconds, device=settings.device, work_dir=work / "stream")
    p95 = r["latency_p95_ms"]
    return [
        _figure("stream_display_fps", [r["display_rate"]], "frames/s", ">= source rate (30)", 0.95 * r["source_fps"]),
        _figure("stream_prediction_rate", [r["prediction_rate"]], "predictions/s", ">= 5", 5.0),
        _figure("stream_latency_p50_ms", [r["latency_p50_ms"]], "ms", "capture to result"),
        Figure("stream_latency_p95_ms", round(float(p95), 2), "ms", "<= 250 (capture to result)", 250.0,
               bool(p95 <= 250.0), [round(float(p95), 2)], "upper bound"),
        _figure("stream_dropped_frames", [r["dropped"]], "frames",
                "frames replaced before the model looked at them (most on purpose at the feature rate)",
                note=f"feature rate {r['feature_rate']} Hz over {settings.stream_seconds:g} s"),
    ]


def _distributed_figures(work: Path, settings: BenchmarkSettings, log) -> list[Figure]:
    src = work / "dist_videos"
    videos = make_benchmark_videos(src, settings.dist_videos, settings.frames, settings.height,
                                   settings.width, settings.seed + 1)
    # Every frame of each clip: a job long enough that the ranks' start-up (about 3 s
    # each: imports, model loading and preparation) does not hide the speed-up.
    sampling = SamplingSpec(mode="all")
    seconds = {}
    for ranks in (1, 2):
        out = work / f"dist{ranks}"
        shutil.rmtree(out, ignore_errors=True)
        log(f"torchrun, {ranks} rank(s), one thread each, {len(videos)} clips, all frames ...")
        seconds[ranks] = distributed_extract_seconds(src, out, ranks, settings.image_size, settings.batch_size,
                                                     sampling)
    same, detail = compare_caches(work / "dist1", work / "dist2")
    speedup = seconds[1] / seconds[2]
    return [
        _figure("dist_extract_1rank_seconds", [seconds[1]], "s", "torchrun wall time, 1 rank x 1 thread"),
        _figure("dist_extract_2rank_seconds", [seconds[2]], "s", "torchrun wall time, 2 ranks x 1 thread"),
        _figure("dist_extract_speedup", [speedup], "x", "> 1 (clearly less wall time with 2 ranks)", 1.2,
                note="includes process start-up and model loading of every rank"),
        _figure("dist_features_identical", [1.0 if same else 0.0], "bool",
                "1 = same files, byte-identical tensors and equal metadata", 1.0, note=detail),
    ]


# ---------------------------------------------------------------------------- output


def format_table(report: dict[str, Any]) -> str:
    """The figures as a text table: name, value, unit, bound, met."""
    rows = [("figure", "value", "unit", "bound", "met")]
    for f in report["figures"]:
        value = "-" if f["value"] is None else (f"{f['value']:.3g}" if abs(f["value"]) < 100 else f"{f['value']:.0f}")
        met = "" if f["met"] is None else ("yes" if f["met"] else "NO")
        bound = f["bound"] + (f" [{f['target']:.3g}]" if f["target"] is not None and f["unit"] != "x" else "")
        rows.append((f["name"], value, f["unit"], bound, met))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
        if i == 0:
            lines.append("-" * (sum(widths) + 2 * 4 + 3))
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="small sizes: under 5 minutes on 2 CPU cores")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=None, help="rounds of the stage measurements (median reported)")
    p.add_argument("--videos", type=int, default=None, help="benchmark clips")
    p.add_argument("--batch-size", type=int, default=None, help="frames per backbone batch")
    p.add_argument("--workers", type=int, default=None, help="decode worker processes")
    p.add_argument("--sampling", choices=["uniform", "all"], default=None,
                   help="frames per clip: 16 uniform segments (default) or all")
    p.add_argument("--no-distributed", action="store_true", help="skip the torchrun one-vs-two-ranks runs")
    p.add_argument("--no-stream", action="store_true", help="skip the live-engine (webcam-like) figures")
    p.add_argument("--work-dir", help="keep clips and caches here (default: a temporary folder)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any BenchmarkSettings field, e.g. --set frames=120 --set image_size=160 (repeatable)")


def _apply_overrides(settings: BenchmarkSettings, items: Sequence[str]) -> BenchmarkSettings:
    """``key=value`` strings onto ``settings``, typed like the field's default."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(settings)}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(fields)}")
        default = fields[key].default
        if text.lower() in ("none", "null") and default is None:
            value: Any = None
        elif isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"--set {item!r}: {key} is true or false")
            value = text.lower() in ("true", "1")
        elif isinstance(default, (int, type(None))) and key != "device":
            try:
                value = int(text)
            except ValueError:
                raise ValueError(f"--set {item!r}: {key} must be an integer") from None
        elif isinstance(default, float):
            value = float(text)
        else:
            value = text
        setattr(settings, key, value)
    return settings


def run(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in (("repeats", args.repeats), ("videos", args.videos),
                                   ("batch_size", args.batch_size), ("workers", args.workers),
                                   ("sampling", args.sampling)) if v is not None}
    overrides["device"] = args.device
    overrides["distributed"] = not args.no_distributed
    overrides["stream"] = not args.no_stream
    settings = BenchmarkSettings.quick(**overrides) if args.quick else BenchmarkSettings(**overrides)
    try:
        _apply_overrides(settings, args.overrides)
    except ValueError as exc:
        print(f"tools/benchmark.py: {exc}", file=sys.stderr)
        return 2
    if settings.device.startswith("cuda") and not torch.cuda.is_available():
        print("tools/benchmark.py: --device cuda but no CUDA device is available here", file=sys.stderr)
        return 2
    report = run_benchmark(settings, args.work_dir, log=lambda m: print(m, file=sys.stderr, flush=True))
    report["command"] = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else ""
    print(format_table(report))
    print(f"({report['seconds']:.0f} s; load average at the end {report['load_average_end']})")
    if args.json:
        from .atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python tools/benchmark.py [--quick] [--json FILE] [--device cpu|cuda]``."""
    parser = argparse.ArgumentParser(prog="benchmark", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
