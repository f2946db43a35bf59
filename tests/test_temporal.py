"""Temporal models and the full CNN-LSTM: variable lengths, padding, order, gradients."""
from __future__ import annotations

import cv2
import pytest
import torch
from torch import nn

from videoact.cnn_lstm import CNNLSTM
from videoact.temporal import BiLSTMRecognizer, MeanPoolRecognizer, create_temporal_model
from videoact.testing import read_frame_index, write_coded_video

D, C = 12, 5
LENGTHS = [7, 3, 5, 1]

MODELS = {
    "bilstm-attention": dict(name="bilstm", temporal_pool="attention"),
    "bilstm-mean": dict(name="bilstm", temporal_pool="mean"),
    "bilstm-last": dict(name="bilstm", temporal_pool="last"),
    "lstm-last-2layers": dict(name="bilstm", temporal_pool="last", bidirectional=False, layers=2),
    "bilstm-attention-2layers": dict(name="bilstm", temporal_pool="attention", layers=2),
    "meanpool": dict(name="meanpool"),
    # D = 12 read as a 2x2 grid of 3 channels; time kernel 3 mixes neighbouring steps.
    "bilstm-convhead": dict(name="bilstm", head="conv", grid=2, head_channels=4),
    "meanpool-convhead": dict(name="meanpool", head="conv", grid=2, head_channels=4),
}


