"""Clip-level inference from a checkpoint: ``VideoClassifier.from_checkpoint(path).predict(video)``.

A checkpoint holds the temporal model, the label names and the feature settings
(backbone, weights, layer, pooling, image size, normalization, sampling), so it is enough on
its own. Frames are chosen exactly as for evaluation during training: the cached
frame set of the extraction sampling, then ``num_segments`` segment centres of it.
Features are rounded to float16 like the cached ones, so probabilities agree with
those computed at the end of training.
"""
from __future__ import annotations

import math
import numbers
import os
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from .checkpoint import CheckpointError, build_model_from_checkpoint, load_checkpoint
from .cnn_lstm import CNNLSTM
from .device import autocast_dtype, resolve_device
from .extract import SamplingSpec, default_batch_size
from .fast_inference import inference_model
from .notices import VideoactWarning


def _as_array(frames: Any) -> torch.Tensor | np.ndarray:
    """A tensor as it is, anything else as a numpy array. A decord ``NDArray``
    (``VideoReader.get_batch``) through its ``asnumpy()``: ``np.asarray`` made a 0-d object
    array of it."""
    if isinstance(frames, (torch.Tensor, np.ndarray)):
        return frames
    if callable(getattr(frames, "asnumpy", None)):
        return frames.asnumpy()
    return np.asarray(frames)


