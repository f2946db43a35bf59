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