def make_model(spec: dict, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    kwargs = dict(spec)
    name = kwargs.pop("name")
    extra = dict(hidden=16, proj_dim=10) if name == "bilstm" else dict(proj_dim=10)
    return create_temporal_model(name, D, C, **extra, **kwargs).eval()


def padded_batch(lengths: list[int], fill: str = "big", seed: int = 1) -> torch.Tensor:
    """``[B, max(lengths), D]`` with valid steps ~N(0, 1) and padding filled with junk."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), max(lengths), D, generator=gen)
    for b, n in enumerate(lengths):
        if fill == "big":
            x[b, n:] = torch.randn(x.shape[1] - n, D, generator=gen) * 1e4
        elif fill == "zero":
            x[b, n:] = 0
        elif fill == "nan":
            x[b, n:] = float("nan")
    return x


@pytest.mark.parametrize("spec", MODELS.values(), ids=MODELS.keys())
def test_padded_row_equals_sequence_alone(spec):
    model = make_model(spec)
    x = padded_batch(LENGTHS)
    with torch.no_grad():
        batched = model(x, torch.tensor(LENGTHS))
        assert batched.shape == (len(LENGTHS), C)
        for b, n in enumerate(LENGTHS):
            alone = model(x[b : b + 1, :n])  # lengths=None: full length
            torch.testing.assert_close(batched[b : b + 1], alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("spec", MODELS.values(), ids=MODELS.keys())
def test_cached_float16_and_float64_features_are_accepted(spec):
    """load_features returns float16 (the cache's dtype): the model reads it as float32."""
    model = make_model(spec)
    x = padded_batch(LENGTHS).half()
    with torch.no_grad():
        expected = model(x.float(), LENGTHS)
        for dtype in (torch.float16, torch.float64):
            got = model(x.to(dtype), LENGTHS)
            assert got.dtype == torch.float32
            torch.testing.assert_close(got, expected, atol=0, rtol=0)


@pytest.mark.parametrize("spec", MODELS.values(), ids=MODELS.keys())
def test_padding_content_does_not_matter(spec):
    model = make_model(spec)
    lengths = torch.tensor(LENGTHS)
    with torch.no_grad():
        zero = model(padded_batch(LENGTHS, "zero"), lengths)
        big = model(padded_batch(LENGTHS, "big"), lengths)
        nan = model(padded_batch(LENGTHS, "nan"), lengths)
    assert torch.isfinite(nan).all()
    torch.testing.assert_close(big, zero, atol=1e-6, rtol=0)
    torch.testing.assert_close(nan, zero, atol=1e-6, rtol=0)


def reverse_valid(x: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    out = x.clone()
    for b, n in enumerate(lengths):
        out[b, :n] = x[b, :n].flip(0)
    return out


@pytest.mark.parametrize("pool", ["attention", "mean", "last", "attention-convhead"])
def test_time_reversal_changes_bilstm(pool):
    head = dict(head="conv", grid=2, head_channels=4) if pool.endswith("convhead") else {}
    model = make_model(dict(name="bilstm", temporal_pool=pool.split("-")[0], **head))
    lengths = [7, 6, 5]
    x = padded_batch(lengths)
    with torch.no_grad():
        forward = model(x, torch.tensor(lengths))
        backward = model(reverse_valid(x, lengths), torch.tensor(lengths))
    # every row changes, clearly more than float noise
    assert ((forward - backward).abs().amax(dim=1) > 1e-3).all()


@pytest.mark.parametrize("name", ["meanpool", "meanpool-convhead"])
def test_time_reversal_leaves_meanpool_unchanged(name):
    model = make_model(MODELS[name])
    x = padded_batch(LENGTHS)
    with torch.no_grad():
        forward = model(x, torch.tensor(LENGTHS))
        backward = model(reverse_valid(x, LENGTHS), torch.tensor(LENGTHS))
        shuffled = model(x[:, torch.randperm(7)][:1], None)  # full-length row, any order
        full = model(x[:1], None)
    torch.testing.assert_close(backward, forward, atol=1e-5, rtol=0)
    torch.testing.assert_close(shuffled, full, atol=1e-5, rtol=0)


def test_attention_weights_zero_on_padding_and_sum_to_one():
    model = make_model(MODELS["bilstm-attention"])
    x = padded_batch(LENGTHS)
    logits, weights = model(x, torch.tensor(LENGTHS), return_attention=True)
    assert logits.shape == (4, C) and weights.shape == (4, 7)
    for b, n in enumerate(LENGTHS):
        assert (weights[b, n:] == 0).all()
        assert (weights[b, :n] > 0).all()
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(4), atol=1e-6, rtol=0)
    torch.testing.assert_close(model.last_attention, weights.detach())
    # learned, not uniform: the weights of the full-length row are not all 1/7
    assert weights[0].std() > 0


def test_last_pool_reads_real_last_step_and_step_zero():
    model = make_model(MODELS["bilstm-last"])
    x = padded_batch(LENGTHS)
    with torch.no_grad():
        pooled, weights = model.encode(x, torch.tensor(LENGTHS))
        assert weights is None and pooled.shape == (4, 32)
        for b, n in enumerate(LENGTHS):
            out, _ = model.lstm(model.proj(x[b : b + 1, :n]))  # [1, n, 2H], no padding at all
            expected = torch.cat([out[0, n - 1, :16], out[0, 0, 16:]])
            torch.testing.assert_close(pooled[b], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("spec", MODELS.values(), ids=MODELS.keys())
def test_gradients_flow_to_all_parameters_and_valid_steps_only(spec):
    model = make_model(spec).train()
    x = padded_batch(LENGTHS).requires_grad_(True)
    logits = model(x, torch.tensor(LENGTHS))
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    for b, n in enumerate(LENGTHS):
        assert (x.grad[b, n:] == 0).all()
        assert x.grad[b, :n].abs().sum() > 0


def test_rebuild_from_config_gives_same_outputs():
    for spec in MODELS.values():
        model = make_model(spec)
        clone = create_temporal_model(**model.config).eval()
        clone.load_state_dict(model.state_dict())
        x = padded_batch(LENGTHS)
        with torch.no_grad():
            torch.testing.assert_close(clone(x, LENGTHS), model(x, LENGTHS))


def test_bad_inputs_are_clear_errors():
    model = make_model(MODELS["bilstm-attention"])
    x = torch.randn(2, 4, D)
    with pytest.raises(ValueError, match="lengths must lie in"):
        model(x, torch.tensor([4, 0]))
    with pytest.raises(ValueError, match="lengths must lie in"):
        model(x, torch.tensor([5, 2]))
    with pytest.raises(ValueError, match="2 entries"):
        model(torch.randn(3, 4, D), torch.tensor([4, 2]))
    with pytest.raises(ValueError, match=r"whole numbers of steps, got \[3\.\d+, 2\.0\]"):
        model(x, [3.6, 2.0])  # was read as 3
    assert torch.equal(model.eval()(x, [4.0, 2.0]), model(x, [4, 2]))
    with pytest.raises(ValueError, match="in_dim=12"):
        model(torch.randn(2, 4, D + 1))
    with pytest.raises(ValueError, match=r"\[B, T, D\]"):
        model(torch.randn(4, D))
    with pytest.raises(ValueError, match="unknown temporal model"):
        create_temporal_model("transformer", D, C)
    with pytest.raises(ValueError, match="temporal_pool"):
        BiLSTMRecognizer(D, C, temporal_pool="max")
    with pytest.raises(ValueError, match="meanpool"):
        create_temporal_model("meanpool", D, C, bogus=1)
    # recurrent settings are accepted and ignored by the baseline
    assert isinstance(create_temporal_model("meanpool", D, C, hidden=8, temporal_pool="last"), MeanPoolRecognizer)
    with pytest.raises(ValueError, match="needs grid features"):
        create_temporal_model("bilstm", D, C, head="conv", grid=1)
    with pytest.raises(ValueError, match="not C x 5 x 5"):
        create_temporal_model("bilstm", D, C, head="conv", grid=5)
    with pytest.raises(ValueError, match="odd"):
        create_temporal_model("bilstm", D, C, head="conv", grid=2, head_time_kernel=2)
    with pytest.raises(ValueError, match="head must be one of"):
        create_temporal_model("meanpool", D, C, head="mlp")


# --------------------------------------------------------------------------- CNN-LSTM


class TinyBackbone(nn.Module):
    """A real (small) per-frame CNN with the Backbone attributes: [N, 3, H, W] -> [N, D]."""

    def __init__(self, feature_dim: int = D) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 4, feature_dim)
        self.feature_dim = feature_dim
        self.input_size = 32
        self.mean = (0.485, 0.456, 0.406)
        self.std = (0.229, 0.224, 0.225)
        self.name = "tiny"
        self.weights_id = "random-init"
        self.pooling = "grid2"
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        y = torch.relu(self.bn(self.conv(x)))
        return self.fc(nn.functional.adaptive_avg_pool2d(y, 2).flatten(1))


def decoded_clip(tmp_path, num_frames: int = 8, size: int = 32) -> torch.Tensor:
    """Frames ``[T, 3, size, size]`` normalized, decoded from a real encoded video."""
    path = write_coded_video(tmp_path / "clip.avi", num_frames)
    cap = cv2.VideoCapture(str(path))
    frames, indices = [], []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        indices.append(read_frame_index(rgb))
        frames.append(torch.from_numpy(cv2.resize(rgb, (size, size))))
    cap.release()
    assert indices == list(range(num_frames))
    x = torch.stack(frames).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor((0.485, 0.456, 0.406))[:, None, None]
    std = torch.tensor((0.229, 0.224, 0.225))[:, None, None]
    return (x - mean) / std


def test_cnn_lstm_on_decoded_frames(tmp_path):
    torch.manual_seed(0)
    clip = decoded_clip(tmp_path)  # [8, 3, 32, 32]
    frames = torch.stack([clip, clip.flip(0)])  # [2, 8, 3, 32, 32]
    backbone = TinyBackbone()
    model = CNNLSTM(backbone, create_temporal_model("bilstm", D, C, hidden=16, proj_dim=10), chunk_size=5).eval()
    with torch.no_grad():
        logits = model(frames, torch.tensor([8, 6]))
        features = model.frame_features(frames, torch.tensor([8, 6]))
    assert logits.shape == (2, C)
    assert features.shape == (2, 8, D)
    assert (features[1, 6:] == 0).all()  # padding never went through the backbone
    assert sum(backbone.calls[-3:]) == 14 and max(backbone.calls) <= 5  # chunks of <= 5 frames
    # different decoded frames give different features
    assert (features[0, 1:] - features[0, :-1]).abs().amax(dim=1).min() > 0
    # same result as the temporal model on the per-frame features of each clip alone
    with torch.no_grad():
        alone = model.temporal(backbone(frames[1, :6]).unsqueeze(0))
    torch.testing.assert_close(logits[1:], alone, atol=1e-5, rtol=0)
    logits2, weights = model(frames, torch.tensor([8, 6]), return_attention=True)
    assert weights.shape == (2, 8) and (weights[1, 6:] == 0).all()
    # an empty batch gives no logits; a clip of no frames is refused as such (both failed
    # in torch.cat: "expected a non-empty list of Tensors")
    with torch.no_grad():
        assert model(frames[:0]).shape == (0, C)
    with pytest.raises(ValueError, match=r"frames have T=0 steps \(shape \(2, 0, 3, 32, 32\)\)"):
        model(frames[:, :0])


def test_cnn_lstm_gradients_and_frozen_backbone():
    torch.manual_seed(0)
    frames = torch.randn(2, 4, 3, 32, 32)
    target = torch.tensor([1, 3])
    for freeze in (True, False):
        backbone = TinyBackbone()
        model = CNNLSTM(backbone, create_temporal_model("bilstm", D, C, hidden=8, proj_dim=8), freeze_backbone=freeze)
        assert backbone.training is not freeze  # frozen from the start, before any train()/eval() call
        stats = backbone.bn.running_mean.clone()
        with torch.no_grad():
            model(frames, [4, 2])
        assert torch.equal(backbone.bn.running_mean, stats) is freeze
        model.train()
        assert model.backbone.training is not freeze  # frozen BatchNorm keeps its statistics
        nn.functional.cross_entropy(model(frames, [4, 2]), target).backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.temporal.parameters())
        backbone_grads = [p.grad for p in model.backbone.parameters()]
        if freeze:
            assert all(g is None for g in backbone_grads)
        else:
            assert all(g is not None and g.abs().sum() > 0 for g in backbone_grads)


def test_cnn_lstm_fine_tunes_a_backbone_made_frozen():
    """create_backbone makes frozen backbones; CNNLSTM(..., freeze_backbone=False) left
    such a one frozen (no gradients, BatchNorm in eval mode): no fine-tuning, silently."""
    from videoact.backbones import create_backbone

    backbone = create_backbone("efficientnet_lite0", pretrained=False)
    assert backbone.frozen
    model = CNNLSTM(backbone, create_temporal_model("bilstm", backbone.feature_dim, C, hidden=8, proj_dim=8),
                    freeze_backbone=False)
    # in the new module's (training) mode from the start: it stayed in eval mode, so its
    # BatchNorm did not adapt until someone called model.train()
    assert model.training and backbone.training and not backbone.frozen
    model.eval()
    model.train()
    assert not backbone.frozen and backbone.training
    nn.functional.cross_entropy(model(torch.randn(1, 2, 3, 32, 32)), torch.tensor([1])).backward()
    assert all(p.grad is not None for p in backbone.parameters())


def test_cnn_lstm_rejects_mismatched_parts():
    with pytest.raises(TypeError, match="feature_dim"):
        CNNLSTM(nn.Conv2d(3, 3, 1), create_temporal_model("meanpool", D, C))
    with pytest.raises(ValueError, match="in_dim=7"):
        CNNLSTM(TinyBackbone(), create_temporal_model("meanpool", 7, C))
    model = CNNLSTM(TinyBackbone(), create_temporal_model("meanpool", D, C))
    with pytest.raises(ValueError, match=r"\[B, T, 3, H, W\]"):
        model(torch.randn(4, 3, 32, 32))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bilstm_cuda_matches_cpu_with_padding():
    model = make_model(MODELS["bilstm-attention-2layers"])
    x = padded_batch(LENGTHS)
    with torch.no_grad():
        cpu = model(x, torch.tensor(LENGTHS))
        gpu = model.cuda()(x.cuda(), torch.tensor(LENGTHS).cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["bilstm", "meanpool"])
def test_centering_ignores_a_constant_offset_and_padding(name):
    """With center=True a feature offset shared by every frame of a clip cancels out."""
    torch.manual_seed(0)
    model = create_temporal_model(name, in_dim=6, num_classes=3, center=True, hidden=8, proj_dim=8).eval()
    x = torch.randn(2, 5, 6)
    lengths = torch.tensor([5, 3])
    x[1, 3:] = 1e6  # padding
    shifted = x.clone()
    shifted[0] += torch.randn(6) * 10
    shifted[1, :3] += torch.randn(6) * 10
    torch.testing.assert_close(model(x, lengths), model(shifted, lengths), atol=1e-4, rtol=1e-4)
    # and without centering the offset matters
    plain = create_temporal_model(name, in_dim=6, num_classes=3, hidden=8, proj_dim=8).eval()
    assert not torch.allclose(plain(x, lengths), plain(shifted, lengths), atol=1e-4)
