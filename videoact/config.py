"""Run configuration: nested dataclasses loaded from YAML, with ``key=value`` overrides.

The dataclass defaults below ARE the defaults; ``configs/default.yaml`` mirrors them
with comments (a test keeps the two equal), so a missing ``configs/`` folder changes
nothing.

    cfg = load_config("configs/synthetic.yaml", ["train.lr=3e-4", "model.hidden=128"])
    cfg.train.lr, cfg.model.hidden
    save_config(cfg, Path(cfg.work_dir) / "config.yaml")

A YAML file may name a base file with ``_base_: other.yaml`` (relative to itself, or a
shipped config's name: ``_base_: synthetic``); its keys are applied first, and a base may
have a base of its own. Paths inside a config (``data.train``, ``work_dir``, ...) are
relative to the directory videoact runs in, as paths on the command line are.

Every problem raises :class:`ConfigError` naming the file (or the override) and the key.
"""
# No ``from __future__ import annotations`` here: field types are read at run time.
import dataclasses
import difflib
import enum
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union, get_args, get_origin, get_type_hints

import yaml

from .atomic import atomic_write_text

# The shipped configs: inside the package when installed (setup.cfg maps the repository's
# configs/ to videoact/configs), else the repository root's (a source tree, an editable install).
_PACKAGED_CONFIGS = Path(__file__).resolve().parent / "configs"
CONFIG_DIR = _PACKAGED_CONFIGS if _PACKAGED_CONFIGS.is_dir() else Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
# Must match videoact.backbones.POOLINGS and LAYERS (a test checks); not imported here to keep this module light.
POOLINGS = ("avg", "grid2", "grid3", "grid4", "grid7", "grid14", "grid28")
LAYERS = ("last", "penultimate", "stride16", "stride8", "stride4")


