"""The temporal-order benchmark: ten classes in five pairs of opposite motions.

Each pair is one motion in two temporal directions::

    move_left / move_right   move_up / move_down   zoom_in / zoom_out
    rotate_cw / rotate_ccw   fade_in / fade_out

**Defining property.** A clip of one class played backwards is a clip of its partner,
drawn from exactly the same distribution. This holds by construction: the second class
of a pair is sampled by sampling the first class and applying :func:`mirror`, which
swaps every animated quantity's start and end and reverses its per-frame easing. So
the *set* of frames of a clip (ignoring order) has the same distribution for both
classes of a pair, and a model that ignores frame order (a per-frame classifier
averaged over time) cannot beat chance within a pair; it can still tell the pairs
apart (a 50% ceiling on the 10-way accuracy). A model that uses order can reach 100%.
The frames a model sees keep the property where the sampling mirrors too: uniform
segment centres with an even number of segments (``sampling.uniform_segments``), as
the shipped config takes them; ``fps`` sampling starts at the first frame, so the
frames taken of a clip and of its reversal can differ by part of a frame interval.

**Clip content** (all random per clip, all class-independent except the one motion):

- a smooth textured background (blended low-frequency colour fields, a gradient and a
  fine texture) that drifts slightly in a random direction (half the clips: no drift);
- one foreground shape (circle, ellipse, square, triangle, star, cross, hexagon) of
  random colour, its circumscribed diameter 8-20% of the frame width (of the *scale
  length*, see below). Translations cover 25-50% of the frame width (height for
  up/down) with a small random perpendicular component; zooms 1.5x-3x; rotations
  90-180 degrees; fades run between a low opacity (0-0.3) and a high one (0.8-1).
  Motion follows a random monotonic easing (linear, ease-in, ease-out, ease-in-out,
  with smooth random speed jitter). Classes without translation give the shape a
  small drift in a random direction.
- every shape carries a contrasting marking that has no rotational symmetry (an
  off-centre dot, a two-tone half, a 90-degree wedge, or stripes plus a dot), so a
  rotating circle or square is visibly rotating: rotation is not label noise;
- zero to two distractor shapes that translate, scale and rotate in random directions
  (in front of or behind the foreground), carrying no class information; their motions
  stay below the smallest class motion, so no distractor mimics another class;
- Gaussian sensor noise with a random sigma (0.5-8 grey levels), clipped to uint8.

**Scale length.** Shape sizes and every motion that is not the class motion (the
drifts of the background and of non-translating foregrounds, the distractors'
translations) are fractions of ``min(W, 4/3 H)`` (:func:`_scale_length`): the frame
width up to a 4:3 frame, the width of a 4:3 frame of the same height beyond. Random
directions are isotropic, so a fraction of the width alone would move them vertically
by more than the class translations' 25% of the *height* in wide frames (and let a
zoomed shape outgrow the frame's height); this way the guarantees hold per axis at
every size: a distractor moves at most 15% of the width horizontally and 20% of the
height vertically, a drift at most 8% of the width and 10.7% of the height, against
the classes' 25% along their own axis. Frames up to 4:3 (160x120 included) are
exactly what they were before this rule.

Each clip is a pure function of explicit parameters (:class:`ClipParams`, from
:func:`sample_params`) rendered by :func:`render`; ``render(mirror(p))`` equals
``render(p)[::-1]`` bit for bit. Files are seeded per clip from
``(seed, split, class, index)`` (:func:`clip_rng`), so parallel workers produce the
same output and growing a split never changes the clips already written.

The files keep the property exactly: they are Motion JPEG in MP4, every frame coded on
its own, so a clip's file and its mirror's decode to the same pictures in reverse order
(tested). An inter-frame codec would not: ``mp4v`` (this generator's codec up to version
3) codes a key frame every 12 frames from the first, and the pictures between decay, so
the start of a clip was sharper than its end in either class, a cue that needs no order
(measured 2026-12-01: the sharper of the two extreme frames was the start in 74-92 % of
clips of each pair).
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import cv2
import numpy as np

from .atomic import atomic_write_text, pid_alive

CLASSES: tuple[str, ...] = (
    "move_left",
    "move_right",
    "move_up",
    "move_down",
    "zoom_in",
    "zoom_out",
    "rotate_cw",
    "rotate_ccw",
    "fade_in",
    "fade_out",
)
PAIRS: tuple[tuple[str, str], ...] = tuple(
    (CLASSES[i], CLASSES[i + 1]) for i in range(0, len(CLASSES), 2)
)
PARTNER: dict[str, str] = {a: b for a, b in PAIRS} | {b: a for a, b in PAIRS}

SPLITS: tuple[str, ...] = ("train", "val", "test")
SHAPES: tuple[str, ...] = ("circle", "ellipse", "square", "triangle", "star", "cross", "hexagon")
PATTERNS: tuple[str, ...] = ("dot", "half", "wedge", "stripes")

MIN_FRAMES, MAX_FRAMES = 16, 48
MIN_WIDTH, MIN_HEIGHT = 160, 120
DEFAULT_FPS = 25.0
# Bump when the rendering or sampling changes: a folder made by another version is
# refused rather than silently mixed (see make_synthetic), unless _SAME_OUTPUT_AS says
# that version wrote exactly these clips at the folder's size.
GENERATOR_VERSION = 4
# Every frame coded on its own (see the module docstring). 3 -> 4: Motion JPEG instead
# of mp4v, the same pictures before coding.
CLIP_FOURCC = "MJPG"
# Older versions -> the frame sizes (height, width) at which they wrote exactly the files
# this one writes, so their folders may be extended. None since version 4 (2 -> 3 had
# changed only frames wider than 4:3: shape sizes and non-class motions became fractions
# of min(W, 4/3 H) instead of W; 3 -> 4 changed the codec of every file).
_SAME_OUTPUT_AS: dict[int, Any] = {}
_LOW_DISK = 16 * 2**20  # bytes free below which a clip that did not encode is put down to a full disk
_WORKER_ERROR = "make-synthetic error: "  # a worker's failure line on its standard error
_PROGRESS_QUANTUM = 2.0**-20  # dyadic progress values make 1 - (1 - p) == p exactly
_SUPERSAMPLE = 4  # anti-aliasing of shape outlines: k x k samples per pixel


# --------------------------------------------------------------------------- params


@dataclass(frozen=True)
class Track:
    """One animated quantity: ``value[i] = start * (1 - progress[i]) + end * progress[i]``.

    ``start``/``end`` are tuples of length ``D``; ``progress`` has one value per frame,
    non-decreasing from 0 to 1, each a multiple of 2**-20 so that mirroring is exact.
    """

    start: tuple[float, ...]
    end: tuple[float, ...]
    progress: tuple[float, ...]

    def values(self) -> np.ndarray:
        """Per-frame values ``[T, D]`` (float64)."""
        p = np.asarray(self.progress, np.float64)[:, None]
        start = np.asarray(self.start, np.float64)[None]
        end = np.asarray(self.end, np.float64)[None]
        # Two products and one (commutative) sum: the mirrored track yields the same bits.
        return start * (1.0 - p) + end * p

    def mirrored(self) -> "Track":
        """The same motion played backwards."""
        return Track(self.end, self.start, tuple(1.0 - p for p in reversed(self.progress)))


@dataclass(frozen=True)
class Shape:
    """How an object looks: outline, fill colour and an asymmetric marking."""

    kind: str  # one of SHAPES
    aspect: float  # y/x axis ratio (ellipse only; 1 otherwise)
    color: tuple[float, float, float]  # RGB 0-255
    pattern: str  # one of PATTERNS
    pattern_color: tuple[float, float, float]
    pattern_angle: float  # degrees, orientation of the marking in the shape's frame
    stripe_frequency: float  # stripes per unit length (pattern "stripes")


@dataclass(frozen=True)
class ObjectParams:
    """One shape and its motion. ``size`` is the circumscribed diameter in pixels at
    scale 1; ``center`` is (x, y) in pixels; ``angle`` is clockwise on screen in
    degrees; ``opacity`` in [0, 1]."""

    shape: Shape
    size: float
    center: Track
    scale: Track
    angle: Track
    opacity: Track
    in_front: bool = True  # distractors only: drawn over the foreground

    def mirrored(self) -> "ObjectParams":
        return dataclasses.replace(
            self,
            center=self.center.mirrored(),
            scale=self.scale.mirrored(),
            angle=self.angle.mirrored(),
            opacity=self.opacity.mirrored(),
        )


@dataclass(frozen=True)
class ClipParams:
    """Everything that determines a clip; :func:`render` is a pure function of it."""

    class_name: str
    height: int
    width: int
    fps: float
    background_seed: int
    background_offset: Track  # (dx, dy) drift of the background in pixels
    foreground: ObjectParams
    distractors: tuple[ObjectParams, ...]
    noise_sigma: float
    noise_seeds: tuple[int, ...]  # one per frame

    @property
    def num_frames(self) -> int:
        return len(self.noise_seeds)


def mirror(params: ClipParams) -> ClipParams:
    """The clip played backwards, labelled with the partner class.

    ``render(mirror(p))`` equals ``render(p)[::-1]`` exactly.
    """
    return dataclasses.replace(
        params,
        class_name=PARTNER[params.class_name],
        background_offset=params.background_offset.mirrored(),
        foreground=params.foreground.mirrored(),
        distractors=tuple(d.mirrored() for d in params.distractors),
        noise_seeds=tuple(reversed(params.noise_seeds)),
    )


# ------------------------------------------------------------------------- sampling


def clip_rng(seed: int, split: str, class_name: str, index: int) -> np.random.Generator:
    """The random generator of one benchmark clip, independent of all other clips."""
    return np.random.default_rng(
        [int(seed), SPLITS.index(split), CLASSES.index(class_name), int(index)]
    )


def _check_class(class_name: str) -> None:
    if class_name not in PARTNER:
        raise ValueError(f"unknown class {class_name!r}; the classes are {', '.join(CLASSES)}")


def _check_size(height: int, width: int) -> None:
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        raise ValueError(
            f"frame size {width}x{height} is too small: the benchmark needs at least "
            f"{MIN_WIDTH}x{MIN_HEIGHT} (width x height) so the shapes' markings stay readable"
        )


def _sample_progress(rng: np.random.Generator, num_frames: int) -> tuple[float, ...]:
    """A random monotonic easing curve ``[T]`` from exactly 0 to exactly 1."""
    if num_frames == 1:
        return (0.0,)
    t = np.linspace(0.0, 1.0, num_frames)
    a = rng.uniform(1.3, 2.5)
    kind = rng.integers(4)
    if kind == 0:
        curve = t
    elif kind == 1:  # ease-in
        curve = t**a
    elif kind == 2:  # ease-out
        curve = 1.0 - (1.0 - t) ** a
    else:  # ease-in-out
        curve = t**a / (t**a + (1.0 - t) ** a)
    steps = np.diff(curve)
    # Smooth random speed changes: log-normal factors on a coarse grid, interpolated.
    knots = rng.normal(0.0, 0.3, size=4)
    jitter = np.exp(np.interp(np.linspace(0, 3, steps.size), np.arange(4), knots))
    steps = steps * jitter + 1e-3 / num_frames  # strictly positive: strictly monotonic
    p = np.concatenate([[0.0], np.cumsum(steps)]) / steps.sum()
    p = np.round(p / _PROGRESS_QUANTUM) * _PROGRESS_QUANTUM
    p[0], p[-1] = 0.0, 1.0
    return tuple(float(v) for v in p)


def _random_color(rng: np.random.Generator, avoid: Sequence[np.ndarray], min_distance: float) -> tuple[float, float, float]:
    """A random RGB colour at least ``min_distance`` from each colour in ``avoid``
    (the best of 64 tries if none qualifies), so shapes and markings stay visible."""
    best, best_d = None, -1.0
    for _ in range(64):
        c = rng.uniform(0, 255, size=3)
        d = min((float(np.linalg.norm(c - a)) for a in avoid), default=1e9)
        if d >= min_distance:
            return tuple(float(v) for v in c)
        if d > best_d:
            best, best_d = c, d
    return tuple(float(v) for v in best)


def _sample_shape(rng: np.random.Generator, background_mean: np.ndarray) -> Shape:
    kind = SHAPES[rng.integers(len(SHAPES))]
    color = _random_color(rng, [background_mean], 110.0)
    pattern_color = _random_color(rng, [np.asarray(color), background_mean], 90.0)
    return Shape(
        kind=kind,
        aspect=float(rng.uniform(0.5, 0.75)) if kind == "ellipse" else 1.0,
        color=color,
        pattern=PATTERNS[rng.integers(len(PATTERNS))],
        pattern_color=pattern_color,
        pattern_angle=float(rng.uniform(0, 360)),
        stripe_frequency=float(rng.uniform(1.2, 2.2)),
    )


def _path_start(rng: np.random.Generator, disp: np.ndarray, radius: float, height: int, width: int) -> np.ndarray:
    """A start point such that the whole straight path start -> start+disp keeps a disc
    of ``radius`` inside the frame (the centred path where that is impossible)."""
    start = np.empty(2)
    for axis, extent in enumerate((width, height)):
        r = min(radius, extent / 2)
        lo = r - min(0.0, disp[axis])
        hi = extent - r - max(0.0, disp[axis])
        start[axis] = rng.uniform(lo, hi) if lo < hi else (extent - disp[axis]) / 2
    return start


def _random_direction(rng: np.random.Generator) -> np.ndarray:
    theta = rng.uniform(0, 2 * np.pi)
    return np.array([np.cos(theta), np.sin(theta)])


def _scale_length(height: int, width: int) -> float:
    """The length that sizes and non-class motions are fractions of: ``min(W, 4/3 H)``.

    Up to 4:3 this is the width itself (the same float, so those sizes sample exactly
    as before); wider frames use the width of a 4:3 frame of their height, which keeps
    isotropic motions below the class translations along *both* axes.
    """
    return float(min(width, height * 4 / 3))


def _const(value: Iterable[float], progress: tuple[float, ...]) -> Track:
    value = tuple(float(v) for v in value)
    return Track(value, value, progress)


def _sample_foreground(
    motion: str, rng: np.random.Generator, height: int, width: int, num_frames: int, background_mean: np.ndarray
) -> ObjectParams:
    """The foreground of the first class of a pair (``motion``)."""
    shape = _sample_shape(rng, background_mean)
    unit = _scale_length(height, width)
    size = float(rng.uniform(0.08, 0.20) * unit)  # zoomed 3x: at most 80% of the height
    progress = _sample_progress(rng, num_frames)
    scale = (1.0, 1.0)
    angle0 = float(rng.uniform(0, 360))
    angle = (angle0, angle0)
    level = float(rng.uniform(0.8, 1.0))
    opacity = (level, level)
    if motion == "move_left":
        disp = np.array([-rng.uniform(0.25, 0.5) * width, rng.uniform(-0.05, 0.05) * height])
    elif motion == "move_up":
        disp = np.array([rng.uniform(-0.05, 0.05) * width, -rng.uniform(0.25, 0.5) * height])
    else:
        # Classes without translation drift a little in a random direction: at most 8%
        # of the width and 8/0.75 = 10.7% of the height, far below a translation class.
        disp = _random_direction(rng) * rng.uniform(0.0, 0.08) * unit
        if motion == "zoom_in":
            scale = (1.0, float(rng.uniform(1.5, 3.0)))
        elif motion == "rotate_cw":
            angle = (angle0, angle0 + float(rng.uniform(90, 180)))
        elif motion == "fade_in":
            opacity = (float(rng.uniform(0.0, 0.3)), float(rng.uniform(0.8, 1.0)))
        else:
            raise AssertionError(motion)
    start = _path_start(rng, disp, size / 2 * max(scale), height, width)
    return ObjectParams(
        shape=shape,
        size=size,
        center=Track(tuple(start), tuple(start + disp), progress),
        scale=Track((scale[0],), (scale[1],), progress),
        angle=Track((angle[0],), (angle[1],), progress),
        opacity=Track((opacity[0],), (opacity[1],), progress),
    )


def _sample_distractor(
    rng: np.random.Generator, height: int, width: int, num_frames: int, background_mean: np.ndarray
) -> ObjectParams:
    """A shape whose translation, scaling and rotation all have random directions.

    Its motions stay below the smallest class motion (translation at most 15% of the
    width and 20% of the height against 25% along either axis, scaling at most 1.25x
    against 1.5x, rotation at most 60 degrees against 90, constant opacity against a
    fade), so a distractor never looks like the foreground of another class: the label
    is always decidable from the clip.
    """
    shape = _sample_shape(rng, background_mean)
    unit = _scale_length(height, width)  # min(W, 4/3 H): 0.15 * unit <= 0.2 H
    size = float(rng.uniform(0.06, 0.14) * unit)
    progress = _sample_progress(rng, num_frames)
    disp = _random_direction(rng) * rng.uniform(0.0, 0.15) * unit
    scale1 = float(np.exp(rng.uniform(-np.log(1.25), np.log(1.25))))
    start = _path_start(rng, disp, size / 2 * max(1.0, scale1), height, width)
    angle0 = float(rng.uniform(0, 360))
    return ObjectParams(
        shape=shape,
        size=size,
        center=Track(tuple(start), tuple(start + disp), progress),
        scale=Track((1.0,), (scale1,), progress),
        angle=Track((angle0,), (angle0 + float(rng.uniform(-60, 60)),), progress),
        opacity=_const([rng.uniform(0.6, 1.0)], progress),
        in_front=bool(rng.random() < 0.5),
    )


def _drift_margin(height: int, width: int) -> int:
    return int(round(0.1 * max(height, width)))


def sample_params(
    class_name: str,
    rng: np.random.Generator,
    *,
    height: int = 120,
    width: int = 160,
    num_frames: int | None = None,
    fps: float = DEFAULT_FPS,
) -> ClipParams:
    """Draw the parameters of one clip of ``class_name``.

    ``num_frames`` defaults to a random length in [16, 48]. The second class of each
    pair is the mirror of a sample of the first, which is what makes the pair's
    distributions exact time-reversals of each other.
    """
    _check_class(class_name)
    _check_size(height, width)
    if num_frames is None:
        num_frames = int(rng.integers(MIN_FRAMES, MAX_FRAMES, endpoint=True))
    if num_frames < 2:
        raise ValueError(f"a clip needs at least 2 frames to show a motion, got {num_frames}")
    first = class_name if class_name in dict(PAIRS) else PARTNER[class_name]

    background_seed = int(rng.integers(2**63))
    background_mean = _background_canvas(background_seed, height, width).reshape(-1, 3).mean(0)
    margin = _drift_margin(height, width)
    drift = _random_direction(rng) * rng.uniform(0.0, 0.06 * _scale_length(height, width)) * (rng.random() < 0.5)
    offset0 = np.array([rng.uniform(-margin - min(0, d), margin - max(0, d)) for d in drift])
    background_offset = Track(tuple(offset0), tuple(offset0 + drift), _sample_progress(rng, num_frames))

    foreground = _sample_foreground(first, rng, height, width, num_frames, background_mean)
    distractors = tuple(
        _sample_distractor(rng, height, width, num_frames, background_mean)
        for _ in range(int(rng.integers(0, 2, endpoint=True)))
    )
    params = ClipParams(
        class_name=first,
        height=height,
        width=width,
        fps=float(fps),
        background_seed=background_seed,
        background_offset=background_offset,
        foreground=foreground,
        distractors=distractors,
        noise_sigma=float(rng.uniform(0.5, 8.0)),
        noise_seeds=tuple(int(s) for s in rng.integers(2**63, size=num_frames)),
    )
    return params if class_name == first else mirror(params)


# ------------------------------------------------------------------------ rendering


def _background_canvas(seed: int, height: int, width: int) -> np.ndarray:
    """A smooth random texture ``[H + 2m, W + 2m, 3]`` float32 (m: drift margin)."""
    rng = np.random.default_rng(seed)
    margin = _drift_margin(height, width)
    ch, cw = height + 2 * margin, width + 2 * margin
    k = int(rng.integers(2, 4, endpoint=True))
    palette = rng.uniform(0, 255, size=(k, 3)).astype(np.float32)
    gh, gw = int(rng.integers(2, 5, endpoint=True)), int(rng.integers(2, 6, endpoint=True))
    fields = rng.normal(size=(gh, gw, k)).astype(np.float32) * np.float32(rng.uniform(1.5, 4.0))
    fields = cv2.resize(fields, (cw, ch), interpolation=cv2.INTER_CUBIC).reshape(ch, cw, k)
    weights = np.exp(fields - fields.max(axis=2, keepdims=True))
    weights /= weights.sum(axis=2, keepdims=True)
    canvas = weights @ palette  # blend of the palette colours in soft blobs
    ys, xs = np.mgrid[0:ch, 0:cw].astype(np.float32)
    gradient = (rng.normal() * (xs / cw - 0.5) + rng.normal() * (ys / ch - 0.5))[..., None]
    canvas += gradient * rng.normal(0, 25, size=3).astype(np.float32)
    fine = rng.normal(size=(max(2, ch // 6), max(2, cw // 6), 3)).astype(np.float32)
    canvas += cv2.resize(fine, (cw, ch), interpolation=cv2.INTER_LINEAR) * np.float32(rng.uniform(2, 12))
    return np.clip(canvas, 0, 255).astype(np.float32)


def _unit_polygon(kind: str, aspect: float) -> np.ndarray:
    """The outline ``[N, 2]`` in shape coordinates, inside the unit circle."""
    if kind in ("circle", "ellipse"):
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        return np.stack([np.cos(t), aspect * np.sin(t)], 1)
    if kind == "square":
        t = np.pi / 4 + np.arange(4) * np.pi / 2
        return np.stack([np.cos(t), np.sin(t)], 1)
    if kind == "triangle":
        t = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return np.stack([np.cos(t), np.sin(t)], 1)
    if kind == "hexagon":
        t = np.arange(6) * np.pi / 3
        return np.stack([np.cos(t), np.sin(t)], 1)
    if kind == "star":
        t = -np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([r * np.cos(t), r * np.sin(t)], 1)
    if kind == "cross":
        a, b = 0.3, 0.95  # arm half-width, arm length
        return np.array(
            [[a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b], [-a, b], [-a, a], [-b, a], [-b, -a], [-a, -a], [-a, -b]]
        )
    raise ValueError(f"unknown shape {kind!r}; the shapes are {', '.join(SHAPES)}")


def _soft_step(distance: np.ndarray, pixel: float) -> np.ndarray:
    """Anti-aliased inside indicator from a signed distance (positive = inside)."""
    return np.clip(distance / pixel + 0.5, 0.0, 1.0)


def _pattern_mask(shape: Shape, u: np.ndarray, v: np.ndarray, pixel: float) -> np.ndarray:
    """Where the marking covers the shape, in shape coordinates ``u, v`` (0..1)."""
    phi = np.deg2rad(shape.pattern_angle)
    n = (np.cos(phi), np.sin(phi))
    along = u * n[0] + v * n[1]

    def dot() -> np.ndarray:
        du, dv = u - 0.45 * n[0], v - 0.45 * n[1]
        return _soft_step(0.3 - np.sqrt(du * du + dv * dv), pixel)

    if shape.pattern == "dot":
        return dot()
    if shape.pattern == "half":
        return _soft_step(along, pixel)
    if shape.pattern == "wedge":  # the quarter between directions phi and phi + 90 degrees
        across = -u * n[1] + v * n[0]
        return _soft_step(np.minimum(along, across), pixel)
    if shape.pattern == "stripes":  # stripes alone look the same after 180 degrees: add a dot
        w = 2 * np.pi * shape.stripe_frequency
        stripes = _soft_step(np.sin(w * along) / w, pixel)
        return np.maximum(stripes, dot())
    raise ValueError(f"unknown pattern {shape.pattern!r}")


def _draw_object(frame: np.ndarray, obj: ObjectParams, center: np.ndarray, scale: float, angle: float, opacity: float) -> None:
    """Alpha-composite one shape onto ``frame`` ``[H, W, 3]`` float32, in place."""
    if opacity <= 0.0:
        return
    height, width = frame.shape[:2]
    radius = obj.size / 2 * scale  # pixels per shape unit
    theta = np.deg2rad(angle)
    c, s = np.cos(theta), np.sin(theta)
    # Clockwise on screen: with y pointing down this is the usual rotation matrix.
    rot = np.array([[c, -s], [s, c]])
    poly = _unit_polygon(obj.shape.kind, obj.shape.aspect) @ rot.T * radius + center
    x0 = max(int(np.floor(poly[:, 0].min())) - 1, 0)
    y0 = max(int(np.floor(poly[:, 1].min())) - 1, 0)
    x1 = min(int(np.ceil(poly[:, 0].max())) + 2, width)
    y1 = min(int(np.ceil(poly[:, 1].max())) + 2, height)
    if x0 >= x1 or y0 >= y1:
        return  # entirely outside the frame
    # Coverage by 4x4 supersampling: OpenCV's LINE_AA fill fattens shapes by 20-30%
    # and its area jumps by a few percent between sub-pixel positions (measured), which
    # would make zooms flicker. Sub-sample j of pixel x sits at x + (j - 1.5) / 4.
    k = _SUPERSAMPLE
    fine = np.zeros(((y1 - y0) * k, (x1 - x0) * k), np.uint8)
    pts = np.round(((poly - (x0, y0)) * k + (k - 1) / 2) * 16).astype(np.int32)  # 4 fractional bits
    cv2.fillPoly(fine, [pts], 255, lineType=cv2.LINE_8, shift=4)
    mask = cv2.resize(fine, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    alpha = mask.astype(np.float32) * np.float32(opacity / 255.0)
    # Shape coordinates of every pixel centre (inverse rotation and scale).
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    dx, dy = xs - center[0], ys - center[1]
    u = (c * dx + s * dy) / radius
    v = (-s * dx + c * dy) / radius
    m = _pattern_mask(obj.shape, u, v, 1.0 / radius).astype(np.float32)[..., None]
    color = np.asarray(obj.shape.color, np.float32) * (1 - m) + np.asarray(obj.shape.pattern_color, np.float32) * m
    alpha = alpha[..., None]
    region = frame[y0:y1, x0:x1]
    region *= 1 - alpha
    region += color * alpha


def render(params: ClipParams) -> np.ndarray:
    """Render a clip: uint8 RGB frames ``[T, H, W, 3]``. Pure function of ``params``."""
    height, width = params.height, params.width
    margin = _drift_margin(height, width)
    canvas = _background_canvas(params.background_seed, height, width)
    offsets = params.background_offset.values()
    objects = [params.foreground, *params.distractors]
    behind = [d for d in params.distractors if not d.in_front]
    in_front = [d for d in params.distractors if d.in_front]
    tracks = {
        id(o): (o.center.values(), o.scale.values()[:, 0], o.angle.values()[:, 0], o.opacity.values()[:, 0])
        for o in objects
    }
    out = np.empty((params.num_frames, height, width, 3), np.uint8)
    for i in range(params.num_frames):
        # Sub-pixel crop of the (larger) background canvas at this frame's offset.
        m = np.array([[1, 0, margin + offsets[i, 0]], [0, 1, margin + offsets[i, 1]]], np.float64)
        frame = cv2.warpAffine(
            canvas, m, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT
        )
        for obj in (*behind, params.foreground, *in_front):
            center, scale, angle, opacity = tracks[id(obj)]
            _draw_object(frame, obj, center[i], float(scale[i]), float(angle[i]), float(opacity[i]))
        if params.noise_sigma > 0:
            noise = np.random.default_rng(params.noise_seeds[i]).standard_normal((height, width, 3), np.float32)
            noise *= np.float32(params.noise_sigma)
            frame += noise
        np.rint(frame, out=frame)
        np.clip(frame, 0, 255, out=frame)
        out[i] = frame  # exact: whole numbers in [0, 255]
    return out


def render_clip(
    class_name: str,
    rng: np.random.Generator,
    *,
    height: int = 120,
    width: int = 160,
    num_frames: int | None = None,
) -> np.ndarray:
    """Sample and render one clip of ``class_name``: uint8 RGB ``[T, H, W, 3]``."""
    return render(sample_params(class_name, rng, height=height, width=width, num_frames=num_frames))


@dataclass(frozen=True)
class Segment:
    """One known segment of a :func:`render_sequence` video: frames [start, end),
    rendered from ``params``."""

    class_name: str
    start: int
    end: int
    params: ClipParams


def render_sequence(
    segments: Sequence[tuple[str, int]],
    rng: np.random.Generator,
    *,
    height: int = 120,
    width: int = 160,
) -> tuple[np.ndarray, list[Segment]]:
    """A long video made of known segments, e.g. ``[("move_left", 40), ("zoom_in", 30)]``.

    The segments share one background (drifting continuously across cuts) and one
    noise level; each has its own foreground shape, motion and distractors.
    Returns frames ``[sum(n), H, W, 3]`` uint8 RGB and the segments (frame ranges and
    parameters, ``frames[s.start:s.end] == render(s.params)``).
    """
    if not segments:
        raise ValueError("render_sequence needs at least one (class_name, num_frames) segment")
    shared: ClipParams | None = None
    offset = None
    clips, spans, t = [], [], 0
    for class_name, n in segments:
        p = sample_params(class_name, rng, height=height, width=width, num_frames=int(n))
        if shared is None:
            shared = p
        else:
            # Same background and noise level; the drift continues from where it stopped.
            drift = np.subtract(p.background_offset.end, p.background_offset.start)
            margin = _drift_margin(height, width)
            end = np.clip(offset + drift, -margin, margin)
            p = dataclasses.replace(
                p,
                background_seed=shared.background_seed,
                background_offset=Track(tuple(offset), tuple(end), p.background_offset.progress),
                noise_sigma=shared.noise_sigma,
            )
        offset = np.asarray(p.background_offset.end, np.float64)
        clips.append(render(p))
        spans.append(Segment(class_name, t, t + p.num_frames, p))
        t += p.num_frames
    return np.concatenate(clips), spans


# ------------------------------------------------------------------------ the files


def clip_path(split: str, class_name: str, index: int) -> str:
    """Path of a benchmark clip relative to the output folder."""
    return f"{split}/{class_name}/{class_name}_{index:04d}.mp4"


def _manifest(seed: int, height: int, width: int) -> dict[str, Any]:
    return {
        "generator": "videoact.synthetic",
        "version": GENERATOR_VERSION,
        "seed": int(seed),
        "height": int(height),
        "width": int(width),
        "fps": DEFAULT_FPS,
        "classes": list(CLASSES),
    }


def _same_output(found: dict[str, Any], manifest: dict[str, Any]) -> bool:
    """Whether ``found`` differs from ``manifest`` only by an older generator version
    that wrote the same clips at this size (see ``_SAME_OUTPUT_AS``)."""
    older = found.get("version")
    same = _SAME_OUTPUT_AS.get(older) if type(older) is int else None
    return (
        same is not None
        and {**found, "version": manifest["version"]} == manifest
        and bool(same(manifest["height"], manifest["width"]))
    )


def _check_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Refuse to add clips to a folder generated with other settings."""
    path = out / "synthetic.json"
    if path.exists():
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: unreadable benchmark manifest ({e}); use a new output folder") from e
        if not isinstance(found, dict):
            raise ValueError(f"{path}: unreadable benchmark manifest (not a JSON object); use a new output folder")
        if found != manifest and not _same_output(found, manifest):
            diff = {k: (found.get(k), v) for k, v in manifest.items() if found.get(k) != v}
            raise ValueError(
                f"{path}: this folder was generated with other settings "
                f"({', '.join(f'{k}: {a!r} there, {b!r} now' for k, (a, b) in diff.items())}); "
                "use a new output folder or the same settings"
            )
    else:
        atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")


