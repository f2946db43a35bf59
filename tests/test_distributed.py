"""torchrun (gloo, CPU) runs against one-process runs: real processes, real videos, real models."""
import json
import os
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from videoact.distributed import DistributedSetupError, ShardSampler, init_distributed, local_device
from videoact.feature_cache import load_features, read_metadata
from videoact.testing import write_coded_video

# On the CPU: the test compares ranks with one process bit for bit, which holds for oneDNN
# with equal thread counts; a one-GPU machine would refuse the second rank (one rank per GPU).
EXTRACT_ARGS = ["--device", "cpu", "--image-size", "64", "--batch-size", "8", "--workers", "1", "--no-progress"]


def cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "videoact", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def torchrun(*args, ranks=2, timeout=300):
    # OMP_NUM_THREADS=1 is what torchrun sets by default; explicit here so the runs are alike.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={ranks}", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def tensor_bytes(path: Path) -> bytes:
    """The tensor data of a safetensors file (everything after its JSON header)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return data[8 + n:]


def files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}


def test_torchrun_extraction_equals_one_process(tmp_path):
    src = tmp_path / "videos"
    for i in range(7):  # uneven lengths and two codecs, so the ranks' batches differ
        ext = ".avi" if i % 3 == 2 else ".mp4"
        write_coded_video(src / f"class{i % 2}" / f"clip{i}{ext}", 9 + 4 * i)
    (src / "class1" / "broken.mp4").write_text("not a video\n")

    # oneDNN's float results depend on the thread count (measured: up to 2e-5 apart at
    # batch 8, 64 px, 1 vs 2 threads), so the reference process gets the ranks' one thread.
    # The three first runs write to their own folders: started side by side (start-ups overlap).
    with ThreadPoolExecutor(max_workers=3) as pool:
        single = pool.submit(cli, "extract", str(src), str(tmp_path / "one"), *EXTRACT_ARGS,
                             env=dict(os.environ, OMP_NUM_THREADS="1"))
        dist = pool.submit(torchrun, "-m", "videoact", "extract", str(src), str(tmp_path / "two"), *EXTRACT_ARGS)
        threads = pool.submit(cli, "extract", str(src), str(tmp_path / "threads"), *EXTRACT_ARGS)
        single, dist, threads = single.result(), dist.result(), threads.result()
    assert single.returncode == 1, single.stderr  # the broken file is reported
    assert dist.returncode != 0, dist.stdout + dist.stderr
    assert "on 2 ranks" in dist.stdout and "failed 1" in dist.stdout, dist.stdout + dist.stderr

    one, two = files(tmp_path / "one"), files(tmp_path / "two")
    assert sorted(one) == sorted(two)  # same files: 7 caches and one merged failures.jsonl
    assert len([n for n in one if n.endswith(".safetensors")]) == 7
    for name, path in one.items():
        if name == "failures.jsonl":
            reasons = [json.loads(line)["reason"] for line in path.read_text().splitlines()]
            assert reasons == [json.loads(line)["reason"] for line in two[name].read_text().splitlines()]
            assert len(reasons) == 1 and "broken.mp4" in reasons[0]
            continue
        assert tensor_bytes(path) == tensor_bytes(two[name]), f"{name}: features differ between 1 and 2 ranks"
        assert read_metadata(path) == read_metadata(two[name])
        cached = load_features(path)
        assert cached.features.dtype == torch.float16 and cached.features.shape[1] == 1280

    # With the default thread count the features agree to float16 rounding.
    assert threads.returncode == 1, threads.stderr  # the broken file again, the rest written
    assert sorted(files(tmp_path / "threads")) == sorted(one)
    for name, path in files(tmp_path / "threads").items():
        if name.endswith(".safetensors"):
            torch.testing.assert_close(load_features(path).features.float(),
                                       load_features(one[name]).features.float(), rtol=2e-3, atol=2e-3)

    # A rerun under torchrun resumes: nothing is extracted again, nothing rewritten.
    stamps = {n: p.stat().st_mtime_ns for n, p in two.items() if n.endswith(".safetensors")}
    again = torchrun("-m", "videoact", "extract", str(src), str(tmp_path / "two"), *EXTRACT_ARGS)
    assert "extracted 0 videos" in again.stdout and "skipped 7 up to date" in again.stdout, again.stdout
    assert stamps == {n: p.stat().st_mtime_ns for n, p in files(tmp_path / "two").items()
                      if n.endswith(".safetensors")}


# Runs the real `videoact train` and records every file the process opens for writing or
# renames into place (Python audit events: observation only, nothing is replaced).
LAUNCHER = '''
import json, os, sys
writes = []
def hook(event, args):
    if event == "open":
        path, mode, flags = args
        writing = (mode is not None and any(c in str(mode) for c in "wax+")) or (
            mode is None and isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writing and isinstance(path, (str, bytes, os.PathLike)):
            writes.append(os.fsdecode(path))
    elif event == "os.rename":
        writes.append(os.fsdecode(args[1]))
if __name__ == "__main__":  # spawned decode workers import this file too
    sys.addaudithook(hook)
    from videoact.cli import main
    rc = main(sys.argv[2:])
    log = list(writes)
    with open(os.path.join(sys.argv[1], "writes.rank%s.json" % os.environ.get("RANK", "0")), "w") as f:
        json.dump(log, f)
    sys.exit(rc)
'''

TRAIN_SET = [
    "feature.image_size=64", "feature.sampling=uniform", "feature.num_segments=4", "feature.batch_size=8",
    "feature.device=cpu", "model.hidden=16", "model.proj_dim=16", "model.dropout=0", "model.input_dropout=0",
    "train.epochs=3", "train.batch_size=4", "train.warmup_epochs=0.5", "train.device=cpu",
    "train.progress=false", "train.early_stopping_patience=0", "data.num_workers=0",
]


def test_two_rank_ddp_training_follows_the_one_process_loss_curve(tmp_path):
    for split, per_class in (("train", 8), ("val", 2)):
        for c in range(2):
            for i in range(per_class):
                write_coded_video(tmp_path / split / f"c{c}" / f"v{i}.mp4", 10 + i)
    # Two that cannot be read, one in each rank's share of the extraction: every rank leaves
    # both out (each knew only its own share's failures), and the end of the run names both.
    (tmp_path / "train" / "c0" / "v8.mp4").write_bytes(b"")
    (tmp_path / "train" / "c1" / "v8.mp4").write_text("not a video\n")
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)

    def args(run: str) -> list[str]:
        sets = [*TRAIN_SET, f"feature.cache_dir={tmp_path / ('cache_' + run)}"]
        return ["train", "--data", str(tmp_path / "train"), "--val", str(tmp_path / "val"),
                "--work-dir", str(tmp_path / run), *[a for s in sets for a in ("--set", s)]]

    (tmp_path / "log_one").mkdir()
    (tmp_path / "log_two").mkdir()
    # Own work, cache and log folders: the two runs side by side (start-ups overlap).
    with ThreadPoolExecutor(max_workers=2) as pool:
        single = pool.submit(subprocess.run, [sys.executable, str(launcher), str(tmp_path / "log_one"), *args("one")],
                             capture_output=True, text=True, timeout=300)
        dist = pool.submit(torchrun, str(launcher), str(tmp_path / "log_two"), *args("two"))
        single, dist = single.result(), dist.result()
    assert single.returncode == 0, single.stderr
    assert dist.returncode == 0, dist.stdout + dist.stderr
    for run in (single, dist):
        end = run.stderr[run.stderr.index("2 videos could not be read and were left out:"):]
        assert "c0/v8.mp4: file is empty" in end and "c1/v8.mp4: not a readable video" in end, run.stderr

    curve = [json.loads(line) for line in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    ddp = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert len(curve) == len(ddp) == 3
    assert [r["step"] for r in curve] == [r["step"] for r in ddp] == [4, 8, 12]  # 16 videos / global batch 4
    for a, b in zip(curve, ddp):
        for key in ("train_loss", "val_loss", "train_acc", "val_acc", "lr"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (key, a, b)
    assert curve[-1]["train_loss"] != curve[0]["train_loss"]  # it did train

    from videoact.checkpoint import load_checkpoint

    w1 = load_checkpoint(tmp_path / "one" / "last.pt")["model_state"]
    w2 = load_checkpoint(tmp_path / "two" / "last.pt")["model_state"]
    # Gradients averaged over ranks differ from one batch's by float32 rounding, and Adam
    # divides by their running size: an element with a tiny gradient moves apart most (one
    # of 1,024 by 3.3e-5, 1.5e-4 of its size, after the segment centres changed the frames).
    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], rtol=5e-4, atol=1e-4)

    # Only rank 0 writes into the work folder (checkpoints, metrics, config).
    rank0 = json.loads((tmp_path / "log_two" / "writes.rank0.json").read_text())
    rank1 = json.loads((tmp_path / "log_two" / "writes.rank1.json").read_text())
    work = str(tmp_path / "two")
    assert [p for p in rank1 if p.startswith(work)] == []
    assert any(p.endswith("last.pt") for p in rank0) and any(p.endswith("best.pt") for p in rank0)
    # ...while both ranks extracted their own share of the features
    cache = str(tmp_path / "cache_two")
    assert any(p.startswith(cache) for p in rank0) and any(p.startswith(cache) for p in rank1)


FINITE_CHECK = '''
import json, sys, torch, torch.distributed as dist
from videoact.training import all_finite
dist.init_process_group("gloo")
rank, cpu = dist.get_rank(), torch.device("cpu")
answers = [all_finite(torch.tensor(1.0), cpu),
           all_finite(torch.tensor(float("nan") if rank == 1 else 2.0), cpu),
           all_finite(torch.tensor([1.0, float("inf")]) if rank == 0 else torch.ones(2), cpu)]
with open(f"{sys.argv[1]}/rank{rank}.json", "w") as f:  # one file each: printed lines can interleave
    json.dump(answers, f)
dist.destroy_process_group()
'''


def test_a_non_finite_loss_on_one_rank_skips_the_step_on_all(tmp_path):
    """A rank that skipped backward alone would pair DDP's gradient reductions with other steps."""
    script = tmp_path / "finite.py"
    script.write_text(FINITE_CHECK)
    proc = torchrun(str(script), str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    answers = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert answers == [[True, False, False]] * 2


def test_features_do_not_depend_on_batch_neighbours():
    """What extraction's fixed batch shape relies on: at one batch size a frame's output
    has the same bits whatever frames share the batch and wherever it sits in it."""
    from videoact.backbones import create_backbone
    from videoact.fast_inference import inference_model

    backbone = create_backbone("efficientnet_lite0")
    backbone.input_size = 64
    model = inference_model(backbone, torch.device("cpu"))
    x = torch.randn(16, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        a = model(x[:8].contiguous(memory_format=torch.channels_last))
        shuffled = torch.cat([x[12:16], x[:8:2], x[8:12]])  # frames 0, 2, 4, 6 moved, new neighbours
        b = model(shuffled.contiguous(memory_format=torch.channels_last))
    assert torch.equal(b[4:8], a[0:8:2])


def test_shard_sampler_covers_each_item_once():
    data = list(range(11))
    parts = [list(ShardSampler(data, rank=r, world_size=3)) for r in range(3)]
    assert sorted(i for p in parts for i in p) == data
    assert [len(ShardSampler(data, rank=r, world_size=3)) for r in range(3)] == [4, 4, 3]
    with pytest.raises(ValueError, match="outside"):
        ShardSampler(data, rank=3, world_size=3)


def test_incomplete_torchrun_environment_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(DistributedSetupError, match="MASTER_ADDR, MASTER_PORT not set"):
        init_distributed("cpu")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(DistributedSetupError, match="WORLD_SIZE='two'"):
        init_distributed("cpu")


def test_single_process_is_not_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = init_distributed("cpu")
    assert not info.enabled and info.is_main and info.world_size == 1
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert local_device("cpu") == torch.device("cpu")
    assert local_device("cuda") == torch.device("cuda", 3)  # one GPU per rank on a node
    assert local_device("cuda:1") == torch.device("cuda", 1)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA-only path: no GPU here")


@needs_cuda
def test_cuda_extraction_float32_and_autocast_channels_last_pinned(tmp_path):
    """channels_last, pinned uint8 input and non-blocking copies back, in float32 (the
    default: the features live inference computes) and with autocast (amp=True)."""
    from videoact.extract import extract_features

    videos = [write_coded_video(tmp_path / "v" / f"clip{i}.mp4", 12 + 5 * i) for i in range(3)]
    kw = dict(root=tmp_path / "v", image_size=64, batch_size=8, num_workers=1, progress=False)
    cpu = extract_features(videos, tmp_path / "cpu", device="cpu", **kw)
    fp32 = extract_features(videos, tmp_path / "fp32", device="cuda", **kw)
    amp = extract_features(videos, tmp_path / "amp", device="cuda", amp=True, **kw)
    assert cpu.ok and fp32.ok and amp.ok and fp32.frames == amp.frames == cpu.frames
    for video in videos:
        ref = load_features(tmp_path / "cpu" / (video.name + ".safetensors"))
        a = load_features(tmp_path / "fp32" / (video.name + ".safetensors"))
        b = load_features(tmp_path / "amp" / (video.name + ".safetensors"))
        assert torch.equal(a.frame_indices, ref.frame_indices) and torch.equal(b.frame_indices, ref.frame_indices)
        # float32 (cuDNN may use TF32 convolutions) agrees with the CPU to float16 storage
        # and TF32 rounding; autocast only in direction (measured on an H100: up to 0.63 apart).
        torch.testing.assert_close(a.features.float(), ref.features.float(), atol=2e-2, rtol=1e-2)
        cos = torch.nn.functional.cosine_similarity(b.features.float(), ref.features.float(), dim=1)
        assert cos.min() > 0.98, cos


@needs_cuda
def test_cuda_training_step_with_amp(tmp_path):
    """Mixed-precision training on the GPU through the real command."""
    for c in range(2):
        for i in range(4):
            write_coded_video(tmp_path / "data" / f"c{c}" / f"v{i}.mp4", 10 + i)
    sets = [s.replace("device=cpu", "device=cuda") for s in TRAIN_SET] + ["train.epochs=1", "train.amp=true"]
    proc = cli("train", "--data", str(tmp_path / "data"), "--work-dir", str(tmp_path / "run"),
               *[a for s in sets for a in ("--set", s)])
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run" / "last.pt").exists()
