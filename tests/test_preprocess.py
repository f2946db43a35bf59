"""preprocess_frames against torchvision/PIL transforms, on real pictures and a real video."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from videoact import preprocess as pp
from videoact.preprocess import preprocess_frames
from videoact.testing import read_frame_index, write_coded_video

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _pictures() -> dict[str, np.ndarray]:
    skdata = pytest.importorskip("skimage.data")
    coffee = skdata.coffee()  # 400 x 600, landscape
    return {
        "landscape": skdata.chelsea(),  # 300 x 451 (odd width)
        "portrait": np.ascontiguousarray(coffee.transpose(1, 0, 2)),  # 600 x 400
        "coffee": coffee,
    }


def _pixel_error(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """|out - ref| in 0..255 pixel units, per element."""
    return (out - ref).abs() * torch.tensor(STD).view(3, 1, 1) * 255.0


@pytest.mark.parametrize("resize_size", [None, 256])
def test_matches_torchvision_resize_and_center_crop(resize_size):
    for label, picture in _pictures().items():
        ref = T.Compose([
            T.Resize(resize_size or 224), T.CenterCrop(224), T.ToTensor(), T.Normalize(MEAN, STD),
        ])(Image.fromarray(picture))
        out = preprocess_frames(torch.from_numpy(picture)[None], 224, MEAN, STD, resize_size=resize_size)
        assert out.shape == (1, 3, 224, 224) and out.dtype == torch.float32
        err = _pixel_error(out[0], ref)
        # PIL and PyTorch's uint8 antialias both round to whole pixels: off by one at most.
        assert err.max() <= 1.01, (label, err.max())
        assert err.mean() < 0.05, (label, err.mean())


def test_squash_matches_torchvision_resize_to_square():
    for label, picture in _pictures().items():
        ref = T.Compose([T.Resize((160, 160)), T.ToTensor(), T.Normalize(MEAN, STD)])(Image.fromarray(picture))
        out = preprocess_frames(picture[None], 160, MEAN, STD, resize="squash")  # numpy input
        assert out.shape == (1, 3, 160, 160)
        err = _pixel_error(out[0], ref)
        assert err.max() <= 1.01 and err.mean() < 0.05, (label, err.max(), err.mean())


def test_float_resize_path_matches_pil():
    # Off the CPU the resize runs on floats; check that path against PIL too.
    picture = _pictures()["landscape"]
    x = torch.from_numpy(picture)[None].permute(0, 3, 1, 2).float()
    target = pp.resized_size(*picture.shape[:2], 224)
    assert target == (224, 336)  # int(224 * 451 / 300) = 336, as torchvision truncates
    out = pp._resize(x, target)[0]
    ref = torch.from_numpy(np.array(Image.fromarray(picture).resize(target[::-1], Image.BILINEAR)))
    err = (out - ref.permute(2, 0, 1).float()).abs()
    assert err.max() <= 1.01 and err.mean() < 0.3, (err.max(), err.mean())


@pytest.mark.parametrize(
    "height,width", [(96, 128), (128, 96), (51, 77), (300, 17), (224, 224), (20, 30)]
)
@pytest.mark.parametrize("resize", ["short_side_center_crop", "squash"])
def test_shapes_for_any_input_size(height, width, resize):
    frames = torch.randint(0, 256, (3, height, width, 3), dtype=torch.uint8)
    out = preprocess_frames(frames, 112, MEAN, STD, resize=resize)
    assert out.shape == (3, 3, 112, 112)
    assert out.is_contiguous()
    assert torch.isfinite(out).all()


def test_normalization_values_and_dtype_and_layout():
    # A flat colour stays flat through resizing, so every output value is known exactly.
    frames = torch.empty(2, 90, 160, 3, dtype=torch.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 0, 128, 255
    expected = torch.tensor([(v / 255.0 - m) / s for v, m, s in zip((0, 128, 255), MEAN, STD)])
    out = preprocess_frames(frames, 64, MEAN, STD)
    assert torch.allclose(out, expected.view(1, 3, 1, 1).expand_as(out), atol=1e-5)

    half = preprocess_frames(frames, 64, MEAN, STD, dtype=torch.float16, channels_last=True)
    assert half.dtype == torch.float16 and half.shape == (2, 3, 64, 64)
    assert half.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(half.float(), out, atol=1e-2)


def test_center_crop_keeps_the_centre():
    # Left third red, middle green, right third blue: a centre crop of a 3:1 frame is green.
    frames = torch.zeros(1, 60, 180, 3, dtype=torch.uint8)
    frames[:, :, :60, 0] = 255
    frames[:, :, 60:120, 1] = 255
    frames[:, :, 120:, 2] = 255
    out = preprocess_frames(frames, 30, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert out.shape == (1, 3, 30, 30)
    # (the antialias filter blends one column at each stripe border)
    inner = out[0, :, :, 1:-1]
    assert inner[1].min() > 0.99 and inner[0].max() < 0.01 and inner[2].max() < 0.01
    squashed = preprocess_frames(frames, 30, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), resize="squash")
    assert squashed[0, 0, :, 0].min() > 0.99 and squashed[0, 2, :, -1].min() > 0.99


def test_real_video_frames_survive_preprocessing(tmp_path):
    # Encoded, decoded, squashed and normalized: the frame index must still read back.
    path = write_coded_video(tmp_path / "coded.avi", 12, height=96, width=128)
    cap = cv2.VideoCapture(str(path))
    decoded = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    assert len(decoded) == 12
    out = preprocess_frames(torch.from_numpy(np.stack(decoded)), 160, MEAN, STD, resize="squash")
    pixels = (out * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)) * 255
    pixels = pixels.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert [read_frame_index(p) for p in pixels] == list(range(12))


def test_empty_batch():
    out = preprocess_frames(torch.zeros(0, 40, 50, 3, dtype=torch.uint8), 32, MEAN, STD)
    assert out.shape == (0, 3, 32, 32)


def test_bad_input_is_rejected_clearly():
    with pytest.raises(TypeError, match="uint8"):
        preprocess_frames(torch.zeros(1, 8, 8, 3), 8, MEAN, STD)
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        preprocess_frames(torch.zeros(8, 8, 3, dtype=torch.uint8), 8, MEAN, STD)
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        preprocess_frames(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 8, MEAN, STD)
    with pytest.raises(ValueError, match="resize must be one of"):
        preprocess_frames(torch.zeros(1, 8, 8, 3, dtype=torch.uint8), 8, MEAN, STD, resize="crop")
    with pytest.raises(ValueError, match="resize_size"):
        preprocess_frames(torch.zeros(1, 8, 8, 3, dtype=torch.uint8), 8, MEAN, STD, resize_size=4)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu_from_pinned_memory():
    picture = _pictures()["landscape"]
    frames = torch.from_numpy(np.stack([picture] * 4)).pin_memory()
    gpu = preprocess_frames(frames, 224, MEAN, STD, device="cuda")
    assert gpu.device.type == "cuda" and gpu.shape == (4, 3, 224, 224)
    cpu = preprocess_frames(frames, 224, MEAN, STD)
    err = _pixel_error(gpu.cpu()[0], cpu[0])
    assert err.max() <= 1.01 and err.mean() < 0.3
