"""The demo end to end through the command line, at its tiny size and a small input size."""
import subprocess
import sys


def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "videoact", "demo", "--out", str(out), "--size", "tiny", "--workers", "1",
         "--set", "feature.image_size=64", "--set", "train.epochs=3", "--set", "train.progress=false"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,  # cwd: not the repo, configs found anyway
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "BiLSTM (temporal)" in proc.stdout and "mean-pool baseline" in proc.stdout
    assert "one held-out clip" in proc.stdout and "videoact stream" in proc.stdout
    for model in ("bilstm", "meanpool"):
        assert (out / model / "best.pt").is_file()
    assert (out / "bilstm" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    # the shipped synthetic config was used although the working directory is elsewhere
    assert "layer: stride8" in (out / "bilstm" / "config.yaml").read_text()
