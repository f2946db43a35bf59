"""Crash safety: ``kill -9`` at random moments (several seeds, real subprocesses) during
extraction, training and long-video inference, then the same command again, gives the
same final outputs as an uninterrupted run, and nothing partial is ever left where a
later run would trust it. A full disk (a real, small tmpfs) is reported and leaves
earlier files intact.

The kill loops are marked ``slow`` (about a minute or two each on 2 cores).
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from faults import FAST_TRAIN, run_cli, run_main, small_filesystem, write_tiny_checkpoint, write_two_class_folder

from videoact.atomic import is_temporary
from videoact.checkpoint import load_checkpoint
from videoact.feature_cache import load_features
from videoact.frames import is_complete
from videoact.testing import write_coded_video

# Two kill moments per test (three until 2026-12-01: the suite had grown past its 10 minutes).
SEEDS = [0, 1]


def same_threads() -> dict[str, str]:
    """The environment for a run whose outputs are compared bit for bit with runs in this
    process: oneDNN's float results depend on the thread count, and this process may use
    fewer threads than torch's default (tests/conftest.py)."""
    return dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "videoact", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=same_threads())


def kill_after(proc: subprocess.Popen, seconds: float) -> bool:
    """SIGKILL ``proc`` after ``seconds`` (True), unless it finished first (False)."""
    try:
        proc.wait(seconds)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def kill_when(proc: subprocess.Popen, reached, delay: float, limit: float = 300) -> bool:
    """SIGKILL ``proc`` ``delay`` seconds after ``reached()`` first holds (polled every
    10 ms). Kill moments tied to progress land inside the run however loaded the
    machine is; the random delay spreads them. False if the run ended first."""
    deadline = time.monotonic() + limit
    while proc.poll() is None and not reached() and time.monotonic() < deadline:
        time.sleep(0.01)
    return kill_after(proc, delay)


def timed_run(*args) -> float:
    started = time.monotonic()
    proc = run_cli(*args, env=same_threads())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return time.monotonic() - started


def here(capsys, *args) -> None:
    """An uninterrupted run in this process (no start-up to pay): references and reruns.
    Only the runs that are killed need a process of their own."""
    proc = run_main(capsys, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]


def files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def no_temporaries(root: Path) -> None:
    left = [p for p in root.rglob("*") if is_temporary(p.name)]
    assert not left, f"temporary files left: {left}"


# ---------------------------------------------------------------- extraction


@pytest.mark.slow
def test_extraction_killed_at_random_moments(tmp_path, capsys):
    src = tmp_path / "videos"
    for i in range(8):
        write_coded_video(src / f"c{i % 2}" / f"clip{i}{'.avi' if i % 3 == 2 else '.mp4'}", 30 + 3 * i)
    args = ["--image-size", "32", "--workers", "1", "--batch-size", "8", "--no-progress"]
    plans = []
    for seed in SEEDS:
        rng = random.Random(seed)
        written = rng.randrange(0, 6)  # kill after this many of the 8 cache files exist, plus a random delay
        plans.append((seed, tmp_path / f"run{seed}", written, rng.uniform(0.0, 0.5)))

    def killed_run(plan) -> bool:
        _, out, written, moment = plan

        def reached() -> bool:
            return len(list(out.rglob("*.safetensors"))) >= written

        return kill_when(start("extract", src, out, *args), reached, moment)

    # The killed runs write to their own folders: side by side (each killed at its own moment
    # of its own progress), while the reference runs here.
    with ThreadPoolExecutor(max_workers=len(plans)) as pool:
        outcomes = pool.map(killed_run, plans)
        reference = tmp_path / "reference"
        here(capsys, "extract", src, reference, *args)
        outcomes = list(outcomes)
    ref_files = files(reference)
    assert len(ref_files) == 8
    kills = 0
    for (seed, out, written, moment), killed in zip(plans, outcomes):
        kills += killed
        # Whatever a killed run left where a later run looks is complete.
        left = 0
        for name, path in files(out).items() if out.exists() else []:
            if not is_temporary(path.name):
                assert name in ref_files, f"seed {seed}: unexpected {name}"
                load_features(path)
                left += 1
        rerun = run_main(capsys, "extract", src, out, *args)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert f"skipped {left} up to date" in rerun.stdout, rerun.stdout  # and none of them extracted again
        assert killed or left == 8
        got = files(out)
        assert sorted(got) == sorted(ref_files), f"seed {seed} (killed {moment:.2f} s after {written} files)"
        for name, path in ref_files.items():
            a, b = load_features(path), load_features(got[name])
            assert torch.equal(a.frame_indices, b.frame_indices) and torch.equal(a.features, b.features), name
    assert kills >= 2, "the kills should land while the runs are still going"


