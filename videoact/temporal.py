"""Temporal models over per-frame features: ``[B, T, D]`` + lengths ``[B]`` -> logits ``[B, C]``.

* :class:`BiLSTMRecognizer` - input projection, a (bi)directional ``nn.LSTM`` run on
  packed sequences (one fused cuDNN call on GPU, no Python loop over time), masked
  pooling over time (attention, mean or last state), classifier.
* :class:`MeanPoolRecognizer` - the same projection and classifier with no recurrence:
  a masked mean over time. It cannot see frame order; it is the baseline that shows
  what the LSTM adds.

The input projection is a LayerNorm + Linear per step (``head="linear"``), or, for
grid-pooled features (``feature.pooling: gridG``), a small convolutional head over each
step's ``G x G`` grid (``head="conv"``, :class:`GridConvProjection`).

Padding convention: sequence ``b`` is valid at steps ``[0, lengths[b])``; whatever is in
the padded steps never reaches the output (it is zeroed before the projection, skipped
by packing and masked out of every pooling).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from einops import rearrange
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

TEMPORAL_POOLS = ("attention", "mean", "last")
HEADS = ("linear", "conv")


def normalize_lengths(
    lengths: torch.Tensor | Sequence[int] | None, batch: int, steps: int
) -> torch.Tensor:
    """Check and return ``lengths`` as an int64 CPU tensor ``[B]`` (``None`` -> all ``T``)."""
    if lengths is None:
        return torch.full((batch,), steps, dtype=torch.long)
    given = torch.as_tensor(lengths).detach().to("cpu").reshape(-1)
    lengths = given.to(torch.long)
    if given.is_floating_point() and not torch.equal(given, lengths.to(given.dtype)):
        raise ValueError(f"lengths must be whole numbers of steps, got {given.tolist()}")
    if lengths.numel() != batch:
        raise ValueError(f"lengths has {lengths.numel()} entries for a batch of {batch}")
    if batch and (int(lengths.min()) < 1 or int(lengths.max()) > steps):
        raise ValueError(
            f"lengths must lie in [1, {steps}] (the padded length T); "
            f"got min {int(lengths.min())}, max {int(lengths.max())}"
        )
    return lengths


def length_mask(lengths: torch.Tensor, steps: int, device: torch.device | str) -> torch.Tensor:
    """Bool mask ``[B, T]``: True on valid steps."""
    return torch.arange(steps, device=device)[None, :] < lengths.to(device)[:, None]


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x [B, T, D]`` over the valid steps of ``mask [B, T]`` -> ``[B, D]``."""
    # where() rather than multiply: padding that holds inf/nan must not leak (0 * inf = nan).
    x = torch.where(mask[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
    count = mask.sum(dim=1, keepdim=True).clamp(min=1).to(x.dtype)
    return x.sum(dim=1) / count


def center_over_time(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Subtract each sequence's mean feature over its valid steps: ``[B, T, D] -> [B, T, D]``.

    What stays constant through a clip (the scene, the background) cancels out and what
    changes (the motion) remains; padded steps are zero.
    """
    centered = features - masked_mean(features, mask)[:, None, :]
    return centered.masked_fill(~mask[..., None], 0.0)


class InputProjection(nn.Module):
    """Per-step projection ``[B, T, D] -> [B, T, P]``: LayerNorm, dropout, Linear, GELU.

    LayerNorm first because CNN features from different backbones/poolings have very
    different scales; the projection also shrinks wide (e.g. grid-pooled) features
    before the recurrence.
    """

    def __init__(self, in_dim: int, proj_dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_dim, proj_dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, T, D]`` -> ``[B, T, P]``; ``mask`` is not needed (each step alone)."""
        return self.act(self.linear(self.dropout(self.norm(x))))


class GridConvProjection(nn.Module):
    """Per-step projection of grid features ``[B, T, C*G*G] -> [B, T, P]`` by convolutions.

    Grid features (``feature.pooling: gridG``) hold ``G x G`` spatial cells of ``C``
    channels each, channel-major. A 1x1 convolution reduces ``C`` to ``channels``; two
    residual 3x3 convolutions follow, each also spanning ``time_kernel`` neighbouring
    steps (1: each frame alone); average and maximum over the grid, then LayerNorm,
    dropout, Linear and GELU give ``P`` values per step.

    Why: a flat Linear over the grid must learn each pattern ("the object left this
    cell for the next") separately at every position; a convolution shares it across
    positions. On the temporal-order benchmark (docs/benchmarks.md, 224 px): 74.0 % (7x7
    grid, this head) against 70.5 % (4x4 grid, flat projection) through the product
    commands; 74.0 % against 66.5 % on the same feature maps in an experiment script.

    Padded steps are zero on input and are zeroed again after every layer, so with a
    ``time_kernel`` above 1 a valid step's neighbours past the end look exactly as they
    do for the same sequence alone (the convolution's own zero padding).
    """

    def __init__(self, in_dim: int, proj_dim: int, grid: int, channels: int = 32, time_kernel: int = 3,
                 dropout: float = 0.1) -> None:
        super().__init__()
        if grid < 2:
            raise ValueError(f"head='conv' needs grid features (feature.pooling grid2 .. grid28), got grid={grid}")
        if in_dim % (grid * grid):
            raise ValueError(f"in_dim={in_dim} is not C x {grid} x {grid}: the features are not a {grid}x{grid} grid")
        if time_kernel < 1 or time_kernel % 2 == 0:
            raise ValueError(f"time_kernel must be odd and >= 1, got {time_kernel}")
        self.grid = int(grid)
        self.reduce = nn.Conv3d(in_dim // (grid * grid), channels, 1)
        self.norm = nn.GroupNorm(min(4, channels), channels)
        self.convs = nn.ModuleList(
            nn.Conv3d(channels, channels, (time_kernel, 3, 3), padding=(time_kernel // 2, 1, 1)) for _ in range(2)
        )
        self.proj = InputProjection(2 * channels, proj_dim, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x [B, T, C*G*G]`` (padded steps zero), ``mask [B, T]`` -> ``[B, T, P]``."""
        batch = x.shape[0]
        keep = rearrange(mask.to(x.dtype), "b t -> b 1 t 1 1")
        x = rearrange(x, "b t (c h w) -> b c t h w", h=self.grid, w=self.grid)
        x = self.reduce(x)
        # GroupNorm per frame: statistics never mix steps (nor padding into valid steps).
        x = rearrange(self.norm(rearrange(x, "b c t h w -> (b t) c h w")), "(b t) c h w -> b c t h w", b=batch)
        x = nn.functional.gelu(x) * keep
        for conv in self.convs:
            x = (x + nn.functional.gelu(conv(x))) * keep
        pooled = torch.cat([x.mean((-2, -1)), x.amax((-2, -1))], dim=1)  # [B, 2c, T]
        return self.proj(rearrange(pooled, "b c t -> b t c"))


def _make_projection(in_dim: int, proj_dim: int, input_dropout: float, head: str, grid: int,
                     head_channels: int, head_time_kernel: int) -> nn.Module:
    if head == "linear":
        return InputProjection(in_dim, proj_dim, input_dropout)
    if head == "conv":
        return GridConvProjection(in_dim, proj_dim, grid, head_channels, head_time_kernel, input_dropout)
    raise ValueError(f"head must be one of {HEADS}, got {head!r}")


class AttentionPool(nn.Module):
    """Learned attention over time: ``[B, T, H]`` + mask ``[B, T]`` -> ``[B, H]``, weights ``[B, T]``.

    Scores come from a small MLP per step; the softmax runs over the valid steps only,
    so padded steps get weight exactly 0 and the weights of each row sum to 1.
    """

    def __init__(self, dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1, bias=False))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = rearrange(self.score(x), "b t 1 -> b t")
        scores = scores.float().masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1).to(x.dtype)
        pooled = torch.einsum("bt,btd->bd", weights, x)
        return pooled, weights


class _Recognizer(nn.Module):
    """Shared parts: config bookkeeping and the classifier head."""

    name = ""

    def __init__(self) -> None:
        super().__init__()
        self._config: dict[str, Any] = {}
        # Pooling weights [B, T] of the last forward pass (detached), for inspection.
        self.last_attention: torch.Tensor | None = None

    @property
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this model: ``create_temporal_model(**model.config)``."""
        return {"name": self.name, **self._config}

    @property
    def in_dim(self) -> int:
        return int(self._config["in_dim"])

    @property
    def num_classes(self) -> int:
        return int(self._config["num_classes"])

    def _project(
        self, features: torch.Tensor, lengths: torch.Tensor | Sequence[int] | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Checked input ``[B, T, D]`` -> projected ``[B, T, P]``, lengths ``[B]``, valid mask ``[B, T]``.

        Padded steps are zeroed first, so whatever they hold never reaches the output.
        """
        self._check_input(features)
        # The cache stores float16 (load_features); the weights decide the dtype (under
        # autocast, matmuls still run in the autocast dtype).
        features = features.to(next(self.parameters()).dtype)
        batch, steps, _ = features.shape
        lengths = normalize_lengths(lengths, batch, steps)
        mask = length_mask(lengths, steps, features.device)
        features = features.masked_fill(~mask[..., None], 0.0)
        if self._config.get("center"):
            features = center_over_time(features, mask)
        return self.proj(features, mask), lengths, mask

    def _check_input(self, features: torch.Tensor) -> None:
        if features.dim() != 3:
            raise ValueError(f"expected features [B, T, D], got shape {tuple(features.shape)}")
        if features.shape[2] != self.in_dim:
            raise ValueError(
                f"features have D={features.shape[2]} but the model was built for in_dim={self.in_dim}"
            )
        if features.shape[1] == 0:
            raise ValueError("features have T=0 steps")


class BiLSTMRecognizer(_Recognizer):
    """Projection -> (Bi)LSTM -> masked temporal pooling -> dropout -> Linear.

    Args:
        in_dim: feature size ``D`` per frame.
        num_classes: number of classes ``C``.
        hidden: LSTM hidden size per direction ``H``.
        layers: stacked LSTM layers.
        bidirectional: run a backward LSTM too (output ``2H`` per step).
        dropout: dropout between LSTM layers and before the classifier.
        input_dropout: dropout on the normalized input features.
        proj_dim: size ``P`` of the input projection.
        temporal_pool: ``"attention"`` (learned weights over valid steps), ``"mean"``
            (masked mean) or ``"last"`` (forward state at each sequence's real last step
            concatenated with the backward state at step 0).
        attention_dim: hidden size of the attention scorer.
        center: subtract each sequence's mean feature over its valid steps first
            (see :func:`center_over_time`); helps when the classes differ in motion
            rather than in scene, as in the temporal-order benchmark.
        head: ``"linear"`` (LayerNorm, dropout, Linear) or ``"conv"``
            (:class:`GridConvProjection`, for grid features).
        grid: ``G`` of ``gridG`` features (``head="conv"`` only).
        head_channels: channels of the convolutional head.
        head_time_kernel: steps each of its 3x3 convolutions spans (odd; 1 = per frame).
    """

    name = "bilstm"

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        hidden: int = 256,
        layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.3,
        input_dropout: float = 0.1,
        proj_dim: int = 256,
        temporal_pool: str = "attention",
        attention_dim: int = 128,
        center: bool = False,
        head: str = "linear",
        grid: int = 0,
        head_channels: int = 32,
        head_time_kernel: int = 3,
    ) -> None:
        super().__init__()
        if temporal_pool not in TEMPORAL_POOLS:
            raise ValueError(f"temporal_pool must be one of {TEMPORAL_POOLS}, got {temporal_pool!r}")
        for key, value in (("in_dim", in_dim), ("num_classes", num_classes), ("hidden", hidden),
                           ("layers", layers), ("proj_dim", proj_dim), ("attention_dim", attention_dim)):
            if int(value) < 1:
                raise ValueError(f"{key} must be >= 1, got {value}")
        self._config = dict(
            in_dim=int(in_dim), num_classes=int(num_classes), hidden=int(hidden), layers=int(layers),
            bidirectional=bool(bidirectional), dropout=float(dropout), input_dropout=float(input_dropout),
            proj_dim=int(proj_dim), temporal_pool=temporal_pool, attention_dim=int(attention_dim),
            center=bool(center), **_head_config(head, grid, head_channels, head_time_kernel),
        )
        self.temporal_pool = temporal_pool
        self.bidirectional = bool(bidirectional)
        self.hidden = int(hidden)
        self.proj = _make_projection(in_dim, proj_dim, input_dropout, head, grid, head_channels, head_time_kernel)
        self.lstm = nn.LSTM(
            proj_dim, hidden, num_layers=layers, batch_first=True,
            bidirectional=bidirectional, dropout=dropout if layers > 1 else 0.0,
        )
        self.out_dim = hidden * (2 if bidirectional else 1)
        self.attention = AttentionPool(self.out_dim, attention_dim) if temporal_pool == "attention" else None
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.out_dim, num_classes)
        self._init_lstm()

    def _init_lstm(self) -> None:
        # Forget-gate bias 1 (gate order i, f, g, o): keeps memory early in training.
        for name, param in self.lstm.named_parameters():
            if name.startswith("bias_ih"):
                with torch.no_grad():
                    param[self.hidden : 2 * self.hidden].fill_(1.0)

    def encode(
        self, features: torch.Tensor, lengths: torch.Tensor | Sequence[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pooled clip embedding ``[B, out_dim]`` and pooling weights ``[B, T]`` (None for "last")."""
        x, lengths, mask = self._project(features, lengths)  # x [B, T, P]
        steps = x.shape[1]

        if bool((lengths == steps).all()):
            # Nothing padded: the plain call is the same computation, without pack/unpack.
            out, (h_n, _) = self.lstm(x)  # out [B, T, dirs*H], h_n [layers*dirs, B, H]
        else:
            # Packing makes each sequence stop at its real length: the backward direction
            # starts at lengths[b]-1, never on padding; h_n is in the original batch order.
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, (h_n, _) = self.lstm(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=steps)

        if self.temporal_pool == "attention":
            assert self.attention is not None
            pooled, weights = self.attention(out, mask)
        elif self.temporal_pool == "mean":
            pooled = masked_mean(out, mask)
            weights = mask.to(out.dtype) / lengths.to(out.device, out.dtype)[:, None]
        else:  # last
            # h_n is [layers*dirs, B, H]; for the top layer, bidirectional: h_n[-2] is the
            # forward state at the real last step, h_n[-1] the backward state at step 0.
            pooled = torch.cat([h_n[-2], h_n[-1]], dim=1) if self.bidirectional else h_n[-1]
            weights = None
        return pooled, weights

    def forward(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor | Sequence[int] | None = None,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """``features [B, T, D]``, ``lengths [B]`` (None = all full) -> logits ``[B, C]``.

        With ``return_attention=True`` also returns the pooling weights ``[B, T]``
        (learned attention, or the uniform mean weights; None for ``"last"``). The same
        weights, detached, are kept in ``self.last_attention``.
        """
        pooled, weights = self.encode(features, lengths)
        self.last_attention = None if weights is None else weights.detach()
        logits = self.classifier(self.dropout(pooled))
        return (logits, weights) if return_attention else logits


class MeanPoolRecognizer(_Recognizer):
    """Baseline without recurrence: projection -> masked mean over time -> dropout -> Linear.

    Blind to frame order by construction (reversing or shuffling the valid steps gives
    the same output). With ``head="conv"`` its head sees each frame alone (time kernel
    1; :func:`create_temporal_model` drops ``head_time_kernel`` for it), so that stays true.
    """

    name = "meanpool"

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        dropout: float = 0.3,
        input_dropout: float = 0.1,
        proj_dim: int = 256,
        center: bool = False,
        head: str = "linear",
        grid: int = 0,
        head_channels: int = 32,
    ) -> None:
        super().__init__()
        for key, value in (("in_dim", in_dim), ("num_classes", num_classes), ("proj_dim", proj_dim)):
            if int(value) < 1:
                raise ValueError(f"{key} must be >= 1, got {value}")
        self._config = dict(
            in_dim=int(in_dim), num_classes=int(num_classes), dropout=float(dropout),
            input_dropout=float(input_dropout), proj_dim=int(proj_dim), center=bool(center),
            **_head_config(head, grid, head_channels, None),
        )
        self.proj = _make_projection(in_dim, proj_dim, input_dropout, head, grid, head_channels, 1)
        self.out_dim = int(proj_dim)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(proj_dim, num_classes)

    def encode(
        self, features: torch.Tensor, lengths: torch.Tensor | Sequence[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled embedding ``[B, P]`` and the uniform pooling weights ``[B, T]``."""
        x, lengths, mask = self._project(features, lengths)  # x [B, T, P]
        weights = mask.to(x.dtype) / lengths.to(x.device, x.dtype)[:, None]
        return masked_mean(x, mask), weights

    def forward(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor | Sequence[int] | None = None,
        return_attention: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``features [B, T, D]``, ``lengths [B]`` -> logits ``[B, C]`` (and weights ``[B, T]``)."""
        pooled, weights = self.encode(features, lengths)
        self.last_attention = weights.detach()
        logits = self.classifier(self.dropout(pooled))
        return (logits, weights) if return_attention else logits


TEMPORAL_MODELS: dict[str, type[_Recognizer]] = {
    "bilstm": BiLSTMRecognizer,
    "meanpool": MeanPoolRecognizer,
}

# Settings that only the recurrent model has; the baseline ignores them so that one
# ModelConfig can build either model.
_RECURRENT_ONLY = ("hidden", "layers", "bidirectional", "temporal_pool", "attention_dim", "head_time_kernel")


def _head_config(head: str, grid: int, channels: int, time_kernel: int | None) -> dict[str, Any]:
    """The head settings a model's config records (checkpoints from before the conv
    head lack them and get the defaults: a linear head)."""
    out = dict(head=str(head), grid=int(grid), head_channels=int(channels))
    return out if time_kernel is None else out | dict(head_time_kernel=int(time_kernel))


def create_temporal_model(name: str, in_dim: int, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build a temporal model by name (``"bilstm"`` or ``"meanpool"``).

    ``kwargs`` are the model's constructor arguments; for ``"meanpool"`` the recurrent
    settings (hidden, layers, bidirectional, temporal_pool, attention_dim,
    head_time_kernel) are accepted and ignored, so ``create_temporal_model(**dataclasses.asdict(cfg.model), in_dim=...,
    num_classes=...)`` works for both. ``create_temporal_model(**model.config)`` rebuilds
    an existing model.
    """
    cls = TEMPORAL_MODELS.get(name)
    if cls is None:
        raise ValueError(f"unknown temporal model {name!r}; choose from {sorted(TEMPORAL_MODELS)}")
    if cls is MeanPoolRecognizer:
        kwargs = {k: v for k, v in kwargs.items() if k not in _RECURRENT_ONLY}
    try:
        return cls(in_dim=in_dim, num_classes=num_classes, **kwargs)
    except TypeError as exc:  # unknown keyword: say which model rejected it
        raise ValueError(f"temporal model {name!r}: {exc}") from None
