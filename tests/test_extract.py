"""Feature extraction end to end: real videos, real decoders, the real offline backbone."""
import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from faults import descendants_with_open, run_main

from videoact.backbones import create_backbone
from videoact.decode import open_video
from videoact.extract import SamplingSpec, default_batch_size, extract_features, feature_path
from videoact.atomic import is_temporary
from videoact.feature_cache import cache_path, load_features
from videoact.notices import VideoactWarning
from videoact.preprocess import preprocess_frames
from videoact.testing import write_coded_video

SIZE = "64"  # small input size keeps the real backbone fast on 2 cores


def make_folder(root: Path, n: int = 4, frames: int = 30) -> list[Path]:
    paths = []
    for i in range(n):
        ext = ".avi" if i % 3 == 2 else ".mp4"
        paths.append(write_coded_video(root / f"class{i % 2}" / f"clip{i}{ext}", frames + 3 * i))
    return paths


def test_features_match_backbone_on_the_same_frames(tmp_path):
    videos = make_folder(tmp_path / "v", n=2, frames=20)
    result = extract_features(videos, tmp_path / "out", root=tmp_path / "v", image_size=64,
                              sampling=SamplingSpec(mode="uniform", num_segments=8), num_workers=1,
                              batch_size=5, progress=False)
    assert result.ok and len(result.written) == 2
    backbone = create_backbone("efficientnet_lite0")
    for video in videos:
        cached = load_features(tmp_path / "out" / video.parent.name / (video.name + ".safetensors"))
        with open_video(video) as reader:
            expected_idx = SamplingSpec(mode="uniform", num_segments=8).indices(len(reader), reader.fps)
            clip = reader.get(expected_idx)
        assert cached.frame_indices.tolist() == expected_idx
        with torch.inference_mode():
            ref = backbone(preprocess_frames(clip.frames, 64, backbone.mean, backbone.std))
        assert cached.features.shape == (8, backbone.feature_dim)
        torch.testing.assert_close(cached.features.float(), ref, atol=2e-2, rtol=1e-2)
        meta = cached.metadata
        assert meta["backbone"] == "efficientnet_lite0" and meta["image_size"] == 64
        assert meta["source_size"] == video.stat().st_size
        assert meta["sampling"]["mode"] == "uniform" and "videoact_version" in meta
    # a ready module at another image size: the same features, and the caller's module keeps its size
    again = extract_features(videos, tmp_path / "again", root=tmp_path / "v", backbone=backbone, image_size=64,
                             sampling=SamplingSpec(mode="uniform", num_segments=8), num_workers=1, batch_size=5,
                             progress=False)
    assert again.ok and backbone.input_size == 224
    name = Path(videos[0].parent.name) / (videos[0].name + ".safetensors")
    assert torch.equal(load_features(tmp_path / "again" / name).features, load_features(tmp_path / "out" / name).features)
    # feature_path says where a video's features went: relative to the root, or without
    # one under __outside__/ by its absolute path
    assert feature_path(tmp_path / "out", videos[0], root=tmp_path / "v") == tmp_path / "out" / name
    bare = extract_features(videos, tmp_path / "bare", image_size=64, num_workers=1, batch_size=5,
                            progress=False, sampling=SamplingSpec(mode="uniform", num_segments=8))
    where = feature_path(tmp_path / "bare", videos[0])
    assert bare.ok and where.is_relative_to(tmp_path / "bare" / "__outside__")
    assert torch.equal(load_features(where).features, load_features(tmp_path / "out" / name).features)


def test_default_batch_holds_at_most_64_frames_of_224_px_on_a_cpu():
    # Larger CPU batches of large frames ran 3x slower (docs/benchmarks.md, item 12).
    assert default_batch_size("cpu", 224) == 64
    assert default_batch_size("cpu", 64) == 64  # never more than 64
    assert default_batch_size("cpu", 448) == 16
    assert default_batch_size("cpu", 384) == 21
    assert default_batch_size("cpu", 4000) == 1
    assert default_batch_size("cuda", 448) == 64
    assert default_batch_size(torch.device("cpu"), 448) == 16


def test_bad_files_are_reported_and_the_rest_succeed(tmp_path, capsys):
    src = tmp_path / "v"
    good = make_folder(src, n=2, frames=12)
    (src / "class0" / "empty.mp4").write_bytes(b"")
    (src / "class1" / "text.mp4").write_text("this is not a video\n")
    truncated = src / "class1" / "truncated.mp4"
    data = write_coded_video(tmp_path / "full.mp4", 60).read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    out = tmp_path / "out"
    # in this process (the decoding runs in the two worker processes all the same)
    proc = run_main(capsys, "extract", src, out, "--image-size", SIZE, "--workers", "2", "--no-progress")
    assert proc.returncode == 1, proc.stderr
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    failed = {Path(f["path"]).name for f in failures}
    assert {"empty.mp4", "text.mp4"} <= failed
    for f in failures:
        assert f["path"] in f["reason"]  # each message names its file
    assert "empty.mp4" in proc.stderr and "text.mp4" in proc.stderr
    for video in good:
        assert (out / video.parent.name / (video.name + ".safetensors")).exists()
    # A truncated file is either read up to where it breaks or reported: never a crash.
    assert (out / "class1" / "truncated.mp4.safetensors").exists() or "truncated.mp4" in failed