def _count_decoded_frames(path: Path) -> tuple[int, tuple[int, int] | None]:
    cap = cv2.VideoCapture(str(path))
    n, size = 0, None
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            n += 1
            size = frame.shape[:2]
    finally:
        cap.release()
    return n, size


def _clean_partial(partial: Path) -> None:
    """Remove half-written clips of killed runs (their process no longer exists)."""
    if not partial.is_dir():
        return
    for entry in partial.iterdir():
        pid = entry.name.split("-")[0]
        if pid.isdigit() and pid_alive(int(pid)):
            continue  # still running (maybe a concurrent generator)
        shutil.rmtree(entry, ignore_errors=True)


def write_clip(path: str | os.PathLike, frames: np.ndarray, fps: float = DEFAULT_FPS) -> Path:
    """Encode RGB frames ``[T, H, W, 3]`` as the benchmark's files are: Motion JPEG in MP4,
    every frame coded on its own, so reversed frames make the reversed file's pictures."""
    from .testing import write_video

    # OpenCV's FFmpeg says, on standard error, that MJPG is not an MP4 tag and that it uses
    # 'mp4v', the tag MP4 gives Motion JPEG (object type 0x6C): expected, and two lines per
    # clip otherwise (neither OpenCV's log level nor OPENCV_FFMPEG_LOGLEVEL silences them).
    with _stderr_silenced():
        return write_video(path, frames, fps=fps, fourcc=CLIP_FOURCC)


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Standard error (file descriptor 2, where C libraries write) to /dev/null for a moment."""
    try:
        saved = os.dup(2)
    except OSError:  # no standard error at all: nothing to silence
        yield
        return
    try:
        sys.stderr.flush()
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 2)
        finally:
            os.close(null)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _write_clip(out: Path, split: str, class_name: str, index: int, seed: int, height: int, width: int,
                committer: _Committer | None = None) -> bool:
    """Render and write one clip unless it exists; True when written.

    The video is encoded in ``OUT/.partial/<pid>-<index>/`` (outside the class folders,
    so folder scanners never see it), checked by decoding it, fsynced and renamed into
    place: a clip that exists is complete. With a ``committer`` the last two steps are its
    (in its thread, while the caller renders the next clip).
    """
    final = out / clip_path(split, class_name, index)
    if final.exists():
        return False
    params = sample_params(class_name, clip_rng(seed, split, class_name, index), height=height, width=width)
    frames = render(params)
    tmp_dir = out / ".partial" / f"{os.getpid()}-{split}-{class_name}-{index}"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    try:
        tmp = write_clip(tmp_dir / final.name, frames, params.fps)
        n, size = _count_decoded_frames(tmp)
        if (n != len(frames) or size != (height, width)) and shutil.disk_usage(tmp_dir).free < _LOW_DISK:
            # OpenCV's writer fails silently on a full disk: say that, not "the encoder".
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(final))
        if n != len(frames) or size != (height, width):
            raise RuntimeError(
                f"{final}: encoded clip decodes to {n} frames of {size}, expected "
                f"{len(frames)} of {(height, width)}; OpenCV's Motion JPEG encoder is not working here"
            )
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    if committer is None:
        _commit_clip(tmp, final, tmp_dir)
    else:
        committer.submit(tmp, final, tmp_dir)
    return True


def _commit_clip(tmp: Path, final: Path, tmp_dir: Path) -> None:
    """Flush the checked clip ``tmp`` to disk and rename it to ``final``; remove ``tmp_dir``."""
    try:
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


class _Committer:
    """Flushes and renames each clip into place in a thread of its own while the next clip
    is rendered. Why: flushing in line left the writers waiting on the disk (the demo's
    1,300 clips: 80-83 s, against 54 s without flushing, on 2 Zen 3 cores, 2026-12-01).
    One clip at most is in flight; :meth:`close` waits for it and raises its error."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="videoact-commit")
        self._pending: Any = None

    def submit(self, tmp: Path, final: Path, tmp_dir: Path) -> None:
        self._wait()  # the previous clip's error, if any, before taking another
        self._pending = self._pool.submit(_commit_clip, tmp, final, tmp_dir)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self._wait()
        finally:
            self._pool.shutdown(wait=True)


