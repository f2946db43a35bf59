"""The benchmark tool runs end to end at a tiny size and reports every figure; the speed
paths it measures compute what the plain ones compute. No timing asserts."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from videoact.backbones import create_backbone
from videoact.benchmark import LSTMCellLoop
from videoact.fast_inference import fold_batchnorm

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--quick", "--no-distributed", "--set", "videos=3", "--set", "frames=20", "--set", "image_size=64",
        "--set", "batch_size=8", "--set", "repeats=1", "--set", "lstm_batch=4", "--set", "lstm_steps=2",
        "--set", "lstm_cell_steps=1", "--set", "backbone_batches=2", "--set", "stream_seconds=3"]
FIGURES = [
    "decode_ours_fps", "decode_decord_fps", "decode_opencv_fps", "decode_pipeline_fps", "backbone_fps",
    "extract_fps", "extract_wall_fps", "naive_fps", "extract_vs_bottleneck_ratio", "extract_vs_naive_ratio",
    "temporal_train_lstm_seq_per_s", "temporal_train_lstmcell_loop_seq_per_s", "lstm_vs_lstmcell_ratio",
    "stream_display_fps", "stream_prediction_rate", "stream_latency_p50_ms", "stream_latency_p95_ms",
]


def test_tiny_run_prints_the_table_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "benchmark.py"), *TINY, "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    figures = {f["name"]: f for f in report["figures"]}
    for name in FIGURES:
        f = figures[name]
        assert isinstance(f["value"], (int, float)) and math.isfinite(f["value"]) and f["value"] > 0, f
        assert f["unit"] and isinstance(f["bound"], str), f
        assert name in proc.stdout  # in the printed table
        assert report["values"][name] == f["value"]
    assert figures["extract_vs_bottleneck_ratio"]["target"] == 0.9
    assert figures["extract_vs_naive_ratio"]["target"] == 3.0  # CPU
    assert figures["stream_latency_p95_ms"]["target"] == 250.0
    assert figures["stream_latency_p95_ms"]["met"] == (figures["stream_latency_p95_ms"]["value"] <= 250.0)
    # a count of the run's frames: 3 s of a 30 fps source
    assert figures["stream_dropped_frames"]["value"] in range(0, 3 * 30 + 1) and "stream_dropped_frames" in proc.stdout
    # The ratios are what they say, from the same round's figures.
    v = report["values"]
    bottleneck = min(v["decode_pipeline_fps"], v["backbone_fps"])
    assert v["extract_vs_bottleneck_ratio"] == pytest.approx(v["extract_fps"] / bottleneck, rel=1e-3)
    assert v["extract_vs_naive_ratio"] == pytest.approx(v["extract_fps"] / v["naive_fps"], rel=1e-3)
    assert report["sampled_frames"] == 3 * 16  # 16 uniform segments of each clip
    assert report["machine"]["torch"] == torch.__version__ and report["machine"]["cpu_cores"] >= 1
    assert report["settings"]["image_size"] == 64 and report["settings"]["device"] == "cpu"


def test_the_distributed_extraction_is_given_only_its_sampling_modes_options(tmp_path):
    """The full benchmark's torchrun extraction passed --num-segments with --sampling all,
    which `videoact extract` refuses: the benchmark ended there, after minutes of measuring,
    with no table and no JSON (the tiny run in CI skips that part)."""
    from videoact.benchmark import distributed_extract_seconds, sampling_options
    from videoact.cli import main
    from videoact.extract import SamplingSpec
    from videoact.testing import write_coded_video

    src = tmp_path / "v"
    for i in range(2):
        write_coded_video(src / f"c{i}.mp4", 6)
    seconds = distributed_extract_seconds(src, tmp_path / "dist", 1, 32, 8, SamplingSpec(mode="all"))
    assert seconds > 0 and len(list((tmp_path / "dist").rglob("*.safetensors"))) == 2
    for spec in (SamplingSpec(mode="uniform", num_segments=3), SamplingSpec(mode="dense", stride=2),
                 SamplingSpec(mode="fps", target_fps=4.0, max_frames=3)):
        out = tmp_path / spec.mode
        assert main(["extract", str(src), str(out), "--image-size", "32", "--workers", "0", "--no-progress",
                     *sampling_options(spec)]) == 0, spec
        assert len(list(out.rglob("*.safetensors"))) == 2


def test_bad_setting_is_refused():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "benchmark.py"), "--set", "frams=3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "frams=3" in proc.stderr and "frames" in proc.stderr


def test_lstmcell_loop_computes_what_nn_lstm_computes():
    torch.manual_seed(0)
    lstm = nn.LSTM(12, 7, batch_first=True, bidirectional=True)
    loop = LSTMCellLoop.from_lstm(lstm)
    x = torch.randn(3, 5, 12)
    out, (h, c) = lstm(x)
    out2, (h2, c2) = loop(x)
    torch.testing.assert_close(out2, out)
    torch.testing.assert_close(h2, h)
    torch.testing.assert_close(c2, c)
    # gradients flow through the same weights
    out2.sum().backward()
    assert loop.backward_cell.weight_ih.grad is not None


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18"])
def test_folded_backbone_has_no_batchnorm_and_the_same_output(name):
    backbone = create_backbone(name, pretrained=name == "efficientnet_lite0").eval()
    g = torch.Generator().manual_seed(1)
    if name != "efficientnet_lite0":  # random weights: give BatchNorm statistics worth folding
        for m in backbone.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.data.uniform_(0.5, 1.5, generator=g)
                m.bias.data.normal_(0, 0.1, generator=g)
    probe, x = torch.randn(2, 3, 64, 64, generator=g), torch.randn(3, 3, 64, 64, generator=g)
    folded = fold_batchnorm(backbone, probe)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())  # the original is untouched
    with torch.inference_mode():
        ref, out = backbone(x), folded(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


@pytest.mark.parametrize("name,fused", [("efficientnet_lite0", 17), ("resnet18", 9)])
def test_inference_model_fuses_activations_and_keeps_the_output(name, fused):
    """ResNet's ReLU after `out += identity` must not be fused into the conv before it."""
    from videoact.fast_inference import _SkipIfFused, inference_model

    backbone = create_backbone(name, pretrained=name == "efficientnet_lite0").eval()
    backbone.input_size = 64
    model = inference_model(backbone, torch.device("cpu"))
    assert sum(isinstance(m, _SkipIfFused) for m in model.modules()) == fused
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        ref = backbone(x)
        out = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