def test_a_backbone_with_its_head_is_not_taken_for_features(tmp_path):
    """Same name, weights and pooling, but one returns ImageNet logits (keep_head): its cache
    [T, 1000] was "up to date" for the features' [T, 512] (training then took D = 1000)."""
    videos = make_folder(tmp_path / "v", n=1, frames=6)
    kw = dict(root=tmp_path / "v", num_workers=0, progress=False, image_size=32)
    torch.manual_seed(0)  # the same random weights, so the same weights id
    head = create_backbone("resnet18", pretrained=False, keep_head=True)
    extract_features(videos, tmp_path / "out", backbone=head, **kw)
    assert load_features(cache_path(tmp_path / "out", "class0/clip0.mp4")).features.shape[1] == 1000
    torch.manual_seed(0)
    plain = create_backbone("resnet18", pretrained=False)
    assert plain.weights_id == head.weights_id
    with pytest.warns(VideoactWarning, match="feature_dim: 1000 -> 512"):
        again = extract_features(videos, tmp_path / "out", backbone=plain, **kw)
    assert len(again.written) == 1
    assert load_features(cache_path(tmp_path / "out", "class0/clip0.mp4")).features.shape[1] == 512


def test_two_random_initialisations_do_not_share_a_cache(tmp_path):
    """Random-weight backbones were all "random": features of one initialisation were taken
    as up to date for another. The id names the weights; the same seed gives the same one."""
    videos = make_folder(tmp_path / "v", n=1, frames=6)
    kw = dict(root=tmp_path / "v", num_workers=0, progress=False, image_size=32)
    target = cache_path(tmp_path / "out", "class0/clip0.mp4")
    torch.manual_seed(0)
    first = create_backbone("resnet18", pretrained=False)
    assert len(extract_features(videos, tmp_path / "out", backbone=first, **kw).written) == 1
    features = load_features(target).features
    torch.manual_seed(1)
    other = create_backbone("resnet18", pretrained=False)
    assert other.weights_id != first.weights_id
    with pytest.warns(VideoactWarning, match="weights: 'resnet18:random:"):
        assert len(extract_features(videos, tmp_path / "out", backbone=other, **kw).written) == 1
    assert not torch.equal(load_features(target).features, features)
    torch.manual_seed(1)
    again = create_backbone("resnet18", pretrained=False)
    assert again.weights_id == other.weights_id
    assert len(extract_features(videos, tmp_path / "out", backbone=again, **kw).written) == 0