def _worker_main() -> int:
    """Entry point of a worker process: jobs as JSON on stdin, one line per clip done; a
    failure ends it with one line on standard error (``_WORKER_ERROR`` and the message)."""
    cv2.setNumThreads(1)  # the workers already use every core
    committer = _Committer()
    try:
        try:
            for out, split, class_name, index, seed, height, width in json.load(sys.stdin):
                written = _write_clip(Path(out), split, class_name, index, seed, height, width, committer)
                print(int(written), flush=True)
        finally:
            committer.close()
    except (OSError, RuntimeError) as exc:
        print(f"{_WORKER_ERROR}{describe_error(exc)}", file=sys.stderr, flush=True)
        return 1
    return 0


def describe_error(exc: BaseException) -> str:
    """One line for a failure: ``PATH: No space left on device`` for an OSError."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)


def _run_workers(jobs: list[tuple], workers: int, bar: Any) -> int:
    """Write ``jobs`` in ``workers`` fresh Python processes; return how many were written.

    Fresh interpreters rather than multiprocessing: a forked child of a process that
    has used OpenCV's thread pool deadlocks in OpenCV (measured: hangs in
    ``cv2.setNumThreads``), and "spawn" re-runs the caller's main module, so any
    unguarded script calling this (``python -m videoact`` included) would recurse.
    """
    import subprocess
    import threading

    env = dict(os.environ)
    # The child must import this very videoact, even from an uninstalled source tree.
    package_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    code = "import sys; from videoact.synthetic import _worker_main; sys.exit(_worker_main())"
    procs, readers, done = [], [], []
    lock = threading.Lock()

    def read(proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            with lock:
                done.append(int(line))
                if bar is not None:
                    bar.update(1)

    try:
        for k in range(workers):
            chunk = [[str(j[0]), *j[1:]] for j in jobs[k::workers]]  # round-robin: similar loads
            if not chunk:
                continue
            proc = subprocess.Popen(
                [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, env=env,
            )
            procs.append(proc)
            proc.stdin.write(json.dumps(chunk))
            proc.stdin.close()
            reader = threading.Thread(target=read, args=(proc,), daemon=True)
            reader.start()
            readers.append(reader)
        failures = []
        for proc, reader in zip(procs, readers):
            errors = proc.stderr.read()
            proc.wait()
            reader.join()
            if proc.returncode != 0:
                said = [line[len(_WORKER_ERROR):] for line in errors.splitlines() if line.startswith(_WORKER_ERROR)]
                failures.append(said[-1] if said else f"a worker exited with {proc.returncode}: {errors.strip()[-2000:]}")
        if failures:
            raise RuntimeError("; ".join(dict.fromkeys(failures)))  # the same error in every worker: once
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return sum(done)


def _chosen_classes(classes: Sequence[str] | None) -> tuple[str, ...]:
    """``classes`` checked against ``CLASSES``, in the order of ``CLASSES``."""
    if classes is None:
        return CLASSES
    if isinstance(classes, str):
        raise ValueError(f"classes must be a list of names, got the string {classes!r}")
    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        raise ValueError(f"unknown class{'es' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                         f"the benchmark has {', '.join(CLASSES)}")
    if not classes:
        raise ValueError("classes is empty; give at least one of " + ", ".join(CLASSES))
    wanted = set(classes)
    return tuple(c for c in CLASSES if c in wanted)


def make_synthetic(
    out: str | os.PathLike,
    *,
    train_per_class: int = 300,
    val_per_class: int = 20,
    test_per_class: int = 20,
    seed: int = 0,
    height: int = 120,
    width: int = 160,
    workers: int = 1,
    progress: bool = True,
    classes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Write the benchmark under ``out``; resumable (existing clips are kept).

    ``classes`` (names from ``CLASSES``; default all ten) writes and lists only those, e.g.
    one pair for a quick experiment; each clip is the same as in the full benchmark.

    Layout: ``out/<split>/<class>/<class>_<nnnn>.mp4`` for split in train/val/test (so
    ``out/train`` is a class-per-subfolder dataset), list files ``out/<split>.txt`` with
    lines ``<split>/<class>/<file>.mp4 <class>`` (paths relative to ``out``),
    ``out/classes.txt`` (one class per line, the order of ``CLASSES``) and
    ``out/synthetic.json`` (the settings; a rerun with other settings is refused).

    Returns a dict: ``root``, ``classes`` (path of classes.txt), ``train``/``val``/``test``
    (paths of the list files), ``written``, ``skipped`` (clip counts), ``unlisted``
    (clips found beyond the requested counts, left in place) and ``seconds``.
    """
    counts = {"train": train_per_class, "val": val_per_class, "test": test_per_class}
    for split, n in counts.items():
        if int(n) < 0:
            raise ValueError(f"{split}_per_class must be >= 0, got {n}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    _check_size(height, width)
    if height % 2 or width % 2:
        raise ValueError(f"frame size {width}x{height}: width and height must be even for the video encoder")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    chosen = _chosen_classes(classes)
    out = Path(out)
    try:  # OpenCV's writer crashes the process on such a name (a Latin-1 folder name)
        os.fsencode(out).decode("utf-8")
    except UnicodeDecodeError:
        shown = os.fsencode(out).decode("utf-8", "backslashreplace")
        raise ValueError(f"{shown}: the folder name is not valid UTF-8, which the video encoder cannot "
                         "write to: use another name") from None
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{out}: cannot create the folder: {e.strerror or e}") from e
    _check_manifest(out, _manifest(seed, height, width))
    _clean_partial(out / ".partial")
    started = time.perf_counter()

    jobs, skipped = [], 0
    for split in SPLITS:
        for class_name in chosen:
            for index in range(int(counts[split])):
                if (out / clip_path(split, class_name, index)).exists():
                    skipped += 1
                else:
                    jobs.append((out, split, class_name, index, int(seed), height, width))

    bar = None
    if progress and jobs:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="make-synthetic", unit="clip", file=sys.stderr)
    written = 0
    try:
        if workers == 1 or len(jobs) <= 1:
            committer = _Committer()
            try:
                for job in jobs:
                    written += _write_clip(*job, committer)
                    if bar is not None:
                        bar.update(1)
            finally:
                committer.close()
        else:
            written = _run_workers(jobs, min(workers, len(jobs)), bar)
    finally:
        if bar is not None:
            bar.close()
        with contextlib.suppress(OSError):
            (out / ".partial").rmdir()  # only when empty

    result: dict[str, Any] = {"root": out, "classes": out / "classes.txt"}
    atomic_write_text(out / "classes.txt", "".join(f"{c}\n" for c in chosen))
    unlisted = 0
    for split in SPLITS:
        lines = [
            f"{clip_path(split, c, i)} {c}\n" for c in chosen for i in range(int(counts[split]))
        ]
        atomic_write_text(out / f"{split}.txt", "".join(lines))
        result[split] = out / f"{split}.txt"
        listed = {line.split(" ")[0] for line in lines}
        for c in CLASSES:
            folder = out / split / c
            if folder.is_dir():
                unlisted += sum(
                    1 for f in folder.glob("*.mp4") if f"{split}/{c}/{f.name}" not in listed
                )
    result.update(
        written=written, skipped=skipped, unlisted=unlisted, seconds=time.perf_counter() - started
    )
    return result