# ---------------------------------------------------------------- training


def train_args(data: Path, work: Path, epochs: int = 4) -> list:
    return ["train", "--data", data, "--work-dir", work, "--set", f"train.epochs={epochs}", *FAST_TRAIN]


def final_outputs(work: Path) -> dict:
    """What a finished run leaves: weights of both checkpoints, the metrics (minus timings),
    the cached features."""
    history = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    for h in history:
        h.pop("seconds")
    out = {"metrics": history}
    for name in ("best.pt", "last.pt"):
        ckpt = load_checkpoint(work / name)
        out[name] = (ckpt["model_state"], ckpt["train_state"]["epoch"], ckpt["metrics"].get("val_acc"))
    out["features"] = {n: load_features(p).features for n, p in files(work / "features").items()}
    return out


def assert_same_run(a: dict, b: dict, what: str) -> None:
    assert a["metrics"] == b["metrics"], what
    for name in ("best.pt", "last.pt"):
        (sa, ea, va), (sb, eb, vb) = a[name], b[name]
        assert (ea, va) == (eb, vb), (what, name)
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), (what, name)
    assert a["features"].keys() == b["features"].keys(), what
    assert all(torch.equal(a["features"][k], b["features"][k]) for k in a["features"]), what


def assert_consistent_after_kill(work: Path) -> None:
    """Everything a resumed run would trust is complete: checkpoints load, each metrics
    line parses, each cached feature file loads."""
    for name in ("best.pt", "last.pt"):
        if (work / name).exists():
            load_checkpoint(work / name)
    if (work / "metrics.jsonl").exists():
        for line in (work / "metrics.jsonl").read_text().splitlines():
            json.loads(line)
    if (work / "features").exists():
        for path in files(work / "features").values():
            if not is_temporary(path.name) and path.suffix == ".safetensors":
                load_features(path)


@pytest.fixture(scope="module")
def train_data(tmp_path_factory) -> Path:
    return write_two_class_folder(tmp_path_factory.mktemp("data") / "videos")


@pytest.fixture(scope="module")
def train_reference(train_data, tmp_path_factory) -> dict:
    """The final outputs of an uninterrupted 4-epoch run, in this process."""
    from videoact.cli import main

    reference = tmp_path_factory.mktemp("reference") / "work"
    assert main([str(a) for a in train_args(train_data, reference)]) == 0
    expected = final_outputs(reference)
    assert [h["epoch"] for h in expected["metrics"]] == [0, 1, 2, 3]
    return expected


@pytest.mark.slow
def test_training_killed_at_random_moments(train_data, train_reference, tmp_path, capsys):
    expected = train_reference
    plans = []
    for seed in SEEDS:
        rng = random.Random(100 + seed)
        # during feature extraction (after k cache files) or during epoch e (after e lines of metrics)
        phase, count = rng.choice([("features", rng.randrange(0, 6)), ("epochs", rng.randrange(0, 3))])
        plans.append((seed, tmp_path / f"run{seed}", phase, count, rng.uniform(0.0, 0.5)))

    def killed_run(plan) -> bool:
        _, work, phase, count, moment = plan

        def reached() -> bool:
            if phase == "features":
                return len(list((work / "features").rglob("*.safetensors"))) >= count
            log = work / "metrics.jsonl"
            return log.exists() and len(log.read_text().splitlines()) >= count

        return kill_when(start(*train_args(train_data, work)), reached, moment)

    # The killed runs have their own work folders: side by side, each killed at its own moment.
    with ThreadPoolExecutor(max_workers=len(plans)) as pool:
        outcomes = list(pool.map(killed_run, plans))
    kills = 0
    for (seed, work, phase, count, moment), killed in zip(plans, outcomes):
        kills += killed
        assert_consistent_after_kill(work)
        here(capsys, *train_args(train_data, work))
        assert_same_run(final_outputs(work), expected, f"seed {seed}, killed {moment:.2f} s after {count} {phase}")
        no_temporaries(work)
    assert kills >= 2, "the kills should land while the runs are still going"