def test_a_backbone_with_other_normalization_does_not_reuse_the_cache(tmp_path):
    """A library user who sets ``backbone.mean``/``std`` by hand (their own weights' statistics)
    got the default-normalized features back from the cache as up to date."""
    videos = make_folder(tmp_path / "v", n=1, frames=6)
    kw = dict(root=tmp_path / "v", num_workers=0, progress=False, image_size=32)
    backbone = create_backbone("resnet18", pretrained=False)
    first = extract_features(videos, tmp_path / "out", backbone=backbone, **kw)
    assert len(first.written) == 1 and first.settings["normalization"] == "default"
    target = cache_path(tmp_path / "out", "class0/clip0.mp4")
    default_features = load_features(target).features
    backbone.mean, backbone.std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    with pytest.warns(VideoactWarning, match="normalization: 'default' -> "):
        again = extract_features(videos, tmp_path / "out", backbone=backbone, **kw)
    assert len(again.written) == 1, "made with other normalization: extracted again"
    assert again.settings["normalization"] == {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    assert not torch.equal(load_features(target).features, default_features)
    assert len(extract_features(videos, tmp_path / "out", backbone=backbone, **kw).written) == 0


def test_a_current_cache_draws_no_progress_bar(tmp_path, capsys):
    """A run with nothing to extract (the demo's baseline, a resumed training) drew an empty
    "extract: 0video" bar."""
    videos = make_folder(tmp_path / "v", n=2, frames=6)
    kw = dict(root=tmp_path / "v", image_size=32, num_workers=0)
    assert len(extract_features(videos, tmp_path / "out", progress=True, **kw).written) == 2
    assert "extract: 100%" in capsys.readouterr().err
    assert len(extract_features(videos, tmp_path / "out", progress=True, **kw).skipped) == 2
    assert capsys.readouterr().err == ""


def test_features_cached_under_another_root_are_not_extracted_again(tmp_path):
    """A training run keys its cache relative to the common folder of its splits: adding a
    --test beside the training folder moved that folder up, and every training video was
    extracted again under its new name."""
    train = make_folder(tmp_path / "syn" / "train", n=2, frames=6)
    test = make_folder(tmp_path / "syn" / "test", n=1, frames=6)
    kw = dict(image_size=32, num_workers=0, progress=False)
    out = tmp_path / "features"
    assert len(extract_features(train, out, root=tmp_path / "syn" / "train", **kw).written) == 2
    both = extract_features(train + test, out, root=tmp_path / "syn", **kw)
    assert both.written == [str(test[0])] and both.skipped == [str(v) for v in train]
    old, new = out / "class0" / "clip0.mp4.safetensors", out / "train" / "class0" / "clip0.mp4.safetensors"
    assert torch.equal(load_features(old).features, load_features(new).features)
    # and the other way round: keys relative to the training folder, from the common one's
    fresh = tmp_path / "fresh"
    assert len(extract_features(train + test, fresh, root=tmp_path / "syn", **kw).written) == 3
    assert len(extract_features(train, fresh, root=tmp_path / "syn" / "train", **kw).skipped) == 2
    # only features of the video as it is: a changed one is extracted again
    third = tmp_path / "third"
    assert len(extract_features(train, third, root=tmp_path / "syn" / "train", **kw).written) == 2
    write_coded_video(train[1], 9)
    again = extract_features(train, third, root=tmp_path / "syn", **kw)
    assert again.written == [str(train[1])] and again.skipped == [str(train[0])]


def test_changed_source_is_extracted_again(tmp_path, capsys):
    src = tmp_path / "v"
    videos = make_folder(src, n=2, frames=10)
    kw = dict(root=src, image_size=64, num_workers=0, progress=False)
    first = extract_features(videos, tmp_path / "out", **kw)
    assert len(first.written) == 2
    write_coded_video(videos[0], 14)  # rewritten: new size and mtime
    with pytest.warns(VideoactWarning, match=r"^1 cached feature file\(s\) in .*: the video changed\)$"):
        second = extract_features(videos, tmp_path / "out", **kw)  # no advice on cache folders: not the cause
    assert second.written == [str(videos[0])] and second.skipped == [str(videos[1])]
    # other settings make a different cache, replacing the files, and say so
    with pytest.warns(VideoactWarning, match=r"^2 cached feature file\(s\) in .*pooling: 'avg' -> 'grid2'.*"
                                             r"give each feature setting its own cache folder$"):
        third = extract_features(videos, tmp_path / "out", pooling="grid2", **kw)
    assert len(third.written) == 2
    assert capsys.readouterr().err == ""  # said once, as a warning a program can filter
    assert load_features(tmp_path / "out" / "class0" / "clip0.mp4.safetensors").features.shape[1] == 4 * 1280
    # so does another backbone layer; the cache records it
    with pytest.warns(VideoactWarning, match="layer: 'last"):
        fourth = extract_features(videos, tmp_path / "out", pooling="grid2", layer="penultimate", **kw)
    assert len(fourth.written) == 2
    cached = load_features(tmp_path / "out" / "class0" / "clip0.mp4.safetensors")
    assert cached.features.shape[1] == 4 * 320 and cached.metadata["layer"] == "penultimate"
    # one path, as a str or a Path, is one video (not a sequence of its characters)
    for one in (str(videos[1]), videos[1]):
        single = extract_features(one, tmp_path / "one", **kw)
        assert single.failed == [] and len(single.written) + len(single.skipped) == 1


def test_unusable_devices_are_refused_up_front(tmp_path, capsys):
    from videoact.device import DeviceError, resolve_device

    missing = "cuda:99"  # not on this machine, with or without CUDA
    with pytest.raises(DeviceError, match="device 'cuda:99': "):
        resolve_device(missing)
    with pytest.raises(DeviceError, match="device 'gpu0': not a device name"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="device 'cuda': CUDA is not available here"):
            resolve_device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")
    make_folder(tmp_path / "v", n=1, frames=4)
    for device in (missing, "gpu0"):
        proc = run_main(capsys, "extract", tmp_path / "v", tmp_path / "out", "--device", device)
        assert proc.returncode == 2 and f"videoact extract: device '{device}': " in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


@pytest.mark.skipif(not (Path(__file__).resolve().parents[2] / "shared" / "testvideos").is_dir(),
                    reason="../shared/testvideos not present")
def test_awkward_real_files(tmp_path):
    shared = Path(__file__).resolve().parents[2] / "shared" / "testvideos"
    names = ["no_duration.webm", "corrupted.mp4", "video_90.mov", "unordered.mov", "h265_video.mp4"]
    videos = [shared / n for n in names]
    result = extract_features(videos, tmp_path / "out", root=shared, image_size=64, num_workers=1,
                              sampling=SamplingSpec(mode="uniform", num_segments=4), progress=False,
                              file_timeout=120)
    assert not result.failed, result.failed
    for n in names:
        cached = load_features(tmp_path / "out" / (n + ".safetensors"))
        assert cached.features.shape == (4, 1280) and torch.isfinite(cached.features.float()).all()


@pytest.mark.skipif(not (Path(__file__).resolve().parents[2] / "shared" / "testvideos").is_dir(),
                    reason="../shared/testvideos not present")
def test_fps_sampling_follows_the_frames_timestamps(tmp_path):
    """fps sampling took index / average rate as each frame's time: on a variable-frame-rate
    video (corpus var_fps_video.mp4, 20.09 fps on average) the frames picked were up to
    0.5 s off. Extraction and inference now pick by the frames' own timestamps."""
    from faults import write_tiny_checkpoint
    from videoact.inference import VideoClassifier
    from videoact.sampling import fps_indices, timestamp_indices, uniform_segments

    video = Path(__file__).resolve().parents[2] / "shared" / "testvideos" / "var_fps_video.mp4"
    with open_video(video) as reader:
        expected = timestamp_indices(reader.timestamps(), 8.0)
        assert expected[:6] == [0, 3, 7, 11, 15, 18]
        assert fps_indices(len(reader), reader.fps, 8.0)[:6] == [0, 2, 5, 7, 10, 12]  # what was taken
    spec = SamplingSpec(mode="fps", target_fps=8.0)
    result = extract_features([video], tmp_path / "out", root=video.parent, image_size=32, sampling=spec,
                              num_workers=0, progress=False, device="cpu")
    assert result.ok and load_features(cache_path(tmp_path / "out", video.name)).frame_indices.tolist() == expected
    tiny = VideoClassifier.from_checkpoint(write_tiny_checkpoint(tmp_path / "tiny.pt"), device="cpu")
    clf = VideoClassifier(tiny.model, tiny.classes, {**tiny.feature, "sampling": {"mode": "fps", "target_fps": 8.0}},
                          "cpu")
    assert clf.predict(video).frame_indices == [expected[i] for i in uniform_segments(len(expected), 4)]


def _chunks_by_video(dataset) -> dict[int, list]:
    seen: dict[int, list] = {}
    for item in dataset:
        seen.setdefault(item["video"], []).append(
            item["error"] if "error" in item else (item["indices"].tolist(), item["frames"].numpy().copy(), item["last"]))
    return seen


def test_side_by_side_decoding_reads_what_one_thread_reads(tmp_path):
    """Main-process decoding with two threads (two videos at a time, in lock step) yields,
    per video, the same chunks in the same order as one thread, and a bad file in the
    middle is one error item while the files after it are still read."""
    from videoact.extract import _VideoChunks

    videos = make_folder(tmp_path / "v", n=5, frames=20)
    bad = tmp_path / "v" / "bad.mp4"
    bad.write_text("not a video\n")
    paths = [str(p) for p in videos[:2]] + [str(bad)] + [str(p) for p in videos[2:]]
    sampling = SamplingSpec(mode="uniform", num_segments=8)
    # chunk_frames=3: several chunks per video, so the lock step spans many steps
    one = _chunks_by_video(_VideoChunks(paths, sampling, 3, "auto", 30.0, inline_threads=1))
    two = _chunks_by_video(_VideoChunks(paths, sampling, 3, "auto", 30.0, inline_threads=2))
    assert sorted(one) == sorted(two) == list(range(len(paths)))
    for video in range(len(paths)):
        if video == 2:
            assert len(two[2]) == 1 and isinstance(two[2][0], str) and "bad.mp4" in two[2][0]
            continue
        assert len(one[video]) == len(two[video]) >= 3
        for (idx1, frames1, last1), (idx2, frames2, last2) in zip(one[video], two[video]):
            assert idx1 == idx2 and last1 == last2
            assert (frames1 == frames2).all()
        assert [last for _, _, last in two[video]] == [False] * (len(two[video]) - 1) + [True]


def test_side_by_side_decoding_stops_cleanly_when_the_caller_stops(tmp_path):
    """Extraction stops reading as soon as every video has ended; the decode threads end
    with the generator instead of lingering to interpreter exit."""
    import threading

    from videoact.extract import _VideoChunks

    paths = [str(p) for p in make_folder(tmp_path / "v", n=4, frames=12)]
    before = set(threading.enumerate())
    chunks = iter(_VideoChunks(paths, SamplingSpec(mode="uniform", num_segments=4), 64, "auto", 30.0,
                               inline_threads=2))
    first = next(chunks)
    assert "frames" in first
    chunks.close()
    left = [t for t in set(threading.enumerate()) - before if t.name == "videoact-decode"]
    assert not left, left


def test_a_video_replaced_while_it_is_extracted_is_extracted_again(tmp_path, monkeypatch):
    """The cache records the video's size and mtime from before decoding: a video replaced
    in between (a finished upload, `mv new.mp4 a.mp4`) is stale on the next run. It was
    recorded after, so the new file's stat vouched for the old file's features."""
    import videoact.preprocess

    src = tmp_path / "v"
    write_coded_video(src / "a.mp4", 10)
    write_coded_video(tmp_path / "new.mp4", 30)
    real = videoact.preprocess.preprocess_frames

    def preprocess_then_replace(*args, **kwargs):  # the replacement lands while a.mp4 is processed
        if (tmp_path / "new.mp4").exists():
            os.replace(tmp_path / "new.mp4", src / "a.mp4")
        return real(*args, **kwargs)

    monkeypatch.setattr(videoact.preprocess, "preprocess_frames", preprocess_then_replace)
    kw = dict(root=src, image_size=32, num_workers=0, progress=False, device="cpu")
    assert len(extract_features([src / "a.mp4"], tmp_path / "out", **kw).written) == 1
    assert load_features(tmp_path / "out" / "a.mp4.safetensors").metadata["num_frames"] == 10
    with pytest.warns(VideoactWarning, match="a.mp4.safetensors: the video changed"):
        again = extract_features([src / "a.mp4"], tmp_path / "out", **kw)
    assert again.written == [str(src / "a.mp4")]
    assert load_features(tmp_path / "out" / "a.mp4.safetensors").metadata["num_frames"] == 30


def test_extract_command_takes_one_video_and_refuses_bad_counts(tmp_path, capsys):
    from videoact.cli import main

    video = write_coded_video(tmp_path / "v" / "a.mp4", 6)
    assert main(["extract", str(video), str(tmp_path / "out"), "--image-size", "32", "--workers", "0",
                 "--no-progress", "--device", "cpu"]) == 0
    assert (tmp_path / "out" / "a.mp4.safetensors").exists()
    for option in ("--max-frames", "--image-size", "--batch-size"):
        with pytest.raises(SystemExit) as info:  # a usage error before any work
            main(["extract", str(video), str(tmp_path / "out2"), option, "0"])
        assert info.value.code == 2
        assert f"argument {option}: must be a whole number >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()


def test_extract_reads_a_list_of_paths_without_labels(tmp_path, capsys):
    """Features need no labels: a list of bare paths (UCF101's test lists), or with integer
    labels and no classes file, was refused line by line (malformed) and nothing extracted,
    though `videoact check` read it."""
    for name in ("a.mp4", "b c.mp4", "d.mp4"):
        write_coded_video(tmp_path / "v" / name, 4)
    listing = tmp_path / "v" / "list.txt"
    listing.write_text("a.mp4\nb c.mp4\nd.mp4 3\n")
    proc = run_main(capsys, "extract", listing, tmp_path / "out", "--image-size", "32", "--workers", "0",
                    "--no-progress", "--device", "cpu")
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.safetensors")) == \
        ["a.mp4.safetensors", "b c.mp4.safetensors", "d.mp4.safetensors"]


def test_extract_reports_the_list_entries_it_cannot_extract(tmp_path, capsys):
    """A list's missing video was a warning above the summary, `failed 0`, exit 0 and not
    in failures.jsonl: now a failure like an unreadable video. An entry refused (outside
    the root) is counted at the end too, and exits 1, as `videoact test` does."""
    write_coded_video(tmp_path / "v" / "a.mp4", 4)
    listing = tmp_path / "v" / "list.txt"
    listing.write_text(f"a.mp4 x\ngone.mp4 y\n{tmp_path / 'elsewhere.mp4'} z\na.mp4 x\n")
    out = tmp_path / "out"
    proc = run_main(capsys, "extract", listing, out, "--image-size", "32", "--workers", "0", "--no-progress",
                    "--device", "cpu")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "extracted 1 videos" in proc.stdout and "failed 1" in proc.stdout
    gone = tmp_path / "v" / "gone.mp4"
    assert f"failures (also in {out / 'failures.jsonl'}):\n  {gone}: file not found\n" in proc.stderr
    assert f"{listing}:3: outside_root" in proc.stderr and f"{listing}:4: duplicate" in proc.stderr
    assert proc.stderr.endswith("left out: 1 list entries with problems (warnings above)\n")  # not the duplicate
    assert [json.loads(line)["path"] for line in (out / "failures.jsonl").read_text().splitlines()] == [str(gone)]
    no_root = run_main(capsys, "extract", listing, out, "--root", tmp_path / "nowhere")
    assert no_root.returncode == 2 and f"{tmp_path / 'nowhere'}: dataset root of {listing} not found" in no_root.stderr


def test_a_failure_log_that_cannot_be_written_still_leaves_the_summary(tmp_path, capsys):
    """failures.jsonl not writable at the end (a full disk; here a folder in its place) was
    the run's only message, exit 2: the failed videos were never named, nor what was written."""
    write_coded_video(tmp_path / "v" / "a.mp4", 4)
    (tmp_path / "v" / "bad.mp4").write_bytes(b"")
    (tmp_path / "out" / "failures.jsonl").mkdir(parents=True)
    proc = run_main(capsys, "extract", tmp_path / "v", tmp_path / "out", "--image-size", "32", "--workers", "0",
                    "--no-progress", "--device", "cpu")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "extracted 1 videos" in proc.stdout and "failed 1" in proc.stdout
    assert f"failures:\n  {tmp_path / 'v' / 'bad.mp4'}: " in proc.stderr
    assert f"videoact extract: the failure log {tmp_path / 'out' / 'failures.jsonl'}: could not be written " \
           "([Errno 21] Is a directory)" in proc.stderr
    assert (tmp_path / "out" / "a.mp4.safetensors").is_file()


def test_decode_workers_end_with_their_parent_and_with_an_interrupted_call(tmp_path, monkeypatch):
    """A parent killed while its decode workers still imported torch left them running for
    ever (their parent was then init, which torch's watchdog took for theirs); and Ctrl-C in
    a library call (IPython keeps the traceback) left the call's workers running."""
    import multiprocessing
    import subprocess
    import sys

    code = ("import os; from videoact.extract import _worker_init; _worker_init(os.getppid(), 0); "
            "print('kept', flush=True); _worker_init(os.getpid(), 0); print('not ended')")  # not its parent
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    write_coded_video(tmp_path / "a.mp4", 4)  # meanwhile (it imports torch)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("videoact.preprocess.preprocess_frames", interrupted)  # Ctrl-C at the first chunk
    with pytest.raises(KeyboardInterrupt) as info:
        extract_features([tmp_path / "a.mp4"], tmp_path / "out", image_size=32, num_workers=1, device="cpu",
                         progress=False)
    assert info.tb is not None  # kept, with the call's frames
    assert multiprocessing.active_children() == []  # its decode worker
    out, err = proc.communicate(timeout=120)
    assert (proc.returncode, out) == (1, "kept\n"), err[-2000:]


def test_extract_of_a_folder_takes_a_root_to_match_training_cache_keys(tmp_path, capsys):
    """Training with --data train/ --val val/ keys its cache from the folder holding both;
    extract of a folder keyed from the folder itself and ignored --root, so a cache filled
    beforehand (train/ and val/ extracted apart, even colliding) was extracted again."""
    from videoact.cli import main
    from videoact.datasets import load_dataset
    from videoact.training import cache_root

    data = tmp_path / "data"
    for split in ("train", "val"):
        write_coded_video(data / split / "a" / "clip.mp4", 6)
    common = ["--image-size", "32", "--workers", "0", "--no-progress", "--device", "cpu"]
    for split in ("train", "val"):
        assert main(["extract", str(data / split), str(tmp_path / "cache"), "--root", str(data), *common]) == 0
    samples = [s for split in ("train", "val") for s in load_dataset(data / split)[0]]
    assert cache_root(samples, None) == data  # what training keys from
    assert sorted(p.relative_to(tmp_path / "cache").as_posix() for p in (tmp_path / "cache").rglob("*.safetensors")) \
        == ["train/a/clip.mp4.safetensors", "val/a/clip.mp4.safetensors"]
    assert main(["extract", str(data / "train"), str(tmp_path / "other"), "--root", str(data / "val"), *common]) == 2
    assert "is not inside --root" in capsys.readouterr().err and not (tmp_path / "other").exists()


def test_a_video_named_twice_is_extracted_once(tmp_path):
    """A symlink to a video resolves to the video's cache file: it was decoded twice and
    counted as two extracted videos for one file."""
    src = tmp_path / "v"
    write_coded_video(src / "a.mp4", 6)
    os.symlink("a.mp4", src / "alias.mp4")
    result = extract_features([src / "a.mp4", src / "alias.mp4"], tmp_path / "out", root=src, image_size=32,
                              num_workers=0, progress=False, device="cpu")
    assert result.written == [str(src / "a.mp4")] and result.skipped == [str(src / "alias.mp4")]
    assert [p.name for p in (tmp_path / "out").rglob("*.safetensors")] == ["a.mp4.safetensors"]
    # when the video fails, its other name fails with it (training would otherwise keep it, with no features)
    (src / "bad.mp4").write_bytes(b"not a video")
    os.symlink("bad.mp4", src / "bad_alias.mp4")
    result = extract_features([src / "bad.mp4", src / "bad_alias.mp4"], tmp_path / "out", root=src, image_size=32,
                              num_workers=0, progress=False, device="cpu")
    assert [f.path for f in result.failed] == [str(src / "bad.mp4"), str(src / "bad_alias.mp4")]
    assert "the same file as" in result.failed[1].reason and result.skipped == []


def test_sampling_settings_of_another_mode_do_not_make_a_cache_stale(tmp_path):
    """A cache of fps-sampled frames serves training with any num_segments (drawn from the
    cached frames): it was extracted again when num_segments differed from extraction's 16."""
    video = write_coded_video(tmp_path / "v" / "a.mp4", 20)
    kw = dict(root=tmp_path / "v", image_size=32, num_workers=0, progress=False, device="cpu")
    fps8 = SamplingSpec(mode="fps", target_fps=8.0)
    assert len(extract_features([video], tmp_path / "out", sampling=fps8, **kw).written) == 1
    same = dataclasses.replace(fps8, num_segments=4, stride=3)  # fields fps sampling does not use
    assert extract_features([video], tmp_path / "out", sampling=same, **kw).skipped == [str(video)]
    other = dataclasses.replace(fps8, target_fps=4.0)
    with pytest.warns(VideoactWarning, match="'target_fps': 8.0.* -> .*'target_fps': 4.0"):
        assert extract_features([video], tmp_path / "out", sampling=other, **kw).written == [str(video)]
    uniform = [SamplingSpec(mode="uniform", num_segments=n) for n in (4, 4, 6)]
    with pytest.warns(VideoactWarning, match="'num_segments': 4, .* -> .*'num_segments': 6,"):
        assert [len(extract_features([video], tmp_path / "u", sampling=s, **kw).written) for s in uniform] == [1, 0, 1]


def test_videos_named_near_the_file_system_limit_are_extracted(tmp_path):
    """A cache file is named <video name>.safetensors and written as .<that>.tmp-<pid>-<n>:
    video names over about 225 bytes (75 CJK characters) failed with 'File name too long'."""
    src, out = tmp_path / "v", tmp_path / "out"
    names = ["x" * 236 + ".mp4", "视频" * 40 + ".mp4", "y" * 251 + ".mp4"]  # 240, 244 and 255 bytes
    videos = [write_coded_video(src / name, 6) for name in names]
    kw = dict(root=src, image_size=32, num_workers=0, progress=False, device="cpu")
    result = extract_features(videos, out, **kw)
    assert result.ok and result.written == [str(v) for v in videos]
    for name in names:
        assert load_features(cache_path(out, name)).metadata["relative_path"] == name
    assert len({cache_path(out, name) for name in names}) == 3
    assert not [p for p in out.rglob("*") if is_temporary(p)]
    assert extract_features(videos, out, **kw).skipped == [str(v) for v in videos]


def test_several_frames_a_segment_give_temporal_jitter_a_choice(tmp_path):
    """Uniform sampling cached one frame per segment, so training's temporal jitter had
    nothing to choose (every epoch saw the same frames). segment_frames=3 caches 3 a
    segment, the middle one its centre: evaluation sees what it saw with one."""
    from videoact.datasets import FeatureDataset, VideoSample

    video = write_coded_video(tmp_path / "v" / "a" / "clip.mp4", 100)
    kw = dict(root=tmp_path / "v", image_size=32, num_workers=0, progress=False, device="cpu")
    one, three = SamplingSpec(mode="uniform", num_segments=4), SamplingSpec(mode="uniform", num_segments=4,
                                                                            segment_frames=3)
    assert extract_features([video], tmp_path / "one", sampling=one, **kw).ok
    assert extract_features([video], tmp_path / "three", sampling=three, **kw).ok
    cached = load_features(cache_path(tmp_path / "three", "a/clip.mp4"))
    centres = load_features(cache_path(tmp_path / "one", "a/clip.mp4"))
    assert centres.frame_indices.tolist() == [12, 37, 62, 87]
    assert cached.frame_indices.tolist() == [4, 12, 20, 29, 37, 45, 54, 62, 70, 79, 87, 95]
    samples = [VideoSample(video, "a/clip.mp4", 0, "a")]
    ev = FeatureDataset(samples, tmp_path / "three", num_segments=4, train=False)
    assert torch.equal(ev[0][0], centres.features.float())
    seen = set()
    for epoch in range(8):
        ds = FeatureDataset(samples, tmp_path / "three", num_segments=4, train=True, seed=0)
        ds.set_epoch(epoch)
        rows = [next(i for i in range(12) if torch.equal(f, cached.features[i].float())) for f in ds[0][0]]
        assert all(3 * k <= r < 3 * k + 3 for k, r in enumerate(rows))  # one frame of each segment
        seen.add(tuple(rows))
    assert len(seen) > 1
    # the one-frame cache is not current for three frames a segment, and the other way round
    with pytest.warns(VideoactWarning, match="'segment_frames': 1, .* -> .*'segment_frames': 3,"):
        assert extract_features([video], tmp_path / "one", sampling=three, **kw).written == [str(video)]


def test_frames_reported_are_those_of_the_videos_written(tmp_path):
    """The summary's frame count included the frames of videos whose features could not be
    written (here a folder stands where one cache file goes)."""
    src, out = tmp_path / "v", tmp_path / "out"
    videos = [write_coded_video(src / name, 6) for name in ("a.mp4", "b.mp4")]
    cache_path(out, "b.mp4").mkdir(parents=True)
    result = extract_features(videos, out, root=src, image_size=32, num_workers=0, progress=False, device="cpu")
    assert result.written == [str(videos[0])] and [f.path for f in result.failed] == [str(videos[1])]
    assert result.frames == 6



def test_a_later_run_into_the_same_cache_keeps_the_failures_of_videos_it_did_not_touch(tmp_path, monkeypatch):
    """datasets/README extracts the training list, then the test list, into one cache: the
    second run replaced failures.jsonl with its own (none: the file was removed), and the
    first run's failures were no longer recorded. Found by a review (two runs at once)."""
    import json

    from videoact.testing import write_coded_video

    train, test, cache = tmp_path / "train", tmp_path / "test", tmp_path / "cache"
    write_coded_video(train / "good.mp4", 8)
    (train / "broken.mp4").write_bytes(b"not a video at all" * 10)
    write_coded_video(test / "other.mp4", 8)

    def logged() -> list[str]:
        file = cache / "failures.jsonl"
        return [Path(json.loads(line)["path"]).name for line in file.read_text().splitlines()] if file.exists() else []

    assert len(extract_features(sorted(train.iterdir()), cache, root=tmp_path, image_size=32, progress=False).failed) == 1
    assert logged() == ["broken.mp4"]
    assert extract_features([test / "other.mp4"], cache, root=tmp_path, image_size=32, progress=False).ok
    assert logged() == ["broken.mp4"]  # was: [] (the file removed)
    write_coded_video(train / "broken.mp4", 8)  # mended: the next run over it clears its entry,
    monkeypatch.chdir(tmp_path)  # also when it names the video otherwise (relative here, absolute before)
    assert extract_features([Path("train/broken.mp4")], Path("cache"), root=Path("."), image_size=32,
                            progress=False).ok
    assert not (cache / "failures.jsonl").exists()


class _Killer:
    """Kills (SIGKILL, as the out-of-memory killer would) every process under this one
    that opens ``path``, until the block ends."""

    def __init__(self, path: Path, after: Any = None) -> None:
        """``after``: an Event to wait for before the first kill."""
        import threading

        self.path, self.kills, self.stop, self.after = path, [], threading.Event(), after
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import signal
        import time

        while self.after is not None and not self.after.wait(0.05) and not self.stop.is_set():
            pass
        while not self.stop.is_set():
            for pid in descendants_with_open(self.path):
                if pid in self.kills:  # dying: /proc shows its files until it has exited
                    continue
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    self.kills.append(pid)
            time.sleep(0.02)

    def __enter__(self) -> "_Killer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def test_a_decode_worker_that_dies_costs_only_the_file_it_was_reading(tmp_path, monkeypatch):
    """A decode worker killed while reading a file (a decoder crash, the out-of-memory killer)
    stopped the whole extract ("DataLoader worker ... is killed by signal", raised by torch's
    SIGCHLD handler wherever the main thread was: mostly in the backbone), and a rerun met
    the same file again. Now the file is read again alone, and fails when its worker dies
    again; a video half-sent by the other worker starts again; the rest are written as usual."""
    import threading
    import time

    from faults import write_hanging_avi

    import videoact.extract

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs Linux /proc to find the worker reading the file")
    src = tmp_path / "v"
    # Round robin: worker 0 reads long.mp4 (two chunks), worker 1 hang.avi. The loader
    # hands out items in worker order, so long.mp4's first chunk has arrived, and its
    # second waits, when worker 1 is killed in hang.avi's open. The kill lands while the
    # main thread runs the backbone on that first chunk (held there for a second).
    long = write_coded_video(src / "long.mp4", 24)
    hang = write_hanging_avi(src / "hang.avi")
    good = [long, write_coded_video(src / "b.mp4", 10), write_coded_video(src / "c.mp4", 12)]
    options = dict(root=src, image_size=32, sampling=SamplingSpec(mode="uniform", num_segments=8), chunk_frames=4,
                   batch_size=4, device="cpu", progress=False, file_timeout=600)
    in_backbone = threading.Event()
    real = videoact.extract.inference_model

    def held_at_first_call(*args, **kwargs):
        run = real(*args, **kwargs)

        def call(x):
            if not in_backbone.is_set():
                in_backbone.set()
                time.sleep(1.0)
            return run(x)
        return call

    monkeypatch.setattr(videoact.extract, "inference_model", held_at_first_call)
    try:
        with _Killer(hang, after=in_backbone) as killer:
            result = extract_features([long, hang, *good[1:]], tmp_path / "out", num_workers=2, **options)
    finally:
        hang.unlink()
    monkeypatch.undo()
    assert len(killer.kills) == 2  # the first worker and the one that read it alone
    assert sorted(result.written) == sorted(map(str, good))
    assert [(f.path, f.reason) for f in result.failed] == [
        (str(hang), f"{hang}: the decoder crashed on this file twice (its decode worker was killed by SIGKILL; "
                    "then its decode worker was killed by SIGKILL)")]
    log = [json.loads(line) for line in (tmp_path / "out" / "failures.jsonl").read_text().splitlines()]
    assert [entry["path"] for entry in log] == [str(hang)]
    # what was written is what a run without deaths writes
    again = extract_features(good, tmp_path / "again", num_workers=0, **options)
    assert again.ok and len(again.written) == 3
    for video in good:
        name = video.name + ".safetensors"
        first, second = load_features(tmp_path / "out" / name), load_features(tmp_path / "again" / name)
        assert first.frame_indices.tolist() == second.frame_indices.tolist() and len(first.frame_indices) == 8
        assert torch.equal(first.features, second.features), video.name


def test_a_run_killed_in_a_decoder_leaves_the_file_to_be_read_alone_next_time(tmp_path):
    """Decoding in the main process (the default on 2 cores): a decoder crash there ends the
    run, and every rerun met the same file and died again. The journal the dead run left
    names the file; the next run reads it alone in a worker process, where its second
    death costs only that file."""
    import subprocess
    import sys

    from faults import write_hanging_avi

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs Linux /proc to find the process reading the file")
    src = tmp_path / "v"
    good = [write_coded_video(src / "a.mp4", 10), write_coded_video(src / "b.mp4", 12)]
    hang = write_hanging_avi(src / "hang.avi")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "videoact", "extract", str(src), str(out), "--workers", "0", "--image-size",
               "32", "--device", "cpu", "--no-progress", "--timeout", "600"]
    try:
        with _Killer(hang) as killer:
            first = subprocess.run(command, capture_output=True, text=True, timeout=300)
            assert first.returncode == -9 and len(killer.kills) == 1, first.stderr[-2000:]
            journals = list(out.glob(".decoding-*.json"))
            assert len(journals) == 1 and str(hang) in json.loads(journals[0].read_text())["open"], first.stderr[-2000:]
            result = extract_features([*good, hang], out, root=src, image_size=32, num_workers=0, device="cpu",
                                      progress=False, file_timeout=600)
    finally:
        hang.unlink()
    assert len(killer.kills) == 2, first.stderr[-2000:]
    pid = killer.kills[0]
    assert [(f.path, f.reason) for f in result.failed] == [
        (str(hang), f"{hang}: the decoder crashed on this file twice (the run of pid {pid} died while reading it; "
                    "then its decode worker was killed by SIGKILL)")]
    assert sorted(result.written + result.skipped) == sorted(map(str, good))
    assert list(out.glob(".decoding-*")) == []  # the dead run's journal has served; this run's closed