def frames_as_tensor(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Frames as a tensor. A numpy view with negative strides (``frames[..., ::-1]``, the
    usual BGR -> RGB flip) is copied: ``torch.as_tensor`` refuses those; so is a read-only
    array (a decoder's buffer, ``np.frombuffer``), on which torch warns at every call."""
    frames = _as_array(frames)
    if isinstance(frames, torch.Tensor):
        return frames
    return torch.as_tensor(np.ascontiguousarray(frames) if frames.flags.writeable else frames.copy())


def _check_counts(top_k: int, num_clips: int) -> None:
    """Refuse bad arguments up front (not as one failure per video, deep in the model)."""
    for name, value in (("top_k", top_k), ("num_clips", num_clips)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def failure_reason(video: str | os.PathLike, exc: BaseException) -> str:
    """One line for a video that could not be classified, naming it once (most decoder
    errors name the file already)."""
    message = str(exc)
    return message if str(video) in message else f"{video}: {message}"


def _frame_rate(fps: Any) -> float:
    """The caller's ``fps`` as a float: anything ``float()`` takes (a numpy or torch
    scalar, a string), finite and > 0; said as ``fps``, the argument's name."""
    try:
        value = float(fps)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond float
        value = math.nan
    if not 0 < value < math.inf:
        raise ValueError(f"fps must be the frames' rate, a positive number, got {fps!r}")
    return value


@dataclass
class Prediction:
    """The result for one video."""

    source: str
    top: list[tuple[str, float]]  # (label, probability), best first
    probs: torch.Tensor  # [C]
    frame_indices: list[int] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.top[0][0]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "label": self.label,
                "top": [{"label": l, "prob": p} for l, p in self.top]}


def write_predictions(predictions: Sequence[Prediction], path: str | os.PathLike,
                      failures: Sequence[tuple[str, str]] = ()) -> Path:
    """Write predictions atomically, and the inputs that failed after them.

    ``failures`` are ``(source, reason)`` pairs, as :meth:`VideoClassifier.predict_many`
    gives them, so the file accounts for every input. ``.csv`` gives
    ``source,rank,label,prob,error`` rows: one per top-k label (``error`` empty), and one
    per failed input (only ``source`` and ``error``). Anything else gives a JSON list of
    :meth:`Prediction.to_dict` objects, then ``{"source": ..., "error": ...}`` objects.
    """
    import csv
    import io
    import json

    from .atomic import atomic_write_text

    path = Path(path)
    rows = [p.to_dict() for p in predictions]
    if path.suffix.lower() == ".csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["source", "rank", "label", "prob", "error"])
        for row in rows:
            for rank, t in enumerate(row["top"], 1):
                writer.writerow([row["source"], rank, t["label"], f"{t['prob']:.6f}", ""])
        for source, reason in failures:
            writer.writerow([source, "", "", "", reason])
        atomic_write_text(path, buf.getvalue())
    else:
        rows += [{"source": source, "error": reason} for source, reason in failures]
        atomic_write_text(path, json.dumps(rows, indent=2) + "\n")
    return path


def segment_positions(length: int, num_segments: int | None, clip: int = 0, num_clips: int = 1) -> list[int]:
    """Positions in ``range(length)`` for ``num_segments`` segments.

    ``num_clips == 1`` gives the segment centres (as evaluation in training does);
    clip ``k`` of ``K`` takes the point ``(k + 0.5) / K`` of the way through each segment.
    ``num_segments=None`` keeps every position.
    """
    if num_segments is None:
        return list(range(length))
    if num_clips == 1:
        from .sampling import uniform_segments

        return list(uniform_segments(length, num_segments, train=False))
    offset = (clip + 0.5) / num_clips
    return [min(length - 1, int((i + offset) * length / num_segments)) for i in range(num_segments)]


# One lock per temporal module (classifiers can share one): predict_features switches its
# mode to eval and back, and two threads doing so at once left it in eval mode for good
# (the second saved the first one's eval() as the mode to restore) and ran with dropout.
_MODE_LOCKS: "weakref.WeakKeyDictionary[torch.nn.Module, threading.Lock]" = weakref.WeakKeyDictionary()
_MODE_LOCKS_GUARD = threading.Lock()


def _mode_lock(module: torch.nn.Module) -> threading.Lock:
    with _MODE_LOCKS_GUARD:
        lock = _MODE_LOCKS.get(module)
        if lock is None:
            lock = _MODE_LOCKS[module] = threading.Lock()
        return lock


class VideoClassifier:
    """Backbone + temporal model + labels, ready to classify videos or frame arrays.

    Frames go through a copy of the backbone made for inference when the classifier is
    made (:func:`videoact.fast_inference.inference_model`, as extraction runs it): make a new
    classifier after changing the backbone's weights or input size. ``model`` itself is
    used in place and moved to ``device``; its train/eval mode is left as it is (a model
    still training keeps its dropout), as predictions run the temporal model in eval mode
    and the backbone's eval-mode copy."""

    def __init__(self, model: CNNLSTM, classes: Sequence[str], feature: dict[str, Any],
                 device: str | torch.device = "auto", checkpoint_path: str | None = None,
                 class_ids: Sequence[int] | None = None) -> None:
        device = resolve_device(device)
        if len(classes) != model.temporal.num_classes:
            raise ValueError(f"{len(classes)} class names for a model with {model.temporal.num_classes} outputs")
        self.model = model.to(device)
        self.model.backbone.to(memory_format=torch.channels_last)
        # BatchNorm folded and, on the CPU, activations fused into the convolutions: the
        # arithmetic of the feature cache, and 1.5-1.8x faster (Lite0 at 448 px, 2 cores).
        self._frames_to_features = inference_model(self.model.backbone, device)
        self.classes = list(classes)
        # The ids of the classes file it was trained with (classInd.txt), for integer-labelled lists.
        self.class_ids = None if class_ids is None else list(class_ids)
        self.feature = dict(feature)
        self.device = device
        self.checkpoint_path = checkpoint_path
        self.sampling = SamplingSpec(**self.feature.get("sampling", {}))
        self.num_segments = self.feature.get("num_segments")
        # Features made in mixed precision (feature.amp) are recomputed so where this
        # device has it natively; else in float32, which differs from them by rounding only.
        self.amp_dtype = autocast_dtype(device, self.feature.get("precision", "float32") != "float32")

    # The inference copy of the backbone is not pickled (its fused convolutions hold
    # per-thread state): a pickled or spawned classifier makes its own again.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_frames_to_features"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._frames_to_features = inference_model(self.model.backbone, self.device)

    @property
    def backbone(self) -> torch.nn.Module:
        """The per-frame backbone ``[N, 3, H, W] -> [N, D]`` (the trained one, not the inference copy)."""
        return self.model.backbone

    @property
    def temporal(self) -> torch.nn.Module:
        """The temporal model ``([B, T, D], lengths [B]) -> logits [B, C]``."""
        return self.model.temporal

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "auto",
                        weights: str | os.PathLike | None = None) -> "VideoClassifier":
        """Load ``best.pt``/``last.pt``.

        The backbone gets the weights recorded at training: the package's (Lite0), the
        torchvision enum, or a weights file, looked for where it was and, failing that,
        by its name next to the checkpoint (a run folder copied to another machine).
        ``weights`` gives another location. Weights other than the training ones (a file
        changed since) are refused unless ``weights`` is given, then only warned about.
        """
        # Building the models draws their random initial weights (then overwritten): from a
        # forked generator, so that loading leaves the caller's seeded random stream as it was.
        with torch.random.fork_rng(devices=[]):
            return cls._load(path, device, weights)

    @classmethod
    def _load(cls, path: str | os.PathLike, device: str | torch.device,
              weights: str | os.PathLike | None) -> "VideoClassifier":
        from .backbones import WeightsNotFoundError, _is_file_spec, create_backbone, same_weights

        ckpt = load_checkpoint(path)
        feature = dict(ckpt["feature"])
        temporal = build_model_from_checkpoint(ckpt, path)
        chosen = weights if weights is not None else feature.get("weights")
        recorded_file = weights is None and chosen is not None and _is_file_spec(chosen)
        # The file of that name next to the checkpoint (a run folder copied, from Windows too).
        beside = (Path(path).parent / (PureWindowsPath(chosen).name if "\\" in str(chosen) else Path(chosen).name)
                  if recorded_file else None)
        if beside is not None and not Path(chosen).expanduser().is_file():
            if not beside.is_file():
                raise WeightsNotFoundError(
                    f"{path}: the backbone weights file it was trained with, {chosen}, is not there (nor "
                    f"{beside}); pass its location (--weights FILE, or weights=...)")
            chosen = beside

        def build(weights_file: Any) -> Any:
            return create_backbone(feature["backbone"], pretrained=True, weights=weights_file,
                                   pooling=feature["pooling"], layer=feature.get("layer", "last"))

        backbone = build(chosen)
        recorded = feature.get("weights_id")
        if (recorded and beside is not None and not same_weights(recorded, backbone.weights_id) and beside.is_file()
                and beside.resolve() != Path(chosen).expanduser().resolve()):
            other = build(beside)  # the recorded path holds other weights now; the copy beside may be right
            if same_weights(recorded, other.weights_id):
                backbone, chosen = other, beside
        backbone.input_size = int(feature["image_size"])
        backbone.resize = feature.get("resize", "short_side_center_crop")  # backbone.preprocess() as trained
        if feature.get("mean") and feature.get("std"):  # the normalisation the features were made with
            backbone.mean, backbone.std = tuple(feature["mean"]), tuple(feature["std"])
        if recorded and backbone.weights_id != recorded:
            message = (f"{path}: trained on backbone weights {recorded!r} but loaded {backbone.weights_id!r} "
                       f"(from {chosen if chosen is not None else 'the default'})")
            if weights is None and not same_weights(recorded, backbone.weights_id):
                # features of other weights: the temporal model's inputs mean something else
                raise CheckpointError(f"{message}: predictions would be wrong; pass the training weights "
                                      "(--weights FILE, or weights=...)")
            import warnings

            # at the caller's line: _load <- from_checkpoint <- the caller
            warnings.warn(f"{message}; predictions may be off", VideoactWarning, stacklevel=3)
        model = CNNLSTM(backbone, temporal).eval()  # ours: ready for frames, no dropout
        return cls(model, ckpt["classes"], feature, device, str(path), class_ids=ckpt.get("class_ids"))

    # ------------------------------------------------------------ features

    @torch.no_grad()  # not inference_mode: its tensors refuse the caller's in-place changes
    def frame_features(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 RGB frames ``[T, H, W, 3]`` -> features ``[T, D]`` (float32 holding float16 values)."""
        from .preprocess import preprocess_frames

        frames = frames_as_tensor(frames)
        if len(frames) == 0:
            return torch.zeros(0, self.backbone.feature_dim)
        out = []
        b = self.backbone
        step = default_batch_size(self.device, b.input_size)
        for start in range(0, len(frames), step):
            x = preprocess_frames(frames[start:start + step], b.input_size, b.mean, b.std, device=self.device,
                                  resize=self.feature.get("resize", "short_side_center_crop"), channels_last=True)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                out.append(self._frames_to_features(x).float())
        # Same rounding as the feature cache, so cached and live features agree.
        return torch.cat(out).half().float()

    def select_frames(self, num_frames: int, fps: float, clip: int = 0, num_clips: int = 1,
                      timestamps: Sequence[float] | None = None) -> list[int]:
        """Frame indices the model looks at for a video of ``num_frames`` frames.

        One clip: the segment centres of the frames extraction caches, as in training's
        evaluation. Clip ``k`` of ``K`` is shifted within each segment: of the video's own
        frames when extraction caches just the ``num_segments`` centres (uniform sampling:
        among the cached frames every clip would be the same clip), else of the cached frames.
        ``timestamps``: the frames' times, for fps sampling (as extraction uses them)."""
        cached = self.sampling.indices(num_frames, fps, timestamps)
        if num_clips > 1 and self.sampling.mode == "uniform" and len(cached) == self.num_segments:
            return segment_positions(num_frames, self.num_segments, clip, num_clips)
        return [cached[i] for i in segment_positions(len(cached), self.num_segments, clip, num_clips)]

    # ------------------------------------------------------------ prediction

    @torch.no_grad()
    def predict_features(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Features ``[T, D]`` or ``[B, T, D]`` -> probabilities ``[C]`` or ``[B, C]``.

        The temporal model runs in eval mode (no dropout) even if a caller put it in training
        mode (fine-tuning ``classifier.temporal``); its mode is restored afterwards. Threads
        predicting with one temporal model take turns for this step."""
        single = features.dim() == 2
        x = features[None] if single else features
        temporal = self.temporal
        with _mode_lock(temporal):
            training = temporal.training
            temporal.eval()
            try:
                probs = temporal(x.float().to(self.device), lengths).float().softmax(-1).cpu()
            finally:
                temporal.train(training)
        return probs[0] if single else probs

    def top_labels(self, probs: torch.Tensor, top_k: int) -> list[tuple[str, float]]:
        """The ``top_k`` most probable ``(label, probability)`` pairs of ``probs [C]``, best
        first. Ties go to the lower class index, as in ``videoact test``'s metrics (``topk``
        orders equal scores as it likes, so ``infer`` and ``test`` could name other classes)."""
        values, indices = probs.sort(descending=True, stable=True)
        k = min(top_k, len(self.classes))
        return [(self.classes[i], float(v)) for v, i in zip(values[:k].tolist(), indices[:k].tolist())]

    def predict(self, video: str | os.PathLike | torch.Tensor | np.ndarray, top_k: int = 5,
                num_clips: int = 1, fps: float = 25.0, file_timeout: float | None = None) -> Prediction:
        """Classify a video file (or frame folder) or decoded uint8 RGB frames ``[T, H, W, 3]``
        (OpenCV's ``VideoCapture`` gives BGR: flip it, ``frames[..., ::-1]``).

        With ``num_clips > 1`` the probabilities of several shifted clips are averaged.
        ``fps`` is only used for frame arrays with fps-based sampling. ``file_timeout``:
        seconds allowed for opening and decoding a file; a decoder still busy after that
        raises ``TimeoutError`` (it is left running in a daemon thread until the process ends).
        """
        from .decode import time_limit

        _check_counts(top_k, num_clips)
        file_timeout = time_limit(file_timeout, "file_timeout")
        if isinstance(video, (str, os.PathLike)):
            picks, wanted, clip = self._read_file(video, num_clips, file_timeout)
            frames_by_index = dict(zip(clip.indices.tolist(), range(len(wanted))))
            frames = clip.frames
            source = str(video)
        else:
            # A numpy array stays one until the frames are picked: only those are copied
            # (fancy indexing also makes a flipped view, frames[..., ::-1], contiguous).
            frames = _as_array(video)
            if frames.ndim != 4 or frames.shape[-1] != 3:
                raise ValueError(f"expected uint8 frames [T, H, W, 3], got shape {tuple(frames.shape)}")
            if frames.dtype not in (np.uint8, torch.uint8):  # named as given (numpy's, not torch's)
                raise TypeError(f"expected uint8 frames [T, H, W, 3] (decoded pixels), got dtype {frames.dtype}")
            n = len(frames)
            if n == 0:
                raise ValueError("no frames: an empty [0, H, W, 3] array")
            if self.sampling.mode == "fps":
                fps = _frame_rate(fps)
            picks = [self.select_frames(n, fps, k, num_clips) for k in range(num_clips)]
            wanted = sorted(set(i for p in picks for i in p))
            frames = frames_as_tensor(frames[wanted])
            frames_by_index = {i: j for j, i in enumerate(wanted)}
            source = "<frames>"
        feats = self.frame_features(frames)  # one CNN pass per distinct frame
        clips = torch.stack([feats[[frames_by_index[i] for i in p]] for p in picks])  # [K, S, D]
        probs = self.predict_features(clips).mean(0)
        return Prediction(source, self.top_labels(probs, top_k), probs, picks[0])

    def _read_file(self, video: str | os.PathLike, num_clips: int,
                   timeout: float | None) -> tuple[list[list[int]], list[int], Any]:
        """Open ``video`` and read the frames of ``num_clips`` clips, within ``timeout`` seconds.
        Returns each clip's frame indices, the sorted indices read, and the decoded ``Clip``."""
        import time

        from .decode import VideoDecodeError, call_with_timeout, decoder_hung, open_video

        path = str(video)
        deadline = None if not timeout else time.monotonic() + timeout

        def within_time(fn, stage: str):
            # One limit for the whole file: each stage gets what is left of it, none once it
            # has run out (each stage had at least 1 s, so a limit of 0.5 s allowed about 3).
            if deadline is None:
                return fn()
            left = deadline - time.monotonic()
            if left <= 0:
                raise decoder_hung(f"{path}: {stage}", timeout)
            return call_with_timeout(fn, left, f"{path}: {stage}")

        reader = within_time(lambda: open_video(video), "opening")
        hung = False
        try:
            first_backend = reader.backend
            while True:
                n = within_time(lambda: len(reader), "counting frames")
                times = within_time(reader.timestamps, "reading timestamps") if self.sampling.mode == "fps" else None
                picks = [self.select_frames(n, float(reader.fps), k, num_clips, times) for k in range(num_clips)]
                wanted = sorted(set(i for p in picks for i in p))
                try:
                    return picks, wanted, within_time(lambda: reader.get(wanted), "decoding")
                except VideoDecodeError:
                    # decord opened the file but cannot decode it, and the OpenCV fallback
                    # decodes fewer frames than decord counted: choose among those.
                    if reader.backend == first_backend:
                        raise
                    first_backend = reader.backend
        except TimeoutError:
            hung = True
            raise
        finally:
            # A hung call still runs in its thread: closing the reader under it could crash
            # the process in native code. The abandoned thread keeps it.
            if not hung:
                reader.close()

    def predict_each(self, videos: Sequence[str | os.PathLike], top_k: int = 5, num_clips: int = 1,
                     file_timeout: float | None = None) -> Iterator[tuple[str, Prediction | None, str | None]]:
        """Classify files one after the other, each result as soon as it is made:
        ``(video, prediction, None)``, or ``(video, None, reason)`` for a file that failed
        (the rest go on). For a folder of thousands of videos, where :meth:`predict_many`
        gives everything at the end. Arguments are checked here, before the first file."""
        from .decode import time_limit

        _check_counts(top_k, num_clips)  # bad arguments are not bad files
        file_timeout = time_limit(file_timeout, "file_timeout")
        if isinstance(videos, (str, os.PathLike)):
            videos = [videos]  # one path, not a sequence of its characters
        return self._predict_each(list(videos), top_k, num_clips, file_timeout)

    def _predict_each(self, videos: list[str | os.PathLike], top_k: int, num_clips: int,
                      file_timeout: float | None) -> Iterator[tuple[str, Prediction | None, str | None]]:
        from .decode import VideoDecodeError

        for v in videos:
            try:
                prediction = self.predict(v, top_k=top_k, num_clips=num_clips, file_timeout=file_timeout)
            except (VideoDecodeError, OSError, RuntimeError, ValueError) as exc:
                yield str(v), None, failure_reason(v, exc)
            else:
                yield str(v), prediction, None

    def predict_many(self, videos: Sequence[str | os.PathLike], top_k: int = 5, num_clips: int = 1,
                     file_timeout: float | None = None) -> tuple[list[Prediction], list[tuple[str, str]]]:
        """Classify many files; a bad file is reported in the second list, the rest go on."""
        results, failures = [], []
        for video, prediction, reason in self.predict_each(videos, top_k, num_clips, file_timeout):
            if prediction is None:
                failures.append((video, reason))
            else:
                results.append(prediction)
        return results, failures