def test_a_crash_between_checkpoint_and_log_loses_no_epoch(train_data, train_reference, tmp_path, capsys):
    """A real write failure (metrics.jsonl is a directory) stops the run right after
    epoch 1's checkpoint; the rerun still logs every epoch once."""
    work = tmp_path / "work"
    (work / "metrics.jsonl").mkdir(parents=True)
    crashed = run_main(capsys, *train_args(train_data, work))
    assert crashed.returncode != 0 and "metrics.jsonl" in crashed.stderr
    # epoch 1's best.pt was written, then the log failed (before last.pt, by design)
    assert load_checkpoint(work / "best.pt")["train_state"]["epoch"] == 0 and not (work / "last.pt").exists()
    (work / "metrics.jsonl").rmdir()
    here(capsys, *train_args(train_data, work))
    assert_same_run(final_outputs(work), train_reference, "after a crash at the metrics write")


def test_what_killed_runs_left_is_removed_by_the_next_run(train_data, tmp_path, capsys):
    """``kill -9`` can land between a temporary's creation and its rename: training's
    ``.metrics.jsonl.tmp-<pid>-<n>`` and an annotated copy's ``.ann.tmp-<pid>-<n>.mp4``
    stayed for good (extract and decode-frames already removed theirs). A live process's
    temporary is another run's work in progress: kept."""
    from videoact.overlay import AtomicVideoWriter

    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    dead = finished.pid
    work = tmp_path / "work"
    work.mkdir()
    # and one named with this process's pid: in a container a killed run often had it
    left = [work / f".metrics.jsonl.tmp-{dead}-3", work / f".last.pt.tmp-{dead}-0",
            work / f".config.yaml.tmp-{os.getpid()}-9"]
    live = work / f".best.pt.tmp-{os.getppid()}-0"  # the process that started this suite: alive
    for path in [*left, live]:
        path.write_bytes(b"half-written")
    here(capsys, *train_args(train_data, work))
    assert [p.exists() for p in left] == [False, False, False] and live.exists()

    left_copy = tmp_path / f".ann.tmp-{dead}-0.mp4"
    left_copy.write_bytes(b"half-written")
    writer = AtomicVideoWriter(tmp_path / "ann.mp4", 25.0)
    writer.close(commit=False)
    assert not left_copy.exists()


# ---------------------------------------------------------------- long-video inference


@pytest.mark.slow
def test_timeline_inference_killed_at_random_moments(tmp_path, capsys):
    checkpoint = write_tiny_checkpoint(tmp_path / "tiny.pt")
    video = write_coded_video(tmp_path / "long.mp4", 600, fps=25.0)  # 24 s
    args = ["infer", checkpoint, video, "--timeline", "--device", "cpu"]
    took = timed_run(*args, "--out", tmp_path / "reference.json", "--annotate", tmp_path / "reference.mp4")
    expected = json.loads((tmp_path / "reference.json").read_text())
    assert len(expected) == 1 and len(expected[0]["windows"]) > 10  # a list, one object per video
    kills = 0
    for seed in SEEDS:
        out, annotated = tmp_path / f"run{seed}.json", tmp_path / f"run{seed}.mp4"
        moment = random.Random(200 + seed).uniform(0.1, 0.6) * took  # no progress to watch: a share of the time
        kills += kill_after(start(*args, "--out", out, "--annotate", annotated), moment)
        if out.exists():  # never a torn file where the user looks
            assert json.loads(out.read_text()) == expected
        if annotated.exists():
            from videoact.decode import open_video

            with open_video(annotated) as reader:
                assert len(reader) == 600
        here(capsys, *args, "--out", out, "--annotate", annotated)
        assert json.loads(out.read_text()) == expected
        no_temporaries(tmp_path)
    assert kills >= 1, "the kills should land while the runs are still going"