def test_extraction_leaves_the_global_random_state_alone(tmp_path):
    """The decode loader's iter() drew a seed from torch's global generator, so the random
    numbers after an extraction depended on whether it had anything to decode (training:
    a run that found its features cached started from other initial weights)."""
    video = write_coded_video(tmp_path / "a.mp4", 6)
    backbone = create_backbone("efficientnet_lite0")  # ready: no initial weights drawn inside
    torch.manual_seed(0)
    state = torch.get_rng_state()
    result = extract_features([video], tmp_path / "out", backbone=backbone, image_size=32, num_workers=0,
                              device="cpu", progress=False)
    assert result.written == [str(video)] and torch.equal(torch.get_rng_state(), state)


def test_extraction_leaves_a_fine_tuned_backbone_s_modes_alone(tmp_path):
    """A ready module in train mode (a caller fine-tuning it) was switched to eval mode for
    good; with another image_size its inner modules were (a shallow copy), so its BatchNorm
    layers went on fine-tuning with frozen statistics and the module still said training."""
    video = write_coded_video(tmp_path / "a.mp4", 6)
    backbone = create_backbone("efficientnet_lite0", frozen=False).train()
    modes = [m.training for m in backbone.modules()]
    for i, size in enumerate([None, 32]):  # its own size (224), then another
        result = extract_features([video], tmp_path / f"out{i}", backbone=backbone, image_size=size, num_workers=0,
                                  device="cpu", progress=False, sampling=SamplingSpec(mode="uniform", num_segments=2))
        assert result.written == [str(video)] and [m.training for m in backbone.modules()] == modes, size
    assert all(modes) and backbone.input_size == 224


def test_a_decoding_journal_is_a_dead_run_s_only_once_its_lock_is_free(tmp_path):
    """A journal was taken for a live run's while its pid was alive: in a restarted container
    the new first process has the dead one's pid (often 1), so the dead run's journal was
    ignored and the crashing file decoded in the process again; and two containers sharing
    a host name took each other's live journals for dead ones. Now its run's file lock says."""
    from videoact.extract import _DecodingJournal

    journal = _DecodingJournal(tmp_path)
    journal.begin("/videos/a.mp4")
    assert _DecodingJournal.left_by_dead_runs(tmp_path) == []  # its run (this process) is alive
    os.close(journal._fd)  # what the kernel does when the process dies: the lock is free
    journal._fd = None
    # Its pid is this live process's: a pid reused after a restart. Dead all the same.
    assert _DecodingJournal.left_by_dead_runs(tmp_path) == [(journal.path, os.getpid(), ["/videos/a.mp4"])]
    journal.end("/videos/a.mp4")  # the stuck thread's end, much later: no error
