"""Training, resume, evaluation and inference end to end on a tiny synthetic benchmark,
through the real command line, the real offline backbone and real encoded videos."""
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from videoact.checkpoint import load_checkpoint
from videoact.synthetic import make_synthetic

# Small and fast: 64 px input, 8 frames per clip, a few epochs.
FAST = ["--set", "feature.image_size=64", "--set", "feature.resize=squash", "--set", "feature.num_segments=8",
        "--set", "model.hidden=32", "--set", "model.proj_dim=32", "--set", "train.batch_size=8",
        "--set", "data.num_workers=0", "--set", "train.progress=false"]


def summary_lines(caplog) -> str:
    """What ``videoact.train`` logged since the last call (the lines the command prints)."""
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "videoact.train")
    caplog.clear()
    return text


def videoact(*args, check=True, **kw):
    proc = subprocess.run([sys.executable, "-m", "videoact", *map(str, args)], capture_output=True, text=True, **kw)
    if check:
        assert proc.returncode == 0, f"videoact {args[0]} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def here(capsys, *args, check=True):
    """``videoact ARGS`` in this process (no interpreter and torch start-up a run)."""
    from faults import run_main

    proc = run_main(capsys, *args)
    if check:
        assert proc.returncode == 0, f"videoact {args[0]} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def train_in_process(bench, work_dir, cache_dir, *settings: str) -> dict:
    """``videoact.training.train`` on the bench's train/val split with the FAST settings."""
    from videoact.config import load_config
    from videoact.training import train

    fast = [item for item in FAST if item != "--set"]
    return train(load_config(None, [*fast, f"data.train={bench / 'train'}", f"data.val={bench / 'val'}",
                                    f"work_dir={work_dir}", f"feature.cache_dir={cache_dir}", *settings]))


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic(root, train_per_class=3, val_per_class=1, test_per_class=1, workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def trained(bench, tmp_path_factory):
    import contextlib
    import io

    from videoact.cli import main

    work = tmp_path_factory.mktemp("run")
    args = ["train", "--data", bench / "train", "--val", bench / "val", "--test", bench / "test",
            "--work-dir", work, "--set", "train.epochs=4", "--set", f"feature.cache_dir={work / 'cache'}", *FAST]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):  # in this process: no start-up to pay
        code = main([str(a) for a in args])
    proc = subprocess.CompletedProcess(["videoact", *map(str, args)], code, out.getvalue(), err.getvalue())
    assert code == 0, f"videoact train failed:\n{proc.stdout}\n{proc.stderr}"
    return work, proc


def test_cli_train_writes_the_work_dir(trained):
    work, proc = trained
    for name in ("config.yaml", "metrics.jsonl", "last.pt", "best.pt"):
        assert (work / name).is_file(), name
    history = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    assert all(0.0 <= h["val_acc"] <= 1.0 and h["train_loss"] > 0 for h in history)
    assert "test: top-1" in proc.stdout and f"(all metrics: {work / 'test.json'})" in proc.stdout
    ckpt = load_checkpoint(work / "best.pt")
    tested = json.loads((work / "test.json").read_text())  # what was printed, kept with its checkpoint
    assert f"top-1 {tested['top1'] * 100:.2f}%" in proc.stdout and tested["checkpoint"] == str(work / "best.pt")
    assert tested["epoch"] == ckpt["train_state"]["epoch"] and len(tested["confusion_matrix"]) == 10
    assert len(ckpt["classes"]) == 10
    # the whole config it was trained with, as config.yaml has it (which a rerun rewrites)
    from videoact.config import load_config

    assert ckpt["config"] == load_config(work / "config.yaml").to_dict()
    feature = ckpt["feature"]
    assert feature["backbone"] == "efficientnet_lite0" and feature["image_size"] == 64
    assert feature["resize"] == "squash" and feature["num_segments"] == 8
    assert "weights_id" in feature and len(feature["mean"]) == 3


def test_confusion_png_draws_errors_red_and_the_diagonal_green(tmp_path):
    """Its errors came out blue: (255, s, s) is blue in OpenCV's BGR."""
    import cv2

    from videoact.evaluation import confusion_png

    img = cv2.imread(str(confusion_png([[3, 1], [0, 4]], ["a", "b"], tmp_path / "cm.png")))  # BGR
    cell, left, top = 64, 12 + 8, 40 + 12 + 8  # two classes of one letter
    assert tuple(img[top + 2, left + cell + 2]) == (191, 191, 255)  # a named b: 1 of 4, light red
    assert tuple(img[top + 2, left + 2]) == (63, 255, 63)  # a named a: 3 of 4, green
    assert tuple(img[top + cell + 2, left + 2]) == (255, 255, 255)  # b never named a: white