# ---------------------------------------------------------------- a full disk


def test_full_disk_during_extraction_and_frame_decoding(tmp_path, capsys):
    src = tmp_path / "videos"
    for i in range(5):
        write_coded_video(src / f"c{i}.mp4", 60)
    with small_filesystem(tmp_path / "small", "400k") as disk:
        proc = run_main(capsys, "extract", src, disk / "features", "--image-size", "32", "--workers", "1",
                        "--no-progress")
        assert proc.returncode == 1, proc.stderr[-2000:]
        written = sorted(p.name for p in (disk / "features").glob("*.safetensors"))
        assert 1 <= len(written) < 5  # 150 kB each: some fit
        for name in written:
            assert load_features(disk / "features" / name).features.shape == (60, 1280)
        failures = [json.loads(line) for line in (disk / "features" / "failures.jsonl").read_text().splitlines()]
        assert len(failures) == 5 - len(written)
        for f in failures:
            assert "No space left on device" in f["reason"] and f["path"] in f["reason"]
            assert f["reason"].count(".safetensors") == 1, f["reason"]  # the cache file named once
        no_temporaries(disk)

    with small_filesystem(tmp_path / "small2", "300k") as disk:
        proc = run_main(capsys, "decode-frames", src, disk / "frames", "--workers", "1", "--quiet")
        assert proc.returncode == 1, proc.stderr[-2000:]
        done = sorted(p.name for p in (disk / "frames").iterdir() if p.is_dir())
        assert 1 <= len(done) < 5
        for name in done:  # complete folders are intact and trusted
            assert is_complete(disk / "frames" / name, src / f"{name}.mp4")
        assert "cannot write JPEG" in proc.stderr or "No space left" in proc.stderr
        no_temporaries(disk)  # half-written frame folders were removed


def test_full_disk_while_saving_checkpoints(train_data, tmp_path, capsys):
    cache = tmp_path / "cache"
    with small_filesystem(tmp_path / "small", "600k") as disk:  # one pair of 227 kB checkpoints fits
        proc = run_main(capsys, *train_args(train_data, disk / "work"), "--set", f"feature.cache_dir={cache}")
        assert proc.returncode == 2, proc.stderr[-2000:]
        message = proc.stderr.strip().splitlines()[-1]
        assert message.startswith(f"videoact train: {disk / 'work'}/")
        assert "could not write the checkpoint" in message and "bytes free on that disk (full?)" in message
        assert message.count(str(disk / "work")) == 1, message  # the file named once
        for name in ("best.pt", "last.pt"):
            assert load_checkpoint(disk / "work" / name)["train_state"]["epoch"] == 0  # intact
        no_temporaries(disk)


def test_full_disk_for_reports(tmp_path, capsys):
    checkpoint = write_tiny_checkpoint(tmp_path / "tiny.pt")
    video = write_coded_video(tmp_path / "v" / "clip.mp4", 12)
    with small_filesystem(tmp_path / "small", "8k") as disk:
        filler = disk / "filler"
        try:
            with open(filler, "wb") as f:
                f.write(b"\0" * 64 * 1024)
        except OSError:
            pass  # the disk is now full
        check = run_main(capsys, "check", tmp_path / "v", "--json", disk / "report.json", "--workers", "0", "--quiet")
        assert check.returncode == 2, check.stderr[-2000:]
        assert f"{disk / 'report.json'}" in check.stderr and "No space left on device" in check.stderr
        infer = run_main(capsys, "infer", checkpoint, video, "--device", "cpu", "--out", disk / "results.json")
        assert infer.returncode == 1, infer.stderr[-2000:]
        assert f"{disk / 'results.json'}" in infer.stderr and "No space left on device" in infer.stderr
        assert "Traceback" not in check.stderr + infer.stderr
        # a write's own error names the file (was "[Errno 28] No space left on device" alone,
        # as `videoact train` said a full work directory)
        from videoact.atomic import atomic_write_text

        with pytest.raises(OSError, match=f"No space left on device: '{disk / 'config.yaml'}'"):
            atomic_write_text(disk / "config.yaml", "x" * 65536)
        no_temporaries(disk)
