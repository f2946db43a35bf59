"""Untrusted inputs: checkpoints that would run code, bad configs, bad annotation lists,
stream URLs that never answer. Each through the real command line where it applies."""
from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from faults import run_main, write_tiny_checkpoint

from videoact.checkpoint import load_checkpoint
from videoact.testing import write_coded_video


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


class Evil:
    """Unpickling this runs a shell command (it creates a marker file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused_by_every_command(tmp_path, tiny_checkpoint, capsys):
    marker = tmp_path / "code_ran"
    good = load_checkpoint(tiny_checkpoint)
    evil = tmp_path / "evil.pt"
    torch.save({**good, "metrics": Evil(marker)}, evil)
    # it really would run: plain pickle.load in a child process creates the marker
    probe = tmp_path / "probe.pkl"
    probe.write_bytes(pickle.dumps(Evil(tmp_path / "probe_ran")))
    subprocess.run([sys.executable, "-c", f"import pickle; pickle.load(open({str(probe)!r}, 'rb'))"], check=True)
    assert (tmp_path / "probe_ran").exists()

    video = write_coded_video(tmp_path / "v" / "a" / "clip.mp4", 10)
    for args in (["infer", evil, video], ["test", evil, tmp_path / "v", "--no-progress"],
                 ["infer", evil, video, "--timeline"], ["stream", evil, "--source", video, "--no-window"]):
        proc = run_main(capsys, *args, "--device", "cpu")  # in this process: the code would run here
        assert proc.returncode == 2, (args[0], proc.stderr[-2000:])
        assert f"{evil}: refused to load" in proc.stderr and "could run arbitrary code" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not marker.exists()


def test_train_refuses_bad_configs_with_the_file_and_key(tmp_path, capsys):
    data = tmp_path / "data"
    write_coded_video(data / "a" / "x.mp4", 8)
    cases = {
        "work_dir: w\ntrain:\n  lrr: 0.1\n": "unknown key 'train.lrr'; did you mean 'train.lr'?",
        "train:\n  epochs: ten\n": "train.epochs: expected int, got 'ten'",
        "train:\n  lr: -1.0\n": "train.lr: must be > 0.0, got -1.0",
        "model:\n  dropout: 1.5\n": "model.dropout: must be < 1.0, got 1.5",
        "train: [1, 2]\n": "train: expected a mapping of keys",
        "data:\n  train: {a: [\n": "invalid YAML",
    }
    configs = [tmp_path / f"bad{i}.yaml" for i in range(len(cases))]
    for cfg, text in zip(configs, cases):
        cfg.write_text(text)
    # in this process: each is refused before any work
    procs = [run_main(capsys, "train", cfg, "--data", data, "--work-dir", tmp_path / "w") for cfg in configs]
    for cfg, proc, (text, message) in zip(configs, procs, cases.items()):
        assert proc.returncode == 2, (text, proc.stderr)
        assert f"videoact train: {cfg}: " in proc.stderr and message in proc.stderr, (text, proc.stderr)
        assert "Traceback" not in proc.stderr
    override = run_main(capsys, "train", "--data", data, "--set", "train.nonfinite=ignore", "--work-dir", tmp_path / "w")
    assert override.returncode == 2
    assert "override 'train.nonfinite=ignore': train.nonfinite: must be one of ['stop', 'skip']" in override.stderr
    assert not (tmp_path / "w" / "last.pt").exists()


def test_annotation_problems_are_reported_and_escaping_paths_refused(tmp_path, capsys):
    root = tmp_path / "data"
    for name in ("a/1.mp4", "a/2.mp4", "b/3.mp4"):
        write_coded_video(root / name, 6)
    secret = write_coded_video(tmp_path / "private" / "secret.mp4", 6)  # exists, but outside the root
    listing = root / "train.txt"
    listing.write_text("a/1.mp4 walk\n"
                       "a/2.mp4 walk\n"
                       "a/1.mp4 run\n"           # duplicate entry, different label
                       "b/missing.mp4 run\n"     # missing file
                       "../private/secret.mp4 run\n"  # escapes the dataset root
                       f"{secret} run\n"         # absolute path outside the root
                       "b/3.mp4\n"               # no label: extract needs none
                       "b/3.mp4 run\n")          # then a duplicate
    proc = run_main(capsys, "extract", listing, tmp_path / "f", "--image-size", "32", "--workers", "1", "--no-progress")
    assert proc.returncode == 1, proc.stderr  # the missing video failed, two entries were left out
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("videoact extract: warning: ")]
    expected = [f"{listing}:3: duplicate:", f"{listing}:5: outside_root:", f"{listing}:6: outside_root:",
                f"{listing}:8: duplicate:"]
    assert [next((w for w in warnings if w.startswith("videoact extract: warning: " + e)), None) is not None
            for e in expected] \
        == [True] * 4, warnings
    assert f"  {root / 'b' / 'missing.mp4'}: file not found" in proc.stderr  # with the failures
    assert "left out: 2 list entries with problems" in proc.stderr
    assert "refused" in "".join(w for w in warnings if "outside_root" in w)
    written = sorted(p.relative_to(tmp_path / "f").as_posix() for p in (tmp_path / "f").rglob("*.safetensors"))
    assert written == ["a/1.mp4.safetensors", "a/2.mp4.safetensors", "b/3.mp4.safetensors"]
    # Said again by a second run in the same process, also under -W ignore (Python's default
    # filter had shown each message once per process; "ignore" dropped them all).
    import warnings as python_warnings

    with python_warnings.catch_warnings():
        python_warnings.simplefilter("ignore")
        again = run_main(capsys, "extract", listing, tmp_path / "f", "--image-size", "32", "--workers", "1",
                         "--no-progress")
    assert [line for line in again.stderr.splitlines() if line.startswith("videoact extract: warning: ")] == warnings

    # classes fixed by a file: an unknown label is reported too
    (root / "classes.txt").write_text("walk\nrun\n")
    from videoact.datasets import read_annotations

    listing.write_text("a/1.mp4 walk\na/2.mp4 swim\n")
    samples, _, problems = read_annotations(listing, classes=root / "classes.txt")
    assert [s.rel for s in samples] == ["a/1.mp4"]
    assert [str(p) for p in problems] == [f"{listing}:2: unknown_label: label 'swim' is not one of the classes"]


def test_a_stream_url_that_never_answers_times_out(tiny_checkpoint, capsys):
    from videoact.stream import SourceError, open_source

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_say_nothing() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_say_nothing, daemon=True)
    thread.start()
    try:
        for url in (f"http://127.0.0.1:{port}/live.mjpg", f"rtsp://127.0.0.1:{port}/live"):
            held.clear()  # each URL's own connection
            source = open_source(url, open_timeout=2, reconnect=False)
            started = time.monotonic()
            with pytest.raises(SourceError) as info:
                source.open()
            assert time.monotonic() - started < 2 + 2 + 5  # the limit, the guard's margin, slack
            assert str(info.value).startswith(url + ": ")
            assert held, "the server really accepted the connection"
        started = time.monotonic()
        proc = run_main(capsys, "stream", tiny_checkpoint, "--source", f"http://127.0.0.1:{port}/live",
                        "--open-timeout", "2", "--no-window", "--device", "cpu")
        assert proc.returncode == 2 and f"videoact stream: http://127.0.0.1:{port}/live: " in proc.stderr
        assert time.monotonic() - started < 2 + 2 + 5  # --open-timeout 2 took effect (the default is longer)
    finally:
        stop.set()
        thread.join(5)
        for c in held:
            c.close()
        server.close()
