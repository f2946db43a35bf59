"""The demo end to end through the command line, at its tiny size and a small input size."""
from faults import run_main


def test_demo_runs_end_to_end(tmp_path, capsys, monkeypatch):
    out = tmp_path / "demo"
    monkeypatch.chdir(tmp_path)  # not the repo: configs found anyway
    proc = run_main(capsys, "demo", "--out", out, "--size", "tiny", "--workers", "1",
                    "--set", "feature.image_size=64", "--set", "train.epochs=3", "--set", "train.progress=false")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "BiLSTM (temporal)" in proc.stdout and "mean-pool baseline" in proc.stdout
    assert "one held-out clip" in proc.stdout and "videoact stream" in proc.stdout
    for model in ("bilstm", "meanpool"):
        assert (out / model / "best.pt").is_file()
    assert (out / "bilstm" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    # the shipped synthetic config was used although the working directory is elsewhere,
    # with the demo's own settings on top (and the user's last: image_size 64)
    used = (out / "bilstm" / "config.yaml").read_text()
    assert "pooling: grid14" in used and "layer: stride4" in used and "num_segments: 6" in used
    assert "image_size: 64" in used


def test_the_users_set_wins_over_the_demos_own_paths(tmp_path):
    from videoact.demo import demo_configs

    cfgs = demo_configs(tmp_path / "out", overrides=[f"feature.cache_dir={tmp_path / 'mine'}", "train.epochs=3"])
    for cfg in cfgs.values():
        assert cfg.feature.cache_dir == str(tmp_path / "mine") and cfg.train.epochs == 3
        assert cfg.data.train == str(tmp_path / "out" / "synthetic" / "train")
    assert (cfgs["bilstm"].model.name, cfgs["meanpool"].work_dir) == ("bilstm", str(tmp_path / "out" / "meanpool"))


def test_the_demo_runs_in_float32_on_every_cpu(tmp_path):
    """The demo asked for bf16 on CPUs with native bf16, where its current recipe was never
    measured: float32 on every CPU now, the precision of its recorded figures."""
    import torch

    from videoact.demo import demo_configs

    on_cpu = ["feature.device=cpu", "train.device=cpu"]  # a GPU machine's CPU too
    for cfg in demo_configs(tmp_path / "out", overrides=on_cpu).values():
        assert (cfg.feature.amp, cfg.train.cpu_amp) == (False, False)
    # the user's setting still wins
    cfg = demo_configs(tmp_path / "out", overrides=[*on_cpu, "feature.amp=true", "train.cpu_amp=true"])["bilstm"]
    assert cfg.feature.amp and cfg.train.cpu_amp
    if torch.cuda.is_available():  # extraction on the GPU: mixed precision there
        assert demo_configs(tmp_path / "out", overrides=["feature.device=cuda"])["bilstm"].feature.amp
