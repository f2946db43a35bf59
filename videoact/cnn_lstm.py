"""The full CNN-LSTM: a per-frame backbone and a temporal model, on raw frames.

``frames [B, T, 3, H, W]`` (normalized float) -> backbone on the flattened
``[B*T, 3, H, W]`` in chunks -> features ``[B, T, D]`` -> temporal model -> logits ``[B, C]``.

The backbone is any ``nn.Module`` mapping ``[N, 3, H, W] -> [N, D]`` with the attributes
of ``videoact.backbones.Backbone``: ``feature_dim``, ``input_size``, ``mean``, ``std``,
``name``, ``weights_id``, ``pooling`` (and ``layer``, "last" when absent).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from einops import rearrange
from torch import nn

from .temporal import length_mask, normalize_lengths

BACKBONE_ATTRIBUTES = ("feature_dim", "input_size", "mean", "std", "name", "weights_id", "pooling")


class CNNLSTM(nn.Module):
    """Backbone + temporal model.

    Args:
        backbone: per-frame feature extractor ``[N, 3, H, W] -> [N, D]``.
        temporal: temporal model ``([B, T, D], lengths [B]) -> [B, C]``.
        chunk_size: frames per backbone call; bounds activation memory for long clips.
        freeze_backbone: keep the backbone in eval mode and run it without gradients
            (the usual setting: features are the cached ones up to their float16 storage
            and the inference copy's folded BatchNorm; ``VideoClassifier`` rounds as the
            cache does). ``False``
            fine-tunes it: a backbone made frozen (``create_backbone``'s default) is
            unfrozen (``set_frozen(False)``), else it would stay frozen, silently.
    """

    def __init__(
        self,
        backbone: nn.Module,
        temporal: nn.Module,
        chunk_size: int = 64,
        freeze_backbone: bool = True,
    ) -> None:
        super().__init__()
        missing = [a for a in BACKBONE_ATTRIBUTES if not hasattr(backbone, a)]
        if missing:
            raise TypeError(
                f"backbone {type(backbone).__name__} lacks the backbone attributes {missing} "
                f"(expected {list(BACKBONE_ATTRIBUTES)})"
            )
        temporal_in = getattr(temporal, "in_dim", None)
        if temporal_in is not None and int(temporal_in) != int(backbone.feature_dim):
            raise ValueError(
                f"backbone {backbone.name!r} gives {backbone.feature_dim}-d features but the "
                f"temporal model expects in_dim={temporal_in}"
            )
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.backbone = backbone
        self.temporal = temporal
        self.chunk_size = int(chunk_size)
        self.freeze_backbone = bool(freeze_backbone)
        if self.freeze_backbone:
            # eval() here too, not only in train(): a new module is in train mode, and a
            # forward before any train()/eval() call would overwrite BatchNorm's statistics.
            self.backbone.requires_grad_(False).eval()
        else:
            if getattr(backbone, "frozen", False) and hasattr(backbone, "set_frozen"):
                backbone.set_frozen(False)
            # Fine-tuned with the rest: in the module's mode (a new module trains), not left
            # in the eval mode create_backbone gives, where BatchNorm would not adapt.
            self.backbone.train(self.training)

    @property
    def feature_dim(self) -> int:
        return int(self.backbone.feature_dim)

    def train(self, mode: bool = True) -> "CNNLSTM":
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()  # BatchNorm statistics stay those of the pretrained weights
        return self

    def frame_features(
        self, frames: torch.Tensor, lengths: torch.Tensor | Sequence[int] | None = None
    ) -> torch.Tensor:
        """Per-frame features ``[B, T, D]`` from ``frames [B, T, 3, H, W]``, normalised float
        (``backbone.preprocess`` of uint8 frames; :class:`VideoClassifier` takes uint8 videos).

        Only valid frames go through the backbone; padded steps get zero features.
        """
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(f"expected frames [B, T, 3, H, W], got shape {tuple(frames.shape)}")
        if not frames.is_floating_point():
            raise TypeError(f"expected normalised float frames [B, T, 3, H, W], got {frames.dtype}: make them with "
                            "backbone.preprocess(uint8 frames [N, H, W, 3]), or use VideoClassifier.predict")
        batch, steps = frames.shape[:2]
        if steps == 0:  # as the temporal models say it, not torch.cat's "expected a non-empty list"
            raise ValueError(f"frames have T=0 steps (shape {tuple(frames.shape)}): a clip needs a frame")
        lengths = normalize_lengths(lengths, batch, steps)
        flat = rearrange(frames, "b t c h w -> (b t) c h w")
        valid = rearrange(length_mask(lengths, steps, frames.device), "b t -> (b t)")
        index = valid.nonzero().squeeze(1)  # skip padded frames: no work for the backbone

        grad = torch.is_grad_enabled() and not self.freeze_backbone
        chunks = []
        with torch.set_grad_enabled(grad):
            for start in range(0, index.numel(), self.chunk_size):
                out = self.backbone(flat[index[start : start + self.chunk_size]])
                if out.dim() != 2 or out.shape[1] != self.feature_dim:
                    raise ValueError(
                        f"backbone {self.backbone.name!r} returned shape {tuple(out.shape)}, "
                        f"expected [N, {self.feature_dim}]"
                    )
                chunks.append(out)
        valid_features = torch.cat(chunks) if chunks else flat.new_zeros(0, self.feature_dim)  # [N_valid, D]
        features = valid_features.new_zeros(batch * steps, self.feature_dim)
        features = features.index_copy(0, index, valid_features)
        return features.view(batch, steps, self.feature_dim)  # [B, T, D] (einops cannot split an empty batch)

    def forward(
        self,
        frames: torch.Tensor,
        lengths: torch.Tensor | Sequence[int] | None = None,
        **temporal_kwargs: Any,
    ) -> Any:
        """``frames [B, T, 3, H, W]`` normalized float, ``lengths [B]`` -> logits ``[B, C]``.

        ``temporal_kwargs`` (e.g. ``return_attention=True``) go to the temporal model.
        """
        features = self.frame_features(frames, lengths)
        return self.temporal(features, lengths, **temporal_kwargs)