# Numbers as YAML 1.2 (its core schema) reads them. PyYAML follows YAML 1.1, where
# `0:1` (a reverse pair of classes named 0 and 1) is the base-60 number 1 and `010` is
# octal 8. Booleans keep YAML 1.1's yes/no/on/off: configs in the wild use them.
_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_INT_RE = re.compile(r"^[-+]?[0-9](?:_?[0-9])*$|^0o[0-7]+$|^0x[0-9a-fA-F]+$")  # and 1_000, as Python
_FLOAT_RE = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$")


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Dict[Any, Any]:
        # A key given twice (a second "train:" section added to a copied file) silently
        # replaced the first one's values: refuse it, with both lines.
        seen: Dict[Any, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *base": merged (and overridable) as YAML says
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                continue
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (lines {seen[key]} and {line}): the second would "
                    "silently replace the first; merge them", key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


class _Dumper(yaml.SafeDumper):
    pass  # quotes a string that either rule set reads as a number ('1e-4', '0:1'), for any reader


def _yaml_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = loader.construct_scalar(node)
    return int(text, 0) if text[:2].lower() in ("0o", "0x") else int(text, 10)


def _yaml_float(loader: yaml.SafeLoader, node: yaml.Node) -> float:
    text = loader.construct_scalar(node).lower()
    return float(text.replace(".inf", "inf").replace(".nan", "nan"))


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver(_INT, _INT_RE, list("-+0123456789"))
    _cls.add_implicit_resolver(_FLOAT, _FLOAT_RE, list("-+0123456789."))
_Loader.add_constructor(_INT, _yaml_int)
_Loader.add_constructor(_FLOAT, _yaml_float)


def yaml_load(text: str) -> Any:
    """Parse YAML text (safe: no Python objects) with YAML 1.2 numbers; see ``_Loader``."""
    return yaml.load(text, Loader=_Loader)


class ConfigError(ValueError):
    """A bad configuration value, key or file; the message names the source and the key."""


def _opt(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING,
         gt: Optional[float] = None, ge: Optional[float] = None,
         lt: Optional[float] = None, le: Optional[float] = None,
         choices: Optional[Tuple[Any, ...]] = None, pattern: Optional[re.Pattern] = None,
         doc: str = "", path: bool = False) -> Any:
    """A dataclass field with its valid range in metadata; ``factory`` for mutable defaults;
    ``path``: a file or folder, whose leading ``~`` is expanded (Python's file functions
    take it literally: ``~/videos`` was looked for in a folder named ``~``)."""
    meta = {"gt": gt, "ge": ge, "lt": lt, "le": le, "choices": choices, "pattern": pattern, "doc": doc,
            "path": path}
    return field(default=default, default_factory=factory, metadata=meta)


@dataclass
class DataConfig:
    """Where the videos are. Each of train/val/test is a folder of class sub-folders or an
    annotation list file (``path label`` lines, or a Kinetics-style CSV)."""

    train: Optional[str] = _opt(None, path=True)
    val: Optional[str] = _opt(None, path=True)
    test: Optional[str] = _opt(None, path=True)
    root: Optional[str] = _opt(None, doc="prefix for relative paths inside list files", path=True)
    exclude: Optional[str] = _opt(None, doc="file listing videos to leave out (`videoact check --quarantine`)",
                                  path=True)
    classes: Optional[str] = _opt(None, path=True,
                                  doc="classes file (a name per line, or classInd.txt `id name` lines): "
                                  "the class order, and integer labels in lists; None = the training data's "
                                  "sorted label names")
    val_fraction: float = _opt(0.1, gt=0.0, lt=1.0, doc="stratified hold-out when val is not given")
    num_workers: int = _opt(2, ge=0, le=1024, doc="DataLoader workers loading cached features for training "
                            "(extraction's decode workers: feature.num_workers)")
    preload: bool = _opt(False, doc="keep the training and validation features in memory after the first epoch "
                         "(float16; for sets that fit in RAM)")


@dataclass
class FeatureConfig:
    """Per-frame CNN features and which frames to read."""

    backbone: str = "efficientnet_lite0"
    weights: Optional[str] = _opt(None, doc="weights file or id; None = the backbone's default")
    layer: str = _opt("last", choices=LAYERS, doc="backbone feature map: last, penultimate (the stage before), stride16, stride8 or stride4 (the last stage at stride 16 / 8 / 4)")
    pooling: str = _opt("avg", choices=POOLINGS, doc="avg, grid2, grid3, grid4, grid7, grid14 or grid28 (g x g spatial cells)")
    image_size: int = _opt(224, ge=16)
    resize: str = _opt("short_side_center_crop", choices=("short_side_center_crop", "squash"),
                       doc="keep aspect and crop the centre, or stretch the whole frame")
    sampling: str = _opt("uniform", choices=("uniform", "dense", "fps", "all"))
    num_segments: int = _opt(16, ge=1, doc="frames per clip for uniform/dense sampling")
    segment_frames: int = _opt(1, ge=1, doc="frames cached per segment (uniform): train.temporal_jitter's choice")
    stride: int = _opt(1, ge=1, doc="frame step for dense sampling")
    target_fps: float = _opt(8.0, gt=0.0, doc="frame rate for fps sampling")
    max_frames: Optional[int] = _opt(None, ge=1, doc="cap on cached frames per video (spread over the video)")
    cache_dir: Optional[str] = _opt(None, doc="None = <work_dir>/features", path=True)
    batch_size: Optional[int] = _opt(None, ge=1, doc="frames per backbone batch; None = 64, fewer on a CPU above 224 px")
    num_workers: Optional[int] = _opt(None, ge=0, le=1024, doc="decode worker processes of feature extraction; "
                                      "0 = decode in the training process; None = automatic (none with a CPU "
                                      "backbone on up to 2 cores, else one per core but one)")
    device: str = _opt("auto", pattern=_DEVICE_RE, doc="auto, cpu, cuda, cuda:N or mps")
    amp: bool = _opt(False, doc="backbone in mixed precision where the hardware has it (bf16/fp16 on CUDA, bf16 "
                     "on CPUs with AVX512-BF16 or AMX; else float32): faster, features differ by rounding")


@dataclass
class ModelConfig:
    """Temporal model; the fields are ``create_temporal_model`` keyword arguments."""

    name: str = _opt("bilstm", choices=("bilstm", "meanpool"))
    hidden: int = _opt(256, ge=1)
    layers: int = _opt(1, ge=1)
    bidirectional: bool = True
    dropout: float = _opt(0.3, ge=0.0, lt=1.0)
    input_dropout: float = _opt(0.1, ge=0.0, lt=1.0)
    proj_dim: int = _opt(256, ge=1)
    temporal_pool: str = _opt("attention", choices=("attention", "mean", "last"))
    center: bool = _opt(False, doc="subtract each clip's mean feature first: keeps what changes, drops the static scene")
    head: str = _opt("linear", choices=("linear", "conv"),
                     doc="input projection: linear, or conv (a small convolutional head over gridG features)")
    head_channels: int = _opt(32, ge=1, doc="channels of the conv head")
    head_time_kernel: int = _opt(3, ge=1, doc="steps each conv-head convolution spans (odd; the meanpool baseline uses 1)")


@dataclass
class TrainConfig:
    """Optimisation of the temporal model on cached features."""

    epochs: int = _opt(30, ge=1)
    batch_size: int = _opt(32, ge=1)
    lr: float = _opt(1e-3, gt=0.0)
    weight_decay: float = _opt(0.01, ge=0.0)
    warmup_epochs: float = _opt(1.0, ge=0.0)
    label_smoothing: float = _opt(0.1, ge=0.0, lt=1.0)
    grad_clip: float = _opt(1.0, ge=0.0, doc="max gradient norm; 0 = off")
    early_stopping_patience: int = _opt(10, ge=0, doc="epochs without improvement; 0 = off")
    select: str = _opt("best", choices=("best", "last"),
                       doc="the model best.pt holds and the test set evaluates: the epoch of best validation "
                           "accuracy, or the last epoch (the schedule run to its end)")
    seed: int = _opt(0, ge=0)
    amp: bool = _opt(True, doc="mixed precision on CUDA (for CPUs see cpu_amp)")
    cpu_amp: bool = _opt(False, doc="bf16 mixed precision on a CPU with AVX512-BF16 or AMX (ignored on other CPUs, "
                         "where bf16 is slower than float32)")
    # Only where the cache holds more frames than num_segments (sampling fps, all, dense,
    # or uniform with feature.segment_frames > 1): with one cached frame per segment there
    # is nothing to choose from.
    temporal_jitter: bool = _opt(True, doc="random frame offsets within segments while training")
    reverse_pairs: List[str] = _opt(factory=list, doc="class pairs 'a:b' whose clips played backwards are "
                                    "clips of the other: such training clips are time-reversed and relabelled "
                                    "half of the time")
    nonfinite: str = _opt("stop", choices=("stop", "skip"), doc="on a nan/inf loss")
    progress: bool = _opt(True, doc="progress bars and per-epoch lines")
    device: str = _opt("auto", pattern=_DEVICE_RE, doc="auto, cpu, cuda, cuda:N or mps")


@dataclass
class Config:
    """The whole run."""

    work_dir: str = _opt("runs/default", path=True)
    data: DataConfig = field(default_factory=DataConfig)
    feature: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> Dict[str, Any]:
        """Plain nested dict (YAML/JSON-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any], source: str = "<dict>") -> "Config":
        """Build and validate a config from a nested dict over the defaults."""
        cfg = cls()
        sources: Dict[str, str] = {}
        _apply_mapping(cfg, data, prefix="", source=source, sources=sources)
        validate(cfg, sources)
        return cfg


# --------------------------------------------------------------------------- helpers


def _is_section(obj: Any) -> bool:
    return dataclasses.is_dataclass(obj) and not isinstance(obj, type)


def _field_types(obj: Any) -> Dict[str, Any]:
    return get_type_hints(type(obj))


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Union:
        names = [_type_name(a) for a in get_args(tp) if a is not type(None)]
        return " or ".join(names) + " or null"
    if get_origin(tp) in (list, List):
        (item,) = get_args(tp) or (Any,)
        return f"a list of {_type_name(item)} ([a, b])"
    return getattr(tp, "__name__", str(tp))


def _unknown_key(key: str, valid: Iterable[str], where: str, source: str) -> ConfigError:
    valid = list(valid)
    name = key.split(".")[-1]
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    prefix = f"{where}." if where else ""
    # The right name in another section ("lr" or "feature.hidden" for train.lr, model.hidden)
    sections = {f.name: f.default_factory() for f in dataclasses.fields(Config)
                if f.default_factory is not dataclasses.MISSING}
    elsewhere = [f"{s}.{name}" for s, obj in sections.items() if s != where and name in _field_types(obj)]
    hint = f"; did you mean {' or '.join(repr(prefix + c) for c in close)}?" if close else ""
    if elsewhere and not close:
        hint = f"; did you mean {' or '.join(repr(e) for e in elsewhere)}?"
    return ConfigError(
        f"{source}: unknown key {key!r}{hint} (valid keys{' in ' + where if where else ''}: "
        f"{', '.join(valid)})"
    )


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against the field type ``tp``; allow only lossless conversions."""
    if get_origin(tp) is Union:
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None or value == "None":  # Python's spelling in a YAML file, where it is text
            return None
        if len(args) == 1:
            tp = args[0]
    bad = ConfigError(f"{source}: {key}: expected {_type_name(tp)}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():  # 3.0, or 1e3 from YAML: lossless
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise bad from None
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # YAML 1.1 reads "3e-4" (no dot) as a string: accept numeric strings.
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):  # a path from code (feature.weights=Path(...), data.train)
            return os.fspath(value)
        if isinstance(value, enum.Enum):  # torchvision's ResNet50_Weights.IMAGENET1K_V2, as create_backbone takes it
            return f"{type(value).__name__}.{value.name}"
        raise bad
    if get_origin(tp) in (list, List):
        (item_tp,) = get_args(tp) or (Any,)
        if value is None:  # "reverse_pairs:" with every item commented out: empty, as a section is
            return []
        if not isinstance(value, (list, tuple)):  # a tuple from code, kept as the list YAML writes
            raise bad
        return [_coerce(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
    return value


def _apply_mapping(obj: Any, data: Any, prefix: str, source: str, sources: Dict[str, str]) -> None:
    """Set the fields of dataclass ``obj`` from the nested mapping ``data``."""
    where = prefix.rstrip(".")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: {where or 'top level'}: expected a mapping of keys, got {type(data).__name__} {data!r}"
        )
    types = _field_types(obj)
    for key, value in data.items():
        full = f"{prefix}{key}"
        if not isinstance(key, str) or key not in types:
            raise _unknown_key(str(full), types, where, source)
        current = getattr(obj, key)
        if _is_section(current):
            # "train:" with every key commented out (an edited copy of default.yaml) is empty, not null
            _apply_mapping(current, {} if value is None else value, f"{full}.", source, sources)
        else:
            setattr(obj, key, _coerce(value, types[key], full, source))
            sources[full] = source


def _check_range(key: str, value: Any, meta: Any, source: str) -> None:
    if value is None:
        return
    choices, pattern = meta.get("choices"), meta.get("pattern")
    if choices is not None and value not in choices:
        raise ConfigError(f"{source}: {key}: must be one of {list(choices)}, got {value!r}")
    if pattern is not None and not pattern.match(str(value)):
        doc = meta.get("doc") or pattern.pattern
        raise ConfigError(f"{source}: {key}: invalid value {value!r} (expected {doc})")
    if isinstance(value, str) and not value.strip():  # `--set work_dir=` would train into the current folder
        raise ConfigError(f"{source}: {key}: empty value (leave the key out for its default, or null where none "
                          "is allowed)")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{source}: {key}: must be a finite number, got {value!r}")
    for bound, ok, text in (
        ("gt", lambda v, b: v > b, ">"), ("ge", lambda v, b: v >= b, ">="),
        ("lt", lambda v, b: v < b, "<"), ("le", lambda v, b: v <= b, "<="),
    ):
        limit = meta.get(bound)
        if limit is not None and not ok(value, limit):
            raise ConfigError(f"{source}: {key}: must be {text} {limit}, got {value!r}")


def reverse_pair_names(pair: str) -> Optional[Tuple[str, str]]:
    """``"move_left:move_right"`` -> ``("move_left", "move_right")``; None when not ``a:b``."""
    names = pair.split(":")
    if len(names) != 2 or not all(n.strip() for n in names):
        return None
    return names[0].strip(), names[1].strip()  # "move_left : move_right" names the classes too


def validate(cfg: Config, sources: Optional[Dict[str, str]] = None, fallback: str = "default") -> Config:
    """Type, range and choice checks on every field; errors name where the value came from
    (``sources``: key -> file or override; other keys are named ``fallback``). Values set
    in code are converted as a YAML file's are (a ``Path`` to text, ``"5"`` to 5), or refused."""
    sources = sources or {}

    def walk(obj: Any, prefix: str) -> None:
        types = _field_types(obj)
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            key = f"{prefix}{f.name}"
            if _is_section(value):
                walk(value, f"{key}.")
            else:
                value = _coerce(value, types[f.name], key, sources.get(key, fallback))
                if f.metadata.get("path") and isinstance(value, str) and value.startswith("~"):
                    value = os.path.expanduser(value)
                setattr(obj, f.name, value)
                _check_range(key, value, f.metadata, sources.get(key, fallback))

    walk(cfg, "")

    # Checks across fields: caught here, not after hours of feature extraction.
    def origin(key: str) -> str:
        return sources.get(key, fallback)

    if cfg.model.head == "conv" and not cfg.feature.pooling.startswith("grid"):
        raise ConfigError(
            f"{origin('model.head')}: model.head: conv reads a grid of cells, but feature.pooling is "
            f"{cfg.feature.pooling!r} ({origin('feature.pooling')}): use a gridG pooling or model.head: linear"
        )
    if cfg.model.head_time_kernel % 2 == 0:
        raise ConfigError(f"{origin('model.head_time_kernel')}: model.head_time_kernel: must be odd (a "
                          f"convolution centred on each step), got {cfg.model.head_time_kernel}")
    for i, pair in enumerate(cfg.train.reverse_pairs):
        if reverse_pair_names(pair) is None:
            raise ConfigError(f"{origin('train.reverse_pairs')}: train.reverse_pairs[{i}]: {pair!r} is not "
                              "'class_a:class_b'")
    return cfg


# --------------------------------------------------------------------------- loading


def _read_yaml(path: Path, source: str) -> Dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        shipped = _shipped_config(path.name)  # configs/synthetic.yaml, run outside the source tree
        hint = f" (the shipped one of that name is read by its name alone: {path.stem})" if shipped else ""
        raise ConfigError(f"{source}: config file not found{hint}") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, expected a YAML config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read config file: {exc}") from None
    try:
        data = yaml_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def _read_with_bases(file: Path, chain: Tuple[Path, ...] = ()) -> List[Tuple[Dict[str, Any], str]]:
    """``file``'s mapping after its ``_base_`` files', base first: ``[(data, source), ...]``."""
    source = str(file)
    if file.resolve() in chain:
        names = " -> ".join(str(p) for p in (*chain, file.resolve()))
        raise ConfigError(f"{source}: _base_ files form a cycle ({names})")
    data = _read_yaml(file, source)
    base = data.pop("_base_", None)
    if base is None:
        return [(data, source)]
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{source}: _base_: expected a file name, got {base!r}")
    # Next to the file first ("_base_: base" finds base.yaml there), then for a bare name the
    # shipped configs ("_base_: synthetic" from the user's own folder, also from a file named
    # synthetic.yaml there, which is not its own base).
    bare = len(Path(base).parts) == 1
    beside = [c for c in (file.parent / base, file.parent / f"{base}.yaml")
              if c.is_file() and not (bare and c.resolve() == file.resolve())]
    shipped = _shipped_config(base) if bare and not beside else None
    base_file = beside[0] if beside else shipped or file.parent / base
    if not base_file.is_file():
        raise ConfigError(f"{source}: _base_: {base_file} not found")
    return _read_with_bases(base_file, (*chain, file.resolve())) + [(data, source)]


def resolve_config_path(path: Union[str, os.PathLike]) -> Path:
    """``path`` itself, or for a bare name like ``"synthetic"`` the shipped ``configs/synthetic.yaml``
    (also when the working directory holds a folder of that name, e.g. generated clips)."""
    p = Path(path)
    if p.is_file() or len(p.parts) > 1:
        return p
    return _shipped_config(p.name) or p


def _shipped_config(name: str) -> Optional[Path]:
    """The shipped config ``name`` (``synthetic`` or ``synthetic.yaml``), if there is one."""
    return next((c for c in (CONFIG_DIR / name, CONFIG_DIR / f"{name}.yaml") if c.is_file()), None)


def parse_override(text: str) -> Tuple[str, str]:
    """``"train.lr=3e-4"`` -> ``("train.lr", "3e-4")``."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. train.lr=3e-4")
    return key, value.strip()


def _override_value(cfg: Config, key: str, raw: str, source: str) -> Dict[str, Any]:
    """Turn ``a.b=raw`` into the nested mapping ``{"a": {"b": value}}``."""
    parts = key.split(".")
    obj: Any = cfg
    for i, part in enumerate(parts):
        types = _field_types(obj)
        if part not in types:
            raise _unknown_key(".".join(parts[: i + 1]), types, ".".join(parts[:i]), source)
        if i < len(parts) - 1:
            obj = getattr(obj, part)
            if not _is_section(obj):
                raise ConfigError(f"{source}: {'.'.join(parts[: i + 1])} is a value, not a section")
    tp = _field_types(obj)[parts[-1]]
    str_typed = tp is str or (get_origin(tp) is Union and str in get_args(tp))
    if raw.lower() in ("null", "~", "none"):
        value: Any = None  # "none" too (YAML would read it as a string), as Python users write it
    elif str_typed:
        value = raw  # keep strings verbatim: a path "2024" or weights "01" stay strings
    else:
        try:
            value = yaml_load(raw) if raw else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: cannot parse value {raw!r}: {exc}") from None
    return _nested(key, value)


def _nested(key: str, value: Any) -> Dict[str, Any]:
    """``("a.b", v)`` -> ``{"a": {"b": v}}``, as :func:`_apply_mapping` takes it."""
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def load_config(
    path: Optional[Union[str, os.PathLike]] = None, overrides: Iterable[str] = (),
    values: Optional[Dict[str, Any]] = None,
) -> Config:
    """Load a config: defaults <- ``_base_`` file <- ``path`` <- ``overrides`` (``key=value``)
    <- ``values`` (``{"data.train": "videos/"}``: taken as given, not parsed, as the command
    line's ``--data`` and ``--work-dir``: a folder named ``none`` or ``2024`` stays a path).

    ``path=None`` uses the shipped ``configs/default.yaml`` (or the dataclass defaults,
    which are the same, when that file is absent). Raises :class:`ConfigError`.
    """
    if isinstance(overrides, (str, bytes, dict)):  # else "train.lr=1e-4" is read character by character
        raise TypeError(f"overrides: expected a list of 'key=value' strings, got {type(overrides).__name__} "
                        f"{overrides!r}")
    cfg = Config()
    sources: Dict[str, str] = {}
    if path is None:
        path = DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None
    if path is not None:
        for data, source in _read_with_bases(resolve_config_path(path)):
            _apply_mapping(cfg, data, "", source, sources)
    for text in overrides:
        source = f"override {text!r}"
        key, raw = parse_override(text)
        _apply_mapping(cfg, _override_value(cfg, key, raw, source), "", source, sources)
    for key, value in (values or {}).items():
        _apply_mapping(cfg, _nested(key, value), "", f"{key} (command line)", sources)
    return validate(cfg, sources)


def config_to_yaml(cfg: Config) -> str:
    return yaml.dump(cfg.to_dict(), Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def save_config(cfg: Config, path: Union[str, os.PathLike]) -> Path:
    """Write ``cfg`` as YAML atomically (``load_config(path)`` reads it back equal)."""
    path = Path(path)
    atomic_write_text(path, config_to_yaml(cfg))
    return path