def test_a_fused_model_copied_or_shared_by_threads_keeps_its_output():
    """Hardswish applied twice is not Hardswish: a deepcopy of the fused model applied every
    fused activation twice (its convolutions still marked the original's outputs; features
    off by 1.6), and threads sharing one model skipped each other's activations now and then."""
    import copy
    import threading

    from videoact.fast_inference import inference_model

    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    backbone = create_backbone("mobilenet_v3_small", pretrained=False).eval()
    backbone.input_size = 64
    with torch.no_grad():
        for m in backbone.modules():  # away from the all-zero features of a fresh init
            if isinstance(m, nn.BatchNorm2d):
                m.weight.normal_(1, 0.3, generator=g)
                m.bias.normal_(0, 1, generator=g)
    model = inference_model(backbone, torch.device("cpu"))
    x = torch.randn(2, 3, 64, 64, generator=g).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        ref = backbone(x)
        assert float(ref.abs().max()) > 1
        torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
        torch.testing.assert_close(copy.deepcopy(model)(x), ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))

    small = torch.randn(1, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        small_ref = backbone(small)
    wrong = []

    def work():
        with torch.inference_mode():
            for _ in range(300):
                wrong.append(float((model(small) - small_ref).abs().max()) > 1e-3)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert len(wrong) == 1200 and not any(wrong)
