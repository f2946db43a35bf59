"""Real faulty inputs for the reliability tests: awkward files, a decoder that does not
return, unreadable permissions for root, a small real filesystem that fills up."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from videoact.testing import coded_frame, write_coded_video

SHARED = Path(__file__).resolve().parents[2] / "shared" / "testvideos"

# `python -m videoact` with Ctrl-C as a terminal gives it, also when this suite runs with
# SIGINT ignored (a background job of a non-interactive shell), which children inherit and
# Python then leaves ignored.
VIDEOACT_WITH_CTRL_C = [sys.executable, "-c", "import runpy, signal; signal.signal(signal.SIGINT, "
                        "signal.default_int_handler); runpy.run_module('videoact', run_name='__main__', alter_sys=True)"]

# What `videoact check` finds in the third-party corpus (status, frames) with the decoders
# here; av1_video.mkv depends on whether decord has an AV1 decoder (decord2 3.4 does).
SHARED_EXPECTED = {
    "again.mkv": ("readable", 77),
    "book.mkv": ("readable", 109),
    "carphone_pristine.mp4": ("readable", 120),
    "corrupted.mp4": ("partial", None),  # the container claims 50; the count: see test_health
    "demo.mp4": ("readable", 280),
    "eat.mkv": ("readable", 47),
    "h264_10bits.mp4": ("readable", 30),
    "h265_video.mp4": ("fallback", 10),  # decord's seeks land a frame late here; OpenCV reads it
    "nasa_13013.mp4": ("readable", 390),  # decord reads the larger of two video streams
    "no.mkv": ("readable", 66),
    "no_duration.webm": ("fallback", 74),  # decord cannot measure it; OpenCV reads it
    "test.avi": ("readable", 164),
    "unordered.mov": ("readable", 4),
    "var_fps_video.mp4": ("readable", 300),
    "video_90.mov": ("readable", 3),
    "yes.mkv": ("readable", 65),
}


def shared_videos() -> list[Path]:
    return sorted(p for p in SHARED.iterdir() if p.suffix != ".md") if SHARED.is_dir() else []


def write_gif(path: Path, num_frames: int = 12) -> Path:
    """An animated GIF whose frame ``i`` encodes ``i`` (written with PIL)."""
    from PIL import Image

    frames = [Image.fromarray(coded_frame(i)) for i in range(num_frames)]
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=40, loop=0)
    return path


def write_hanging_avi(path: Path, gigabytes: int = 200) -> Path:
    """A valid 20-frame AVI followed by ``gigabytes`` of zeros (a sparse file: no disk used).

    Measured here: decord's open and OpenCV's frame scan both walk the whole tail at
    about 11 s per GB, so opening this file does not return for about half an hour: a
    decoder that, for any practical time limit, never returns.
    """
    tmp = path.with_name(".base-" + path.name)
    data = write_coded_video(tmp, 20).read_bytes()
    tmp.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
        f.truncate(len(data) + gigabytes * 2**30)
    return path


def write_awkward_folder(root: Path) -> dict[str, tuple[str, int | None]]:
    """Generated awkward files under ``root``: name -> (expected check status, frames)."""
    root.mkdir(parents=True, exist_ok=True)
    expected: dict[str, tuple[str, int | None]] = {}
    write_coded_video(root / "good.mp4", 24)
    expected["good.mp4"] = ("readable", 24)
    write_coded_video(root / "good.avi", 16)
    expected["good.avi"] = ("readable", 16)
    for ext in (".mp4", ".avi", ".mkv"):
        write_coded_video(root / f"one_frame{ext}", 1)
        expected[f"one_frame{ext}"] = ("readable", 1)
    write_coded_video(root / "wide_4000.mp4", 3, height=2250, width=4000)
    expected["wide_4000.mp4"] = ("readable", 3)
    write_gif(root / "animated.gif", 12)
    expected["animated.gif"] = ("readable", 12)
    (root / "empty.mp4").write_bytes(b"")
    expected["empty.mp4"] = ("unreadable", None)
    (root / "notes.mkv").write_text("these are meeting notes, not a video\n" * 50)
    expected["notes.mkv"] = ("unreadable", None)
    (root / "random.mov").write_bytes(np.random.default_rng(0).integers(0, 256, 40_000, dtype=np.uint8).tobytes())
    expected["random.mov"] = ("unreadable", None)
    os.mkfifo(root / "pipe.mp4")  # opening a FIFO for reading blocks until a writer comes
    expected["pipe.mp4"] = ("unreadable", None)
    os.symlink(root / "gone" / "missing.mp4", root / "dangling.mp4")
    expected["dangling.mp4"] = ("unreadable", None)
    # Damaged in the middle: decord fails reading, OpenCV decodes the first 22 frames.
    data = bytearray(write_coded_video(root / ".full.mp4", 60).read_bytes())
    (root / ".full.mp4").unlink()
    third = len(data) // 3
    data[third:third + 2000] = bytes(2000)
    (root / "damaged.mp4").write_bytes(bytes(data))
    expected["damaged.mp4"] = ("partial", 22)
    return expected


# ------------------------------------------------------------------ unreadable permissions


def unreadable_prefix() -> tuple[list[str] | None, str]:
    """A command prefix under which a mode-000 file really cannot be read.

    Not root: no prefix needed. Root ignores file modes (CAP_DAC_OVERRIDE), so drop
    that capability with ``setpriv`` (the process stays root, so the venv stays
    readable). Returns ``(None, why)`` when neither works here.
    """
    if os.geteuid() != 0:
        return [], "not root"
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None, "running as root and setpriv is not installed: mode 000 does not stop root"
    prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]
    with tempfile.TemporaryDirectory() as tmp:
        secret = Path(tmp) / "secret"
        secret.write_text("x")
        secret.chmod(0)
        proc = subprocess.run([*prefix, sys.executable, "-c", f"open({str(secret)!r}).read()"],
                              capture_output=True, text=True)
        if proc.returncode == 0 or "PermissionError" not in proc.stderr:
            return None, "dropping CAP_DAC_OVERRIDE with setpriv did not stop root from reading"
    return prefix, "root without CAP_DAC_OVERRIDE"


# ------------------------------------------------------------------ a small filesystem


@contextlib.contextmanager
def small_filesystem(path: Path, size: str = "2m") -> Iterator[Path]:
    """Mount a real tmpfs of ``size`` at ``path`` (root only); skips the test otherwise."""
    import pytest

    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({proc.stderr.strip() or 'not root'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def run_cli(*args: str, timeout: float = 300, prefix: list[str] | None = None,
            **kw) -> subprocess.CompletedProcess:
    """``python -m videoact ARGS`` in a subprocess; a hang past ``timeout`` fails the test."""
    import pytest

    cmd = [*(prefix or []), sys.executable, "-m", "videoact", *map(str, args)]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`videoact {' '.join(map(str, args))}` hung for more than {timeout:g} s "
                    f"(stderr: {(exc.stderr or b'')[-1500:]!r})")


def run_main(capsys, *args: Any) -> subprocess.CompletedProcess:
    """``videoact ARGS`` in this process (no interpreter and torch start-up: about 2.5 s a
    run saved), for checks that need no process of their own: exit status, stdout, stderr."""
    from videoact.cli import main

    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out = capsys.readouterr()
    return subprocess.CompletedProcess(["videoact", *map(str, args)], code, out.out, out.err)


def run_main_into_closed_pipe(*args: Any, buffering: int = 1) -> int:
    """``videoact ARGS`` in this process with stdout a pipe whose reader has gone (as
    ``videoact ... | head`` once head has exited): every write fails with BrokenPipeError.
    Line-buffered, as under PYTHONUNBUFFERED=1; block-buffered, the same happens as soon as
    the output passes the 8 kB buffer (``buffering=-1``: at the end). Returns the exit status."""
    import contextlib
    import os
    import sys

    from videoact.cli import main

    read_end, write_end = os.pipe()
    os.close(read_end)
    saved, sys.stdout = sys.stdout, os.fdopen(write_end, "w", buffering=buffering)
    try:
        return main([str(a) for a in args])
    finally:
        broken, sys.stdout = sys.stdout, saved
        with contextlib.suppress(OSError):
            broken.close()


# ------------------------------------------------------------------ a model for the commands

# Small and fast training settings for `videoact train` in tests.
FAST_TRAIN = ["--set", "feature.image_size=32", "--set", "feature.resize=squash", "--set", "feature.num_segments=4",
              "--set", "model.hidden=8", "--set", "model.proj_dim=8", "--set", "train.batch_size=4",
              "--set", "data.num_workers=0", "--set", "train.progress=false", "--set", "data.val_fraction=0.25"]


def write_tiny_checkpoint(path: Path) -> Path:
    """A real (untrained) checkpoint: EfficientNet-Lite0 at 32 px, 4 segments, a small BiLSTM."""
    import torch

    from videoact.backbones import create_backbone
    from videoact.checkpoint import save_checkpoint
    from videoact.temporal import create_temporal_model

    torch.manual_seed(0)
    backbone = create_backbone("efficientnet_lite0", pretrained=True)
    feature = {"backbone": backbone.name, "weights": None, "weights_id": backbone.weights_id,
               "pooling": backbone.pooling, "image_size": 32, "mean": list(backbone.mean), "std": list(backbone.std),
               "feature_dim": backbone.feature_dim, "sampling": {"mode": "uniform", "num_segments": 4},
               "num_segments": 4}
    temporal = create_temporal_model("bilstm", backbone.feature_dim, 2, hidden=8, proj_dim=8)
    return save_checkpoint(path, model_state=temporal.state_dict(), model_config=temporal.config,
                           classes=["a", "b"], feature=feature)


def write_two_class_folder(root: Path) -> Path:
    """``root/a`` and ``root/b``, four index-coded videos each (class b is longer)."""
    for c, extra in (("a", 0), ("b", 10)):
        for i in range(4):
            write_coded_video(root / c / f"v{i}.mp4", 20 + 5 * i + extra)
    return root


# ---------------------------------------------------------------- processes (Linux /proc)


def parent_pids() -> dict[int, int]:
    """pid -> parent pid of every process here (Linux /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):  # gone meanwhile
                continue
    return parents


def child_pids(pid: int) -> list[int]:
    return [child for child, parent in parent_pids().items() if parent == pid]


def open_files(pid: int) -> list[str]:
    """The files process ``pid`` (its threads included) has open; [] when it is gone."""
    try:
        return [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return []


def descendants_with_open(path: Path) -> list[int]:
    """The pids of this process's descendants that have ``path`` open."""
    parents = parent_pids()
    found = []
    for pid in parents:
        up = parents.get(pid)
        while up not in (None, 0, 1, os.getpid()):
            up = parents.get(up)
        if up == os.getpid() and str(path) in open_files(pid):
            found.append(pid)
    return found


def sigint_after_hearing(queue: Any) -> None:
    """A spawned worker's SIGINT handling once it calls ``hear_ctrl_c``, put on ``queue``."""
    import signal

    from videoact.spawn import hear_ctrl_c

    hear_ctrl_c()
    queue.put(str(signal.getsignal(signal.SIGINT)))
