"""The quarantine list of `videoact check` keeps broken files out of training (data.exclude)."""
from __future__ import annotations

from faults import FAST_TRAIN, run_main, write_two_class_folder

from videoact.checkpoint import load_checkpoint


def test_training_leaves_out_quarantined_videos(tmp_path, capsys):
    data = write_two_class_folder(tmp_path / "data")
    (data / "a" / "empty.mp4").write_bytes(b"")
    (data / "b" / "notes.mkv").write_text("not a video\n")
    quarantine = tmp_path / "quarantine.txt"
    check = run_main(capsys, "check", data, "--quarantine", quarantine, "--workers", "1", "--quiet")
    assert check.returncode == 1 and "quarantine list (2 files)" in check.stdout, check.stdout

    work = tmp_path / "work"
    proc = run_main(capsys, "train", "--data", data, "--work-dir", work, "--set", "train.epochs=1",
                   "--set", f"data.exclude={quarantine}", *FAST_TRAIN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # a summary line (as asked, no problem: a program making VideoactWarnings errors trains on)
    assert f"excluded 2 training videos listed in {quarantine}" in proc.stdout
    assert "empty.mp4" not in proc.stderr.replace(str(quarantine), "") and "notes.mkv" not in proc.stderr
    assert load_checkpoint(work / "best.pt")["classes"] == ["a", "b"]
    cached = sorted(p.relative_to(work / "features").as_posix() for p in (work / "features").rglob("*.safetensors"))
    assert cached == [f"{c}/v{i}.mp4.safetensors" for c in "ab" for i in range(4)]

    missing = run_main(capsys, "train", "--data", data, "--work-dir", tmp_path / "w2", "--set",
                      f"data.exclude={tmp_path / 'nope.txt'}", *FAST_TRAIN)
    assert missing.returncode == 2
    assert f"videoact train: {tmp_path / 'nope.txt'}: exclusion list not found" in missing.stderr