def test_cli_test_writes_metrics_and_confusion_png(trained, bench, tmp_path, capsys):
    work, _ = trained
    out = tmp_path / "metrics.json"
    proc = here(capsys, "test", work / "best.pt", bench / "test", "--out", out, "--no-progress")
    metrics = json.loads(out.read_text())
    for key in ("top1", "top5", "mean_class_acc"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["num_samples"] == 10 and len(metrics["confusion_matrix"]) == 10
    assert sum(map(sum, metrics["confusion_matrix"])) == 10
    png = Path(metrics["confusion_png"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "mean class accuracy" in proc.stdout


def test_cli_test_reports_a_bad_root_or_an_unwritable_out_without_a_traceback(trained, bench, tmp_path, capsys):
    from videoact.cli import main

    work, _ = trained
    listing = tmp_path / "test.txt"
    listing.write_text((bench / "test.txt").read_text())
    assert main(["test", str(work / "best.pt"), str(listing), "--root", str(tmp_path / "nowhere"),
                 "--no-progress", "--device", "cpu"]) == 2
    assert f"videoact test: {tmp_path / 'nowhere'}: dataset root of {listing} not found" in capsys.readouterr().err
    # An output that cannot be written where it is: said before the evaluation (was: after it)
    (tmp_path / "file").write_text("a file, not a folder")
    for option, name in (("--out", "m.json"), ("--confusion", "c.png")):
        assert main(["test", str(work / "best.pt"), str(bench / "test"), option, str(tmp_path / "file" / name),
                     "--no-progress", "--device", "cpu"]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err == (
            f"videoact test: {option} {tmp_path / 'file' / name}: {tmp_path / 'file'}: a file, not a folder "
            f"for the {'metrics' if option == '--out' else 'PNG'}\n")
    # A write that fails late (a full disk): the report still comes, each file named with the reason.
    from faults import small_filesystem

    with small_filesystem(tmp_path / "full", "4k") as full:
        (full / "filler").write_bytes(b"x" * 4096)
        assert main(["test", str(work / "best.pt"), str(bench / "test"), "--out", str(full / "m.json"),
                     "--no-progress", "--device", "cpu"]) == 1
        captured = capsys.readouterr()
        assert "top-1:" in captured.out
        for target in ("m.confusion.png", "m.json"):
            assert f"videoact test: cannot write {full / target}: No space left on device" in captured.err
        assert sorted(p.name for p in full.iterdir()) == ["filler"]  # no half-written file


def test_infer_in_a_fresh_process_matches_training_time_probabilities(trained, bench, tmp_path):
    """The checkpoint alone reproduces the probabilities computed from the feature cache."""
    from torch.utils.data import DataLoader

    from videoact.checkpoint import build_model_from_checkpoint
    from videoact.datasets import FeatureDataset, collate_features, load_dataset
    from videoact.training import predict

    work, _ = trained
    ckpt = load_checkpoint(work / "best.pt")
    samples, _, _ = load_dataset(bench / "test", classes=ckpt["classes"])
    # the cache keys used in training are relative to the common folder of all splits
    import dataclasses

    samples = [dataclasses.replace(s, rel=f"test/{s.rel}") for s in samples]
    model = build_model_from_checkpoint(ckpt)
    dataset = FeatureDataset(samples, work / "cache", num_segments=8, train=False)
    probs, _ = predict(model, DataLoader(dataset, batch_size=4, collate_fn=collate_features), torch.device("cpu"))
    assert not probs.requires_grad  # no autograd graph kept for a whole test set

    out = tmp_path / "pred.json"
    videoact("infer", work / "best.pt", *[s.path for s in samples], "--top-k", "10", "--out", out)
    rows = json.loads(out.read_text())
    assert [Path(r["source"]).name for r in rows] == [s.path.name for s in samples]
    for row, expected in zip(rows, probs):
        got = torch.zeros(10)
        for t in row["top"]:
            got[ckpt["classes"].index(t["label"])] = t["prob"]
        torch.testing.assert_close(got, expected, atol=2e-3, rtol=0)


def test_killed_training_resumes_to_the_same_run(bench, tmp_path):
    common = ["--data", bench / "train", "--val", bench / "val", "--set", "train.epochs=6",
              "--set", f"feature.cache_dir={tmp_path / 'cache'}", *FAST]
    videoact("train", "--work-dir", tmp_path / "reference", *common)
    reference = [json.loads(l) for l in (tmp_path / "reference" / "metrics.jsonl").read_text().splitlines()]

    # DataLoader workers here (persistent, so each process starts them once): the validation
    # loader drew its workers' seed from the global RNG, dropout's, once per process, so the
    # resumed run (and any run with workers) drew other dropout masks from its third epoch on.
    common += ["--set", "data.num_workers=1"]
    work = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "videoact", "train", "--work-dir", str(work), *map(str, common)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (work / "last.pt").exists():
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    epochs_done = load_checkpoint(work / "last.pt")["train_state"]["epoch"] + 1
    assert epochs_done < 6, "the kill should land before the end"

    resumed = videoact("train", "--work-dir", work, *common)
    assert f"resuming from {work / 'last.pt'}" in resumed.stdout
    history = [json.loads(l) for l in (work / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == list(range(6))
    for a, b in zip(history, reference):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
    assert not list(work.glob(".*.tmp-*")), "no temporary files left"


def test_resuming_with_another_batch_size_goes_on_along_the_schedule(bench, trained, tmp_path, monkeypatch, caplog):
    """The warm-up + cosine schedule counts steps: resumed with another train.batch_size (other
    steps per epoch) it went on from the old step count, so the learning rate rose again and
    the cosine never finished. It goes on from the epoch's start in the new count."""
    import videoact.training as training

    caplog.set_level(logging.INFO, logger="videoact.train")
    cache = trained[0] / "cache"
    reference = train_in_process(bench, tmp_path / "reference", cache, "train.epochs=4", "train.batch_size=4")
    save = training.save_checkpoint

    def killed_after_epoch_2(path, **kw):  # the run ends right after last.pt of its second epoch
        save(path, **kw)
        if Path(path).name == "last.pt" and kw["train_state"]["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "save_checkpoint", killed_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_in_process(bench, tmp_path / "run", cache, "train.epochs=4", "train.batch_size=8")
    monkeypatch.undo()
    resumed = train_in_process(bench, tmp_path / "run", cache, "train.epochs=4", "train.batch_size=4")
    expected = [h["lr"] for h in reference["history"]]
    assert [h["lr"] for h in resumed["history"]][2:] == pytest.approx(expected[2:], rel=1e-6)
    assert expected == sorted(expected, reverse=True) and expected[-1] < 0.1 * expected[0]  # the cosine's end
    # the same place on the cosine: no change of rate to report
    resumed_line = next(r.getMessage() for r in caplog.records if "resuming from" in r.getMessage())
    assert "at epoch 3 (batches per epoch" in resumed_line and "learning rate" not in resumed_line, resumed_line
    # More epochs on a finished run stretch the cosine, so the rate rises again: said when resuming
    longer = train_in_process(bench, tmp_path / "reference", cache, "train.epochs=6", "train.batch_size=4")
    assert longer["history"][4]["lr"] > 2 * expected[-1]
    assert re.search(r"resuming from .* at epoch 5 \(learning rate \S+ -> \S+ \(the schedule over "
                     r"train\.epochs=6, train\.warmup_epochs=\S+\)\)", caplog.text), caplog.text


def test_a_script_without_a_main_guard_trains_with_spawned_workers(tmp_path):
    """Where DataLoader workers are spawned (macOS, Windows; forkserver on Python 3.14)
    each imports the main script: a plain script calling videoact.train ran itself again in
    every worker, which died ('DataLoader worker exited unexpectedly')."""
    from faults import write_two_class_folder

    write_two_class_folder(tmp_path / "data")
    script = tmp_path / "user_script.py"
    script.write_text(
        "import multiprocessing\n"
        "multiprocessing.set_start_method('spawn', force=True)  # as on macOS\n"
        "import videoact\n"
        "summary = videoact.train({'data': {'train': 'data', 'num_workers': 1, 'val_fraction': 0.25},\n"
        "    'work_dir': 'run', 'feature': {'image_size': 32, 'resize': 'squash', 'num_segments': 4},\n"
        "    'model': {'hidden': 8, 'proj_dim': 8}, 'train': {'epochs': 1, 'batch_size': 4, 'progress': False}})\n"
        "print('epochs run', summary['epochs_run'])\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.count("epochs run 1") == 1, proc.stderr[-3000:]


def test_make_synthetic_cli(tmp_path, capsys):
    here(capsys, "make-synthetic", tmp_path / "s", "--train-per-class", 1, "--val-per-class", 1, "--test-per-class", 1,
             "--workers", 1, "--quiet")
    lines = (tmp_path / "s" / "train.txt").read_text().splitlines()
    assert len(lines) == 10
    for line in lines:
        rel, label = line.rsplit(maxsplit=1)
        assert (tmp_path / "s" / rel).is_file() and rel.split("/")[1] == label


def test_optimizer_step_outcomes():
    """The step the training loop takes: a float16 loss-scale overflow is routine (the scaler
    skips the update and halves its scale), a non-finite gradient at scale <= 1 is not."""
    from videoact.training import optimizer_step

    def setup(weight):
        model = torch.nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            model.weight.fill_(weight)
        return model, torch.optim.SGD(model.parameters(), lr=0.1)

    model, opt = setup(1.0)
    off = torch.amp.GradScaler("cpu", enabled=False)
    assert optimizer_step(model(torch.ones(1, 1)).sum() * 3, model, opt, off, 1.0) == "ok"
    assert model.weight.item() == pytest.approx(0.9)  # gradient 3 clipped to norm 1

    # scale 2**127 times a gradient of 3 overflows float32 (max ~2**128): no update, scale halved
    model, opt = setup(1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)
    assert optimizer_step(model(torch.ones(1, 1)).sum() * 3, model, opt, scaler, 1.0) == "overflow"
    assert model.weight.item() == 1.0 and scaler.get_scale() == 2.0**126
    assert optimizer_step(model(torch.ones(1, 1)).sum() * 3, model, opt, scaler, 1.0) == "ok"  # 3 * 2**126 fits
    assert model.weight.item() == pytest.approx(0.9)

    # sqrt at 0: a finite loss with an infinite gradient, with or without a scaler
    for scaler in (torch.amp.GradScaler("cpu", init_scale=1.0), torch.amp.GradScaler("cpu", enabled=False)):
        model, opt = setup(0.0)
        assert optimizer_step(model.weight.sqrt().sum(), model, opt, scaler, 1.0) == "nonfinite"
        assert model.weight.item() == 0.0

    # Non-finite steps skipped one after another (train.nonfinite: skip) leave the scale where
    # it is: halving it below 1 each time would underflow float16 gradients to zero after.
    model, opt = setup(0.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    for _ in range(20):
        assert optimizer_step(model.weight.sqrt().sum(), model, opt, scaler, 1.0) == "nonfinite"
    assert scaler.get_scale() == 1.0
    assert optimizer_step(model(torch.ones(1, 1)).sum() * 3, model, opt, scaler, 1.0) == "ok"
    assert model.weight.item() == pytest.approx(-0.1)


def test_data_problems_are_refused_before_extraction(tmp_path, capsys):
    """An empty validation split or a reverse pair naming no class would surface only after
    extraction (hours on a real dataset): both are refused first, with nothing extracted."""
    from videoact.testing import write_coded_video

    for c in ("a", "b"):
        write_coded_video(tmp_path / "one" / c / "v0.mp4", 12)
        for i in range(3):
            write_coded_video(tmp_path / "three" / c / f"v{i}.mp4", 12 + i)
    proc = here(capsys, "train", "--data", tmp_path / "one", "--work-dir", tmp_path / "w1", *FAST, check=False)
    assert proc.returncode == 2
    assert "no validation videos: each class has a single usable video" in proc.stderr and "--val" in proc.stderr
    (tmp_path / "single").mkdir()
    (tmp_path / "three" / "a").rename(tmp_path / "single" / "a")
    proc = here(capsys, "train", "--data", tmp_path / "single", "--work-dir", tmp_path / "w4", *FAST, check=False)
    assert proc.returncode == 2 and "one class only (a): a classifier needs videos of at least two" in proc.stderr
    (tmp_path / "single" / "a").rename(tmp_path / "three" / "a")
    proc = here(capsys, "train", "--data", tmp_path / "three", "--work-dir", tmp_path / "w2",
                    "--set", "train.reverse_pairs=[a:c]", *FAST, check=False)
    assert proc.returncode == 2 and "train.reverse_pairs: 'a:c' names 'c', not a class" in proc.stderr
    assert not any((tmp_path / w / "features").exists() for w in ("w1", "w2", "w4"))
    # an unknown backbone, a weights file that is not there: no work directory either (they
    # were found at extraction, with config.yaml and .lock written)
    for setting, said in (("feature.backbone=resnet19", "feature.backbone: unknown backbone 'resnet19'"),
                          (f"feature.weights={tmp_path / 'none.pth'}", f"feature.weights: {tmp_path / 'none.pth'}: "
                                                                      "weights file not found")):
        proc = here(capsys, "train", "--data", tmp_path / "three", "--work-dir", tmp_path / "w5", "--set", setting,
                    *FAST, check=False)
        assert proc.returncode == 2 and said in proc.stderr, proc.stderr[-2000:]
        assert not (tmp_path / "w5").exists()


def test_resuming_under_other_model_settings_is_refused(trained, bench, tmp_path, capsys):
    """A work dir holds one run: other model/feature settings would not fit last.pt, and
    config.yaml must go on describing it; train settings (more epochs) may change."""
    import shutil

    work, _ = trained
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("config.yaml", "last.pt", "best.pt", "metrics.jsonl"):
        shutil.copy(work / name, copy / name)
    saved = (copy / "config.yaml").read_text()
    args = ["train", "--data", bench / "train", "--val", bench / "val", "--work-dir", copy,
            "--set", f"feature.cache_dir={work / 'cache'}", *FAST]
    proc = here(capsys, *args, "--set", "model.hidden=16", check=False)
    assert proc.returncode == 2
    assert f"{copy} holds a run with other settings (model.hidden: 32 -> 16)" in proc.stderr
    assert (copy / "config.yaml").read_text() == saved
    # without config.yaml to compare, the checkpoint itself does not fit: still a clear error
    (copy / "config.yaml").unlink()
    proc = here(capsys, *args, "--set", "model.hidden=16", check=False)
    assert proc.returncode == 2 and "last.pt does not fit the configured model" in proc.stderr
    assert "Traceback" not in proc.stderr and not (copy / "config.yaml").exists()  # nothing describes it wrongly
    # where features are computed, and in what precision, may change: only rounding differs
    # (feature.amp on a CPU without bf16 changes nothing at all; it was refused)
    from videoact.config import load_config
    from videoact.training import TrainingError, check_resumable

    shutil.copy(work / "config.yaml", copy / "config.yaml")
    cfg = load_config(copy / "config.yaml")
    check_resumable(copy, load_config(copy / "config.yaml", ["feature.amp=true", "feature.device=cpu"]))
    with pytest.raises(TrainingError, match="feature.image_size"):
        check_resumable(copy, load_config(copy / "config.yaml", [f"feature.image_size={cfg.feature.image_size + 32}"]))
    # a longer run of the same model resumes
    proc = here(capsys, *args, "--set", "train.epochs=5")
    assert "resuming from" in proc.stdout and "at epoch 5" in proc.stdout
    assert "epochs: 5" in (copy / "config.yaml").read_text()
    # run again with nothing left to train: config.yaml keeps the settings the run had
    # (it recorded the new seed of a run that trained nothing with it)
    finished = (copy / "config.yaml").read_text()
    proc = here(capsys, *args, "--set", "train.epochs=5", "--set", "train.seed=3")
    assert "the run is complete" in proc.stdout + proc.stderr and (copy / "config.yaml").read_text() == finished


def test_held_out_ucf101_clips_keep_their_groups_together(tmp_path):
    """UCF101's clips of one group are cut from one long video: a held-out part that split
    groups validated on clips of videos the model trained on (21 of 21 groups both sides)."""
    from videoact.config import load_config
    from videoact.datasets import VideoSample, ucf101_group
    from videoact.training import hold_out

    samples = [VideoSample(tmp_path / f"{c}/v_{c}_g{g:02d}_c{i:02d}.avi", f"{c}/v_{c}_g{g:02d}_c{i:02d}.avi", k, c)
               for k, c in enumerate(["Archery", "Bowling", "Diving", "Fencing", "Rowing"])
               for g in range(1, 8) for i in range(1, 5)]
    cfg = load_config(None, ["data.val_fraction=0.2"])
    train, val = hold_out(samples, cfg, tmp_path, resuming=False)
    assert val and {ucf101_group(s) for s in train}.isdisjoint(ucf101_group(s) for s in val)
    assert {s.label for s in val} == set(range(5)) and len(train) + len(val) == len(samples)


def test_validation_is_held_out_of_the_readable_videos(tmp_path, capsys):
    """Broken files are dropped before the hold-out is drawn, so none of them takes a
    validation place (with two good videos per class, one of each is held out)."""
    from videoact.testing import write_coded_video

    for c in ("a", "b"):
        for i in range(2):
            write_coded_video(tmp_path / "data" / c / f"v{i}.mp4", 12 + i)
    (tmp_path / "data" / "a" / "text.mp4").write_text("not a video\n")
    (tmp_path / "data" / "a" / "zero.mp4").write_bytes(b"")
    proc = here(capsys, "train", "--data", tmp_path / "data", "--work-dir", tmp_path / "w", "--set", "train.epochs=2",
                    "--set", "data.val_fraction=0.5", "--set", "train.early_stopping_patience=1", *FAST)
    assert "2 classes: 2 training videos, 2 validation videos (held out of the training videos)" in proc.stdout
    assert not logging.getLogger("videoact.train").handlers  # printed for that run of main() only
    assert proc.stderr.count("videoact train: warning: skipping") == 2
    assert "text.mp4" in proc.stderr and "zero.mp4" in proc.stderr
    assert re.search(r"best validation accuracy: [\d.]+% at epoch [12] of \d run", proc.stdout), proc.stdout
    # ... and again at the end, where a long run's log ends (they were only said at its start)
    end = proc.stderr[proc.stderr.index("2 videos could not be read and were left out:"):]
    assert "text.mp4" in end and "zero.mp4: file is empty (0 bytes)" in end
    # From code, a warning a program can catch or make an error (it was printed text)
    from videoact.config import load_config
    from videoact.training import train

    from videoact import VideoactWarning  # a category of its own: a program can filter or raise on it

    with pytest.warns(VideoactWarning) as caught:
        summary = train(load_config(None, [item for item in FAST if item != "--set"] + [
            f"data.train={tmp_path / 'data'}", f"work_dir={tmp_path / 'w2'}", "train.epochs=1",
            "data.val_fraction=0.5", f"feature.cache_dir={tmp_path / 'w' / 'features'}"]))
    said = sorted(str(w.message) for w in caught if str(w.message).startswith("skipping "))
    assert len(said) == 2 and "text.mp4: not a readable video" in said[0] and "zero.mp4: file is empty" in said[1]
    assert sorted(summary["unreadable"]) == [s.removeprefix("skipping ") for s in said]


def test_training_reuses_features_of_symlinked_videos(tmp_path, capsys):
    """Videos that are symlinks into a content store (DVC, git-annex, a Hugging Face cache)
    keep their listed names as cache keys, as `videoact extract` names them: training
    reuses that cache instead of extracting every video again under the store's names."""
    from videoact.testing import write_coded_video

    for c in ("a", "b"):
        for i in range(3):
            blob = write_coded_video(tmp_path / "objects" / f"{c}{i}" / f"{c}{i}f00d.mp4", 12 + i)
            link = tmp_path / "data" / c / f"clip{i}.mp4"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    cache = tmp_path / "cache"
    here(capsys, "extract", tmp_path / "data", cache, "--image-size", "64", "--resize", "squash", "--sampling", "uniform",
             "--num-segments", "8", "--no-progress")
    extracted = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*.safetensors"))
    assert extracted == [f"{c}/clip{i}.mp4.safetensors" for c in ("a", "b") for i in range(3)]
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("*.safetensors")}
    here(capsys, "train", "--data", tmp_path / "data", "--work-dir", tmp_path / "w", "--set", "train.epochs=1",
             "--set", "data.val_fraction=0.3", "--set", f"feature.cache_dir={cache}", *FAST)
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.safetensors")} == stamps  # nothing new, nothing redone


def test_mixed_precision_on_the_cpu(bench, tmp_path):
    """feature.amp / train.cpu_amp: bf16 on a CPU with native bf16 (AVX512-BF16 or AMX), and
    float32 with a note elsewhere. The cache and the checkpoint record the precision; a
    float32 run replaces bf16 features; live inference recomputes what the cache holds."""
    from videoact.device import native_bf16
    from videoact.feature_cache import load_features, read_metadata
    from videoact.inference import VideoClassifier

    native = native_bf16(torch.device("cpu"))

    def run(name: str, amp: bool) -> tuple[Path, dict, str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train_in_process(bench, tmp_path / name, tmp_path / "cache", "train.epochs=1", f"feature.amp={amp}",
                             f"train.cpu_amp={amp}")
        history = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return tmp_path / name, history[-1], "\n".join(str(w.message) for w in caught)

    clip = sorted((bench / "train").rglob("*.mp4"))[0]
    cached = tmp_path / "cache" / "train" / clip.parent.name / f"{clip.name}.safetensors"
    work, mixed, err = run("mixed", True)
    precision = "bfloat16" if native else "float32"
    assert read_metadata(cached)["precision"] == precision
    assert load_checkpoint(work / "best.pt")["feature"]["precision"] == precision
    assert ("no native bf16" in err) is not native
    # Live features of the clip, as inference computes them, are the cached ones (up to the
    # rounding of kernels chosen by batch shape).
    classifier = VideoClassifier.from_checkpoint(work / "best.pt", device="cpu")
    assert (classifier.amp_dtype is not None) is native
    from videoact.decode import open_video

    cache = load_features(cached)
    features = cache.features
    live = classifier.frame_features(open_video(clip).get(cache.frame_indices.tolist()).frames)
    torch.testing.assert_close(live, features.float(), atol=0.05 * float(features.float().abs().mean()), rtol=0.02)

    bf16_features = features.clone()
    _, full, err = run("float32", False)
    features32 = load_features(cached).features
    assert read_metadata(cached)["precision"] == "float32"
    if native:  # re-extracted in float32, said so; close to bf16 but not the same numbers, nor the training
        assert "out of date" in err and "precision: 'bfloat16' -> 'float32'" in err
        a, b = features32.float(), bf16_features.float()
        assert 0 < float((a - b).norm() / a.norm()) < 0.1  # measured 3 % (Zen 4, 64 px)
        assert torch.nn.functional.cosine_similarity(a, b, dim=1).min() > 0.99
        assert mixed["train_loss"] != full["train_loss"]
    else:  # float32 both times: the cache is current, the runs are the same
        assert "out of date" not in err and torch.equal(features32, bf16_features)
        assert mixed["train_loss"] == full["train_loss"]


def test_select_last_keeps_the_last_epoch_in_best_pt(bench, tmp_path):
    """train.select: best.pt (what the test set evaluates and inference loads) holds the epoch
    of best validation accuracy by default, the last epoch with select=last."""
    results = {}
    for select in ("best", "last"):
        work = tmp_path / select
        summary = train_in_process(bench, work, tmp_path / "cache", f"data.test={bench / 'test'}", "train.epochs=5",
                                   "train.lr=0.01", "train.early_stopping_patience=0", f"train.select={select}")
        best, last = load_checkpoint(work / "best.pt"), load_checkpoint(work / "last.pt")
        history = summary["history"]
        results[select] = summary
        assert last["train_state"]["epoch"] == 4 and summary["epochs_run"] == 5
        if select == "last":
            assert best["train_state"]["epoch"] == 4 == summary["selected_epoch"]
            assert all(torch.equal(best["model_state"][k], last["model_state"][k]) for k in last["model_state"])
        else:
            assert best["train_state"]["epoch"] == summary["best_epoch"] == summary["selected_epoch"]
            assert best["metrics"]["val_acc"] == max(h["val_acc"] for h in history)
            assert summary["best_epoch"] != 4  # else "best" and "last" would be the same epoch: no test
    # Same seed, same run: only the choice differs.
    assert [h["val_acc"] for h in results["best"]["history"]] == [h["val_acc"] for h in results["last"]["history"]]
    # The finished runs again with the other choice: nothing to train. select=best's run
    # with select=last named epoch 5 and tested best.pt's best epoch; now best.pt is the
    # last epoch, as asked. select=last's run with select=best cannot have the best epoch
    # back (it was not kept): the summary says the epoch best.pt holds, and tests that.
    for trained, select in (("best", "last"), ("last", "best")):
        work = tmp_path / trained
        again = train_in_process(bench, work, tmp_path / "cache", f"data.test={bench / 'test'}", "train.epochs=5",
                                 "train.lr=0.01", "train.early_stopping_patience=0", f"train.select={select}")
        held = load_checkpoint(work / "best.pt")["train_state"]["epoch"]
        assert held == again["selected_epoch"] == 4, (trained, select)
        assert again["test"]["top1"] == results["last"]["test"]["top1"]


def test_resume_refuses_a_last_pt_of_other_backbone_weights(bench, tmp_path):
    """A weights file replaced under the same name: config.yaml is unchanged, so the run
    re-extracted every cache with the new weights and resumed the old model on them."""
    from videoact.checkpoint import save_checkpoint
    from videoact.datasets import load_dataset
    from videoact.temporal import create_temporal_model
    from videoact.training import TrainingError

    _, classes, _ = load_dataset(bench / "train")
    temporal = create_temporal_model("bilstm", 1280, len(classes), hidden=32, proj_dim=32)
    work = tmp_path / "run"
    save_checkpoint(work / "last.pt", model_state=temporal.state_dict(), model_config=temporal.config,
                    classes=list(classes), feature={"backbone": "efficientnet_lite0", "weights_id": "lite0:other weights"})
    with pytest.raises(TrainingError, match="trained on features of backbone weights 'lite0:other weights'"):
        train_in_process(bench, work, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # refused before any extraction


def test_resume_keeps_its_held_out_videos_classes_and_takes_new_optimizer_settings(tmp_path, capsys, caplog):
    """A resumed run validates on the videos it held out at the start (not on ones it
    trained on, though a broken video became readable and data.val_fraction changed),
    trains with the train.lr / train.weight_decay its config.yaml now records, and refuses
    data whose classes differ from last.pt's."""
    from videoact.config import load_config
    from videoact.testing import write_coded_video
    from videoact.training import TrainingError, train

    data, work = tmp_path / "data", tmp_path / "work"
    for c in ("a", "b"):
        for i in range(4):
            write_coded_video(data / c / f"v{i}.mp4", 12 + i)
    good = (data / "a" / "v0.mp4").read_bytes()
    (data / "a" / "v0.mp4").write_bytes(b"not a video yet")
    fast = [item for item in FAST if item != "--set"]

    def run(*settings: str) -> dict:
        return train(load_config(None, [*fast, f"data.train={data}", f"work_dir={work}", *settings]))

    caplog.set_level(logging.INFO, logger="videoact.train")
    run("train.epochs=1", "data.val_fraction=0.5")
    assert capsys.readouterr().out == ""  # train.progress=false: a program's stdout is its own
    first = summary_lines(caplog)
    held_out = json.loads((work / "held_out.json").read_text())["videos"]
    assert f"{7 - len(held_out)} training videos, {len(held_out)} validation videos" in first
    assert str(data / "a" / "v0.mp4") not in held_out

    (data / "a" / "v0.mp4").write_bytes(good)
    for c in ("a", "b"):  # a test set added now moves the cache keys' common root up one folder
        write_coded_video(tmp_path / "testdata" / c / "t.mp4", 12)
    run("train.epochs=2", "data.val_fraction=0.25", "train.lr=0.01", "train.weight_decay=0.2",
        f"data.test={tmp_path / 'testdata'}")
    out = summary_lines(caplog)
    assert f"{8 - len(held_out)} training videos, {len(held_out)} validation videos" in out  # v0 joins training
    assert json.loads((work / "held_out.json").read_text())["videos"] == held_out
    assert "at epoch 2 (train.lr 0.001 -> 0.01, train.weight_decay 0.01 -> 0.2)" in out
    ts = load_checkpoint(work / "last.pt")["train_state"]
    assert [g["initial_lr"] for g in ts["optimizer"]["param_groups"]] == [0.01, 0.01]
    assert [g["weight_decay"] for g in ts["optimizer"]["param_groups"]] == [0.2, 0.0]
    assert ts["scheduler"]["base_lrs"] == [0.01, 0.01]
    # the log's lr of the resumed epoch (one step) is the new schedule's, not the old one's last
    from videoact.training import lr_factor

    warmup = int(round(load_config(None).train.warmup_epochs))
    logged = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in logged] == [0, 1]
    assert logged[1]["lr"] == pytest.approx(0.01 * lr_factor(1, warmup, 2)) != 0.001 * lr_factor(0, warmup, 1)
    run("train.epochs=2", "train.lr=0.01", "train.weight_decay=0.2", f"data.test={tmp_path / 'testdata'}")  # again:
    # nothing left to do, and it says so
    assert f"{work / 'last.pt'}: the run is complete (2 of 2 epochs)" in summary_lines(caplog)

    (data / "b").rename(data / "c")  # as many classes, other names: the weights would still load
    cached = sorted(p.relative_to(work).as_posix() for p in work.rglob("*.safetensors"))
    with pytest.raises(TrainingError, match=r"last.pt was trained on other classes \(a, b; now a, c\)"):
        run("train.epochs=3")
    # refused before extraction and the hold-out: nothing of the run changed
    assert json.loads((work / "held_out.json").read_text())["videos"] == held_out
    assert sorted(p.relative_to(work).as_posix() for p in work.rglob("*.safetensors")) == cached


def test_top5_is_not_reported_as_a_figure_with_five_classes_or_fewer():
    from videoact.evaluation import classification_metrics, format_report

    wrong = classification_metrics(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([0, 1]), ["a", "b"])
    assert wrong["top1"] == 0.0 and wrong["top5"] == 1.0  # every class is among the top 5
    assert "top-1: 0.00%   top-5: - (2 classes)   mean class accuracy: 0.00%" in format_report(wrong)
    scores = torch.tensor([[9.0, 8, 7, 6, 5, 4, 3, 2, 1, 0], [0, 9, 8, 1, 1, 1, 1, 1, 1, 1]])
    ten = classification_metrics(scores.softmax(1), torch.tensor([0, 2]), [f"c{i}" for i in range(10)])
    assert "top-1: 50.00%   top-5: 100.00%" in format_report(ten)
    # ties go to the lower class index (topk put class 8 first among ten equal scores)
    flat = classification_metrics(torch.full((2, 10), 0.1), torch.tensor([0, 5]), [f"c{i}" for i in range(10)])
    assert flat["top1"] == 0.5 and flat["top5"] == 0.5 and flat["confusion_matrix"][5][0] == 1
    # fractions written as float64 ones: 2/3, not float32's 0.6666666865348816
    thirds = classification_metrics(torch.eye(3)[[0, 0, 2]], torch.tensor([0, 1, 2]), ["a", "b", "c"])
    assert thirds["top1"] == 2 / 3 and thirds["mean_class_acc"] == 2 / 3
    assert thirds["per_class"]["a"]["precision"] == 0.5 and thirds["per_class"]["b"]["precision"] is None


def test_the_report_of_many_classes_lists_the_confused_pairs_instead_of_a_wide_table():
    """101 or 400 classes printed a confusion table 400 columns wide (652 kB of text, lines of
    1,625 characters for Kinetics-400): the most confused pairs now, the matrix in the JSON."""
    from videoact.evaluation import classification_metrics, format_report

    names = [f"class{i:03d}" for i in range(101)]
    labels = torch.arange(101).repeat(2)
    scores = torch.nn.functional.one_hot(labels, 101).float()
    scores[0] = torch.nn.functional.one_hot(torch.tensor(7), 101).float()  # class000 -> class007 twice
    scores[101] = scores[0]
    scores[5] = torch.nn.functional.one_hot(torch.tensor(9), 101).float()  # class005 -> class009 once
    report = format_report(classification_metrics(scores, labels, names))
    assert max(len(line) for line in report.splitlines()) < 120
    assert "confusion matrix: 101 classes (in full in the PNG, and in the metrics JSON with --out)" in report
    pairs = report.split("the most confused pairs:\n")[1].splitlines()
    assert pairs == ["  class000 -> class007: 2 (100% of class000)", "  class005 -> class009: 1 (50% of class005)"]
    ten = classification_metrics(torch.eye(10), torch.arange(10), [f"c{i}" for i in range(10)])
    assert "rows: true class, columns: predicted class" in format_report(ten)  # a table where it fits
    # Kinetics' long class names pushed their rows out of the per-class table's columns
    long = classification_metrics(torch.eye(2), torch.arange(2), ["exercising with an exercise ball", "jump"])
    table = format_report(long).split("\n\n")[1].splitlines()[:3]
    assert len(table) == 3 and len({len(line) for line in table}) == 1, table  # right-aligned columns line up


def test_running_an_early_stopped_run_again_says_so(bench, tmp_path, caplog):
    common = ("train.epochs=6", "train.lr=1e-12", "train.early_stopping_patience=1")  # nothing improves
    summary = train_in_process(bench, tmp_path / "w", tmp_path / "cache", *common)
    assert summary["stopped_early"] and summary["epochs_run"] == 2
    caplog.set_level(logging.INFO, logger="videoact.train")
    train_in_process(bench, tmp_path / "w", tmp_path / "cache", *common)
    assert f"{tmp_path / 'w' / 'last.pt'}: the run stopped early after 2 epochs" in summary_lines(caplog)


def test_a_classes_file_fixes_the_class_order_and_keeps_classes_without_training_videos(bench, trained, tmp_path,
                                                                                         capsys, caplog):
    """UCF101's own files: classInd.txt (``id name``) and lists with integer ids. Without a
    classes file, classes were the training list's sorted names: an integer list could not
    be read and a class without training videos dropped out (its test clips refused)."""
    names = (bench / "classes.txt").read_text().split()
    order = names[::-1]  # not the sorted order, to see whose order the checkpoint keeps
    class_ind = tmp_path / "classInd.txt"
    class_ind.write_text("".join(f"{i + 1} {name}\n" for i, name in enumerate(order)))
    gone = order[3]
    train_list = tmp_path / "trainlist.txt"
    train_list.write_text("".join(f"train/{p.parent.name}/{p.name} {order.index(p.parent.name) + 1}\n"
                                  for p in sorted((bench / "train").rglob("*.mp4")) if p.parent.name != gone))
    val_list = tmp_path / "vallist.txt"
    val_list.write_text("".join(f"val/{p.parent.name}/{p.name} {order.index(p.parent.name) + 1}\n"
                                for p in sorted((bench / "val").rglob("*.mp4"))))
    cache = trained[0] / "cache"  # the same root (bench) and settings: nothing to extract
    caplog.set_level(logging.INFO, logger="videoact.train")
    with pytest.warns(UserWarning) as caught:
        summary = train_in_process(bench, tmp_path / "run", cache, f"data.train={train_list}",
                                   f"data.val={val_list}", f"data.root={bench}", f"data.classes={class_ind}",
                                   f"data.test={bench / 'test'}", "train.epochs=1")
    said = [str(w.message) for w in caught]
    assert "10 classes: 27 training videos, 10 validation videos" in summary_lines(caplog)
    assert any(f"1 of the 10 classes of {class_ind} have no usable training video ({gone})" in m for m in said)
    assert not any("not one of the classes" in m for m in said)  # the test clips of that class are kept
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["classes"] == order and best["class_ids"] == list(range(1, 11))
    assert summary["test"]["classes"] == order and summary["test"]["num_samples"] == 10

    # A test list labelled with the same ids: read with the checkpoint's ids, not as 0-based
    # positions (which would shift every label by one class), so the accuracy is the same.
    test_list = tmp_path / "testlist.txt"
    test_list.write_text("".join(f"test/{p.parent.name}/{p.name} {order.index(p.parent.name) + 1}\n"
                                 for p in sorted((bench / "test").rglob("*.mp4"))))
    by_ids = tmp_path / "by_ids.json"
    here(capsys, "test", tmp_path / "run" / "best.pt", test_list, "--root", bench, "--out", by_ids,
         "--no-progress", "--device", "cpu")
    metrics = json.loads(by_ids.read_text())
    assert metrics["num_samples"] == 10 and metrics["top1"] == pytest.approx(summary["test"]["top1"])
    assert metrics["confusion_matrix"] == summary["test"]["confusion_matrix"]

    # Without the file, integer labels cannot be read: each line is reported, nothing trains.
    from videoact.training import TrainingError

    with pytest.raises(TrainingError, match="no training videos found"), \
            pytest.warns(UserWarning, match="27 entries left out: 27 unknown_label") as caught:
        train_in_process(bench, tmp_path / "run2", cache, f"data.train={train_list}", f"data.root={bench}")
    assert any("integer label 1 needs a classes file" in str(w.message) for w in caught)


def test_features_replaced_under_a_running_training_stop_it_with_the_reason(tmp_path, monkeypatch):
    """Two runs with other feature settings sharing one feature.cache_dir (a sweep): the
    second re-extracts every video into the same files. The first run went on training on
    them: features of the same shape (here the image size differs), silently other ones."""
    import videoact.training as training
    from faults import write_two_class_folder

    from videoact.config import load_config
    from videoact.extract import extract_features
    from videoact.feature_cache import FeatureCacheError

    videos = write_two_class_folder(tmp_path / "videos")
    cache = tmp_path / "cache"
    save = training.save_checkpoint

    def another_run_re_extracts(path, **kw):  # after the first epoch, the other run's extraction
        save(path, **kw)
        if Path(path).name == "last.pt" and kw["train_state"]["epoch"] == 0:
            extract_features(sorted(videos.rglob("*.mp4")), cache, root=videos, image_size=96, resize="squash",
                             sampling=training.sampling_spec(cfg), progress=False)

    fast = [item for item in FAST if item != "--set"]
    cfg = load_config(None, [*fast, f"data.train={videos}", "data.val_fraction=0.25", f"work_dir={tmp_path / 'run'}",
                             f"feature.cache_dir={cache}", "train.epochs=3"])
    monkeypatch.setattr(training, "save_checkpoint", another_run_re_extracts)
    with pytest.raises(FeatureCacheError, match=r"made with other settings \(image_size: 96 -> 64\).*"
                                                r"its own feature.cache_dir"):
        training.train(cfg)


def test_a_work_directory_in_use_by_another_run_is_refused(bench, trained, tmp_path, capsys, monkeypatch):
    """Two runs given one --work-dir (a job started twice, a sweep that forgot to change it)
    each wrote whole files and the last writer of each won: config.yaml, metrics.jsonl,
    best.pt and last.pt came from different runs, and both said they succeeded. Found by
    a review running two trainings at once."""
    import contextlib

    import videoact.training as training

    work = tmp_path / "run"
    work.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom videoact.atomic import exclusive_lock\n"
         "with exclusive_lock(sys.argv[1], 'x'):\n    print('locked', flush=True)\n    time.sleep(60)",
         str(work / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = here(capsys, "train", "--data", bench / "train", "--val", bench / "val", "--work-dir", work,
                    "--set", f"feature.cache_dir={trained[0] / 'cache'}", "--set", "train.epochs=1", *FAST, check=False)
        assert proc.returncode == 2
        assert f"videoact train: work directory {work} is in use by another run (pid {holder.pid})" in proc.stderr
        assert sorted(p.name for p in work.iterdir()) == [".lock"]  # nothing of this run written
    finally:
        holder.kill()
        holder.wait()
    # The holder gone (killed, as a crashed run would be), the lock is free again.
    train_in_process(bench, work, trained[0] / "cache", "train.epochs=1")
    assert (work / "last.pt").is_file()

    # A run that held the lock while this one started, and wrote last.pt meanwhile: not overwritten.
    @contextlib.contextmanager
    def the_other_run_finishes_first(path, what):
        (Path(path).parent / "last.pt").write_bytes((work / "last.pt").read_bytes())
        yield

    monkeypatch.setattr(training, "exclusive_lock", the_other_run_finishes_first)
    with pytest.raises(training.TrainingError, match="another run wrote last.pt while this one was starting"):
        train_in_process(bench, tmp_path / "fresh", trained[0] / "cache", "train.epochs=1")


def test_the_lock_ends_with_its_run_not_with_forked_workers(tmp_path):
    """DataLoader workers are forked while the work directory is locked, and a flock lasts
    until every copy of its descriptor is closed: a train() that raised in a notebook, its
    workers still alive, kept its own work directory locked against the retry."""
    from videoact.atomic import exclusive_lock

    lock = tmp_path / ".lock"
    started, tell = os.pipe()
    with exclusive_lock(lock, "work directory"):
        child = os.fork()
        if child == 0:  # a worker that lives on after its parent's run
            os.write(tell, b"1")
            time.sleep(3)
            os._exit(0)
        assert os.read(started, 1) == b"1"  # the child is running (its fork handlers have run)
    try:
        with exclusive_lock(lock, "work directory"):
            pass
    finally:
        os.kill(child, signal.SIGKILL)  # still running: the check above was made while it lived
        os.waitpid(child, 0)


def test_resuming_with_other_class_ids_is_refused(tmp_path):
    """A run started with a classInd.txt (ids 1..N) and resumed without it (or with other ids)
    was resumed, and its checkpoints lost the ids: integer labels then read one class off."""
    from videoact.checkpoint import save_checkpoint
    from videoact.temporal import create_temporal_model
    from videoact.training import TrainingError, load_resume_state

    temporal = create_temporal_model("bilstm", 8, 2, hidden=4, proj_dim=4)
    save_checkpoint(tmp_path / "last.pt", model_state=temporal.state_dict(), model_config=temporal.config,
                    classes=["a", "b"], class_ids=[1, 2], feature={})
    assert load_resume_state(tmp_path, ["a", "b"], class_ids=[1, 2]) is not None
    for other in (None, [0, 1]):
        with pytest.raises(TrainingError, match=r"trained with class ids \[1, 2\]"):
            load_resume_state(tmp_path, ["a", "b"], class_ids=other)


def test_train_from_code_leaves_the_host_program_as_it_was(bench, tmp_path, monkeypatch):
    """Two side effects on a program that calls train():
    - it seeded random, numpy and torch with train.seed and left them so: a program that had
      seeded its own streams drew random.seed(0)'s numbers afterwards;
    - ``data.num_workers: 0`` (load features in this process) was read as "automatic" for
      extraction, so with more cores decode worker processes were started anyway (7 of them
      on 8 cores). Extraction's workers are ``feature.num_workers`` now."""
    import multiprocessing
    import random
    import warnings

    import numpy as np

    random.seed(5), np.random.seed(7), torch.manual_seed(123)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(5), np.random.seed(7), torch.manual_seed(123)
    # Without a GPU in use, torch.manual_seed queues the GPUs' seed for CUDA's lazy start
    # (private state, the only trace of it here): a CPU run replaced it with train.seed's.
    lazy = getattr(torch.cuda, "_lazy_seed_tracker", None)
    queued = lazy.manual_seed_all_cb if lazy is not None and not torch.cuda.is_initialized() else None

    monkeypatch.setattr(os, "cpu_count", lambda: 8)  # "automatic" would start 7 decode workers
    started = []
    real_start = multiprocessing.process.BaseProcess.start
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start",
                        lambda self: (started.append(self.name), real_start(self))[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's note on more workers than cores, had there been any
        train_in_process(bench, tmp_path / "w", tmp_path / "c", "train.epochs=1", "feature.num_workers=0")
    assert (tmp_path / "w" / "best.pt").is_file() and any((tmp_path / "c").rglob("*.safetensors"))
    assert started == []
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    if queued is not None:
        assert lazy.manual_seed_all_cb is queued
