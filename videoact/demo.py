"""The end-to-end demo: temporal order is what the BiLSTM adds.

1. write the synthetic temporal-order benchmark (ten classes in five direction pairs)
2. extract per-frame features once with the offline pretrained EfficientNet-Lite0
3. train the BiLSTM and the mean-pool baseline on the same cached features
4. print both test accuracies side by side, the confusion matrix, and classify one
   held-out clip with its top-3 probabilities
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .config import load_config, parse_override

# Clips per class for each size; "full" is the size of the benchmark recorded in
# docs/benchmarks.md (whose figures come from configs/synthetic.yaml as it is).
SIZES = {
    "tiny": dict(train_per_class=6, val_per_class=2, test_per_class=2),
    "demo": dict(train_per_class=100, val_per_class=10, test_per_class=20),
    "full": dict(train_per_class=300, val_per_class=20, test_per_class=20),
}

# What the demo changes in configs/synthetic.yaml (docs/benchmarks.md, "Demo size"), to
# finish in under 5 minutes on 2 CPU cores in float32 (2026-11-30, a Zen 3: 250-277 s over
# five seeds); both models get the same recipe:
# - 6 segments per clip instead of 8: three quarters of the extraction and training
#   (seeds 0 and 1 at 20 epochs: 84.5 and 85.5 % against 84.0 and 87.0 %).
# - 20 epochs, all of them, and the last one is the model: the 100 validation clips are
#   too few to pick an epoch by (their best epoch was an early lucky one in two runs of five
#   on 2026-11-29).
# - a conv head of 24 channels instead of 32 (time).
DEMO_SETTINGS = ["feature.num_segments=6", "train.epochs=20", "train.early_stopping_patience=0", "train.select=last",
                 "model.head_channels=24"]


def mixed_precision(feature_device: str) -> list[str]:
    """Mixed precision for the demo: extraction on a GPU only (a GPU trains in mixed
    precision by default). On every CPU the demo runs in float32, the precision its figures
    were measured in (docs/benchmarks.md, "Demo size"): since the stride-4 recipe it fits in
    5 minutes in float32 on a 2-core Zen 3 (250-277 s), and CPUs with native bf16 (a Zen 4)
    ran the earlier float32 recipe in 0.6 of the Zen 3's time; bf16 there (what the demo
    asked for until 2026-11-30) would make its numbers differ by CPU, unmeasured."""
    from .device import resolve_device

    return ["feature.amp=true"] if resolve_device(feature_device).type == "cuda" else []


def demo_configs(out: Path, seed: int = 0, overrides: list[str] | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """The demo's two configs (``bilstm``, ``meanpool``): configs/synthetic.yaml, then
    :data:`DEMO_SETTINGS` (and :func:`mixed_precision` for the devices the configs name),
    the demo's paths under ``out``, and the user's ``overrides`` (which win, paths included)."""
    data = out / "synthetic"
    given = {parse_override(o)[0] for o in overrides or []}

    def paths(name: str) -> dict[str, str]:
        wanted = {"data.train": str(data / "train"), "data.val": str(data / "val"), "data.test": str(data / "test"),
                  "work_dir": str(out / name), "feature.cache_dir": str(out / "features")}
        return {key: value for key, value in wanted.items() if key not in given}

    def config(name: str, precision: list[str]) -> Any:
        return load_config(  # configs/synthetic.yaml, found next to the package
            "synthetic", [f"model.name={name}", f"train.seed={seed}", f"train.progress={progress}", *DEMO_SETTINGS,
                          *precision, *(overrides or [])], values=paths(name))

    first = config("bilstm", [])  # the device, as the user's overrides leave it
    precision = mixed_precision(first.feature.device)
    return {name: config(name, precision) for name in ("bilstm", "meanpool")}


def run_demo(out_dir: str | Path = "demo_output", size: str = "demo", seed: int = 0,
             overrides: list[str] | None = None, workers: int = 2, progress: bool = True) -> dict[str, Any]:
    """Run the demo; return the test metrics of both models and the sample prediction."""
    from .evaluation import confusion_png, format_confusion
    from .inference import VideoClassifier
    from .synthetic import make_synthetic
    from .training import train

    out = Path(out_dir)
    t0 = time.perf_counter()
    say = print if progress else (lambda *a, **k: None)

    data = out / "synthetic"
    cfgs = demo_configs(out, seed, overrides, progress)  # first: a bad --set is refused before any clip is written

    say(f"[1/4] writing the temporal-order benchmark ({size}) to {data}")
    make_synthetic(data, seed=seed, workers=workers, progress=progress, **SIZES[size])

    results: dict[str, Any] = {}
    for name, cfg in cfgs.items():
        say(f"[{2 if name == 'bilstm' else 3}/4] training the {name} model "
            + ("(features are extracted first and cached)" if name == "bilstm" else "on the same cached features"))
        results[name] = train(cfg)

    bil, base = results["bilstm"]["test"], results["meanpool"]["test"]
    png = confusion_png(bil["confusion_matrix"], bil["classes"], out / "bilstm" / "confusion.png",
                        title="BiLSTM, synthetic test set")
    say("\n[4/4] results on the held-out test clips")
    say(f"  {'model':<22}{'top-1':>8}{'mean class acc':>17}")
    say(f"  {'BiLSTM (temporal)':<22}{bil['top1'] * 100:>7.1f}%{bil['mean_class_acc'] * 100:>16.1f}%")
    say(f"  {'mean-pool baseline':<22}{base['top1'] * 100:>7.1f}%{base['mean_class_acc'] * 100:>16.1f}%")
    say("  (chance is 10%; a model blind to frame order cannot tell the classes of a pair apart)")
    say("\nBiLSTM confusion matrix:\n" + format_confusion(bil["confusion_matrix"], bil["classes"]))
    say(f"image: {png}")

    clip = sorted((data / "test").rglob("*.mp4"))[0]
    classifier = VideoClassifier.from_checkpoint(out / "bilstm" / "best.pt")
    pred = classifier.predict(clip, top_k=3)
    say(f"\none held-out clip: {clip}  (true class: {clip.parent.name})")
    for label, prob in pred.top:
        say(f"  {prob * 100:6.2f}%  {label}")
    say(f"\ndone in {time.perf_counter() - t0:.0f} s. Next:")
    say(f"  videoact infer {out / 'bilstm' / 'best.pt'} my_videos/            # classify your own videos")
    say("  videoact train --data my_videos/ --work-dir runs/mine      # train on your class-per-folder videos")
    say(f"  videoact stream {out / 'bilstm' / 'best.pt'} --source 0        # live on a webcam")
    return {"bilstm": bil, "meanpool": base, "example": pred.to_dict(), "confusion_png": str(png),
            "seconds": time.perf_counter() - t0}
