"""A short training run on generated direction clips: the BiLSTM tells a motion from its
time-reversal, the mean-pool baseline cannot."""
import dataclasses

import pytest
import torch

from videoact.checkpoint import build_model_from_checkpoint, load_checkpoint
from videoact.config import load_config
from videoact.datasets import FeatureDataset, load_dataset
from videoact.synthetic import make_synthetic
from videoact.training import train

PAIR = ("move_left", "move_right")


@pytest.fixture(scope="module")
def direction_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    lists = make_synthetic(root, train_per_class=14, val_per_class=1, test_per_class=12, workers=1, progress=False,
                           classes=PAIR)
    return root, {split: lists[split] for split in ("train", "val", "test")}


def _train(name, root, lists, work):
    cfg = load_config("synthetic", [
        f"data.train={lists['train']}", f"data.val={lists['val']}", f"data.test={lists['test']}", f"data.root={root}",
        f"work_dir={work / name}", f"feature.cache_dir={work / 'cache'}", f"model.name={name}",
        # configs/synthetic.yaml (stride-4 maps at 224 px on a 14x14 grid, the conv head)
        "feature.num_segments=8", "train.epochs=25", "train.batch_size=8",
        "train.early_stopping_patience=0", "train.progress=false", "data.num_workers=0",
    ])
    train(cfg)
    return load_checkpoint(work / name / "last.pt")


def _within_pair_accuracy(ckpt, root, lists, cache):
    """Each test clip and its time-reversal, scored on the two classes of the pair."""
    model = build_model_from_checkpoint(ckpt)
    samples, classes, _ = load_dataset(lists["test"], root=root, classes=ckpt["classes"])
    samples = [dataclasses.replace(s, rel=s.path.resolve().relative_to(root.resolve()).as_posix()) for s in samples]
    dataset = FeatureDataset(samples, cache, num_segments=8, train=False)
    partner = {classes.index(a): classes.index(b) for a, b in (PAIR, PAIR[::-1])}
    correct = total = 0
    with torch.no_grad():
        for i in range(len(dataset)):
            features, label = dataset[i]
            for x, y in ((features, label), (features.flip(0), partner[label])):
                logits = model(x[None])[0]
                correct += int(logits[y] > logits[partner[y]])
                total += 1
    return correct / total


def test_bilstm_beats_the_order_blind_baseline_on_direction(direction_data, tmp_path):
    root, lists = direction_data
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # measured faster than 2 on a busy 2-core machine
    try:
        bilstm = _within_pair_accuracy(_train("bilstm", root, lists, tmp_path), root, lists, tmp_path / "cache")
        meanpool = _within_pair_accuracy(_train("meanpool", root, lists, tmp_path), root, lists, tmp_path / "cache")
    finally:
        torch.set_num_threads(threads)  # the tests after this one run with the usual threads
    # The baseline scores a clip and its reversal identically, so it is right on exactly one of the two.
    assert meanpool == pytest.approx(0.5)
    print(f"within-pair accuracy: BiLSTM {bilstm:.3f}, mean-pool {meanpool:.3f}")
    assert bilstm >= 0.75, f"BiLSTM within-pair accuracy {bilstm:.2f}"
