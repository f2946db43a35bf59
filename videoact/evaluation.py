"""Classification metrics: top-1/top-5, mean class accuracy, per-class precision and
recall, and the confusion matrix as text and as a PNG."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .atomic import atomic_write_bytes, atomic_write_text


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[C, C]`` counts, rows = true class, columns = predicted class."""
    index = labels.long() * num_classes + pred.long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor, classes: Sequence[str]) -> dict[str, Any]:
    """Metrics from scores ``[N, C]`` and true labels ``[N]``; accuracies are fractions in 0..1."""
    probs, labels = probs.float().cpu(), labels.long().cpu()
    num_classes = len(classes)
    n = len(labels)
    k = min(5, num_classes)
    # Ties go to the lower class index (topk's order among equal scores is torch's to choose).
    topk = probs.sort(dim=1, descending=True, stable=True).indices[:, :k]  # [N, k]
    pred = topk[:, 0]
    cm = confusion_matrix(pred, labels, num_classes)
    support = cm.sum(1)
    predicted = cm.sum(0)
    tp = cm.diag().double()  # float64: 1/3 is written 0.3333333333333333, not float32's 0.3333333432674408
    recall = torch.where(support > 0, tp / support.clamp(min=1), torch.nan)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.nan)
    present = support > 0
    return {
        "num_samples": int(n),
        "top1": float((pred == labels).double().mean()) if n else 0.0,
        "top5": float((topk == labels[:, None]).any(1).double().mean()) if n else 0.0,
        "mean_class_acc": float(recall[present].mean()) if present.any() else 0.0,
        "per_class": {
            name: {
                "precision": None if torch.isnan(precision[i]) else float(precision[i]),
                "recall": None if torch.isnan(recall[i]) else float(recall[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "classes": list(classes),
        "confusion_matrix": cm.tolist(),
    }


def format_confusion(cm: Sequence[Sequence[int]], classes: Sequence[str]) -> str:
    """The confusion matrix as aligned text (rows: true class, columns: predicted)."""
    names = list(classes)
    width = max(3, *(len(str(v)) for row in cm for v in row))
    label_w = max(len(c) for c in names) + 4
    lines = ["rows: true class, columns: predicted class (numbered as the rows)",
             " " * label_w + " ".join(f"{j:>{width}}" for j in range(len(names)))]
    for i, (name, row) in enumerate(zip(names, cm)):
        lines.append(f"{i:>2}  {name:<{label_w - 4}}" + " ".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)


def format_top5(metrics: dict[str, Any]) -> str:
    """``top-5: 93.50%``, or what it means with 5 classes or fewer (always 100 %: the JSON
    keeps 1.0 there, as top-k accuracy is usually defined for k >= C)."""
    c = len(metrics["classes"])
    return f"top-5: {metrics['top5'] * 100:.2f}%" if c > 5 else f"top-5: - ({c} classes)"


def format_report(metrics: dict[str, Any]) -> str:
    """A human-readable summary: accuracies, per-class table, confusion matrix."""
    lines = [
        f"samples: {metrics['num_samples']}",
        f"top-1: {metrics['top1'] * 100:.2f}%   {format_top5(metrics)}   "
        f"mean class accuracy: {metrics['mean_class_acc'] * 100:.2f}%",
        "",
    ]
    width = max([24, *(len(name) for name in metrics["per_class"])])  # Kinetics names run to 40 and more
    lines.append(f"{'class':<{width}} {'precision':>9} {'recall':>9} {'support':>8}")
    for name, m in metrics["per_class"].items():
        p = "-" if m["precision"] is None else f"{m['precision'] * 100:.1f}%"
        r = "-" if m["recall"] is None else f"{m['recall'] * 100:.1f}%"
        lines.append(f"{name:<{width}} {p:>9} {r:>9} {m['support']:>8}")
    classes, cm = metrics["classes"], metrics["confusion_matrix"]
    if len(classes) <= MAX_TEXT_CONFUSION:
        lines += ["", format_confusion(cm, classes)]
    else:  # 101 or 400 columns are no table for a terminal: the pairs that matter, the rest in the JSON/PNG
        lines += ["", f"confusion matrix: {len(classes)} classes (in full in the PNG, and in the metrics JSON "
                      "with --out); the most confused pairs:", format_confused_pairs(cm, classes)]
    return "\n".join(lines)


MAX_TEXT_CONFUSION = 30  # classes: wider, the text matrix no longer fits a terminal line


def format_confused_pairs(cm: Sequence[Sequence[int]], classes: Sequence[str], top: int = 15) -> str:
    """The ``top`` largest off-diagonal counts: ``true -> predicted  count  (share of true)``."""
    counts = np.asarray(cm, dtype=np.int64)
    support = counts.sum(1)
    off = [(int(counts[i, j]), i, j) for i in range(len(classes)) for j in range(len(classes))
           if i != j and counts[i, j] > 0]
    off.sort(key=lambda t: (-t[0], t[1], t[2]))  # ties: by class index, as the metrics break them
    if not off:
        return "  (none: every prediction is right)"
    return "\n".join(f"  {classes[i]} -> {classes[j]}: {n} ({n / support[i] * 100:.0f}% of {classes[i]})"
                     for n, i, j in off[:top])


def confusion_png(cm: Sequence[Sequence[int]], classes: Sequence[str], path: str | os.PathLike,
                  title: str = "confusion matrix") -> Path:
    """Draw the row-normalized confusion matrix with counts into a PNG file (OpenCV, no GUI):
    rows are the true classes, columns the predicted ones; the diagonal green, errors red."""
    import cv2

    cm = np.asarray(cm, dtype=np.float64)
    c = len(classes)
    cell = max(28, min(64, 900 // max(c, 1)))
    label_w = 12 + 8 * max(len(n) for n in classes)
    top = 40 + label_w
    h, w = top + c * cell + 20, label_w + c * cell + 20
    img = np.full((h, w, 3), 255, np.uint8)
    rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, title, (10, 18), font, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "rows: true class, columns: predicted", (10, 34), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for i in range(c):
        for j in range(c):
            shade = int(255 * (1 - rows[i, j]))
            x0, y0 = label_w + j * cell, top + i * cell
            # OpenCV's pixels are BGR: errors red, the diagonal green
            img[y0:y0 + cell - 1, x0:x0 + cell - 1] = (shade, shade, 255) if i != j else (shade, 255, shade)
            if cm[i, j]:
                text = str(int(cm[i, j]))
                colour = (255, 255, 255) if rows[i, j] > 0.6 else (0, 0, 0)
                cv2.putText(img, text, (x0 + 3, y0 + cell // 2 + 4), font, 0.35, colour, 1, cv2.LINE_AA)
        cv2.putText(img, classes[i], (6, top + i * cell + cell // 2 + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    # column labels, written rotated: draw on a strip, rotate it, paste it
    strip = np.full((cell * c, label_w, 3), 255, np.uint8)
    for j, name in enumerate(classes):
        cv2.putText(strip, name, (6, j * cell + cell // 2 + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    rotated = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)  # [label_w, cell*c]
    img[40:40 + label_w, label_w:label_w + c * cell] = rotated
    ok, data = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError(f"{path}: could not encode PNG")
    path = Path(path)
    atomic_write_bytes(path, data.tobytes())
    return path


def save_metrics(metrics: dict[str, Any], path: str | os.PathLike) -> Path:
    path = Path(path)
    atomic_write_text(path, json.dumps(metrics, indent=2) + "\n")
    return path


class EvaluationInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`evaluate`: a KeyboardInterrupt carrying the metrics of the videos
    evaluated before it (``metrics["interrupted"]``: True, ``metrics["not_evaluated"]``: how
    many were left), or ``None`` when none was, so that a long evaluation is not all lost.
    ``failures``: ``(path, reason)`` of the videos that failed before it, also when none
    was evaluated; ``total``: the videos the evaluation had to do."""

    def __init__(self, metrics: dict[str, Any] | None, failures: Sequence[tuple[str, str]] = (),
                 total: int | None = None) -> None:
        super().__init__("interrupted" if metrics is None else
                         f"interrupted after {metrics['num_samples']} videos ({metrics['not_evaluated']} not evaluated)")
        self.metrics = metrics
        self.failures = list(failures)
        self.total = total

    def __reduce__(self) -> tuple:
        return type(self), (self.metrics, self.failures, self.total)


def evaluate(checkpoint: str | os.PathLike, data: str | os.PathLike, *, root: str | os.PathLike | None = None,
             num_clips: int = 1, device: str = "auto", progress: bool = True,
             file_timeout: float | None = None, weights: str | os.PathLike | None = None) -> dict[str, Any]:
    """Evaluate a checkpoint on a class-per-subfolder folder or an annotation list.

    Returns :func:`classification_metrics` plus ``failures`` (videos that could not be read,
    left out of the metrics) and ``problems`` (annotation problems). ``file_timeout``: seconds
    allowed per video (see :meth:`VideoClassifier.predict`). ``weights``: the backbone
    weights' location (see :meth:`VideoClassifier.from_checkpoint`). Ctrl-C raises
    :class:`EvaluationInterrupted` with the metrics of the videos evaluated until then.
    """
    from tqdm import tqdm

    from .datasets import class_labels, load_dataset, none_found_hint
    from .decode import time_limit
    from .inference import VideoClassifier, _check_counts

    _check_counts(1, num_clips)
    file_timeout = time_limit(file_timeout, "file_timeout")  # before the model is loaded
    classifier = VideoClassifier.from_checkpoint(checkpoint, device=device, weights=weights)
    # Integer labels: the training classes file's ids when it had any, else 0-based positions.
    samples, _classes, problems = load_dataset(data, root=root, classes=class_labels(classifier.classes,
                                                                                    classifier.class_ids))
    if not samples and not problems:
        hint = (" (videoact test reads a folder of class sub-folders, or an annotation list; "
                "videoact infer classifies videos without labels)") if os.path.isdir(data) else ""
        raise RuntimeError(f"{data}: no videos found{hint}")
    scored: list[tuple[torch.Tensor, int]] = []  # (probabilities, label): one append per video
    failures: list[tuple[str, str]] = []
    try:
        for sample in tqdm(samples, desc="test", unit="video", disable=not progress, dynamic_ncols=True):
            results, failed = classifier.predict_many([sample.path], num_clips=num_clips, file_timeout=file_timeout)
            # One result or one failure per video, each added in one step: a Ctrl-C between
            # two statements leaves the counts right.
            failures.extend(failed)
            scored.extend((r.probs, sample.label) for r in results)
    except KeyboardInterrupt:
        partial = None
        if scored:
            partial = _metrics(scored, classifier.classes, failures, problems, checkpoint, num_clips)
            partial.update(interrupted=True, not_evaluated=len(samples) - len(scored) - len(failures))
        raise EvaluationInterrupted(partial, failures, len(samples)) from None
    if not scored:  # say why, entry by entry: there are no metrics to carry the reasons
        if not failures and (hint := none_found_hint(data, root, problems)):
            raise RuntimeError(f"{data}: no video could be evaluated{hint} (the first: {problems[0]})")
        reasons = [str(p) for p in problems] + [reason for _, reason in failures]
        shown = "".join(f"\n  {r}" for r in reasons[:20])
        if len(reasons) > 20:
            shown += f"\n  ... {len(reasons) - 20} more"
        raise RuntimeError(f"{data}: no video could be evaluated ({len(failures)} failed, "
                           f"{len(problems)} entries with problems):{shown}")
    return _metrics(scored, classifier.classes, failures, problems, checkpoint, num_clips)


def _metrics(scored: list[tuple[torch.Tensor, int]], classes: Sequence[str], failures: list, problems: list,
             checkpoint: Any, num_clips: int) -> dict[str, Any]:
    """:func:`evaluate`'s result for the ``(probabilities, label)`` pairs scored."""
    probs, labels = zip(*scored)
    metrics = classification_metrics(torch.stack(probs), torch.tensor(labels), classes)
    metrics["failures"] = [{"path": p, "reason": r} for p, r in failures]
    metrics["problems"] = [str(p) for p in problems]
    metrics["checkpoint"] = str(checkpoint)
    metrics["num_clips"] = num_clips
    return metrics
