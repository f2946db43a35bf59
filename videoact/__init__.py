"""videoact: video activity recognition with CNN-LSTM models.

The public names below are imported lazily, so ``import videoact`` is cheap and a
command only pays for what it uses.
"""
from __future__ import annotations

import importlib
from typing import Any

from .openmp import prefer_short_spin
from .version import __version__

prefer_short_spin()  # before anything imports torch: see videoact/openmp.py

# public name -> module that defines it
_EXPORTS = {
    # decoding and sampling
    "open_video": "decode",
    "VideoReader": "decode",
    "VideoDecodeError": "decode",
    "sample_indices": "sampling",
    # backbones and features
    "create_backbone": "backbones",
    "list_backbones": "backbones",
    "extract_features": "extract",
    "feature_path": "extract",
    "load_features": "feature_cache",
    # temporal models and full model
    "BiLSTMRecognizer": "temporal",
    "MeanPoolRecognizer": "temporal",
    "create_temporal_model": "temporal",
    "CNNLSTM": "cnn_lstm",
    # training, evaluation, inference
    "train": "training",
    "evaluate": "evaluation",
    "VideoClassifier": "inference",
    "StreamClassifier": "stream",
    "StreamEngine": "stream",
    "stream_predictions": "stream",
    "IterableSource": "sources",
    "make_synthetic": "synthetic",
    # configs (for train)
    "Config": "config",
    "load_config": "config",
    # the category of videoact's own warnings (a video skipped, a list entry left out)
    "VideoactWarning": "notices",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'videoact' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))  # the lazy names too, for dir() and completion
