"""Config: YAML defaults, inheritance, overrides, validation errors, saving."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from videoact.config import (
    CONFIG_DIR,
    Config,
    ConfigError,
    ModelConfig,
    config_to_yaml,
    load_config,
    save_config,
    yaml_load,
)

REPO = Path(__file__).resolve().parents[1]
REPO_CONFIGS = REPO / "configs"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_default_yaml_equals_dataclass_defaults():
    shipped = yaml.safe_load((REPO_CONFIGS / "default.yaml").read_text())
    assert shipped == Config().to_dict()
    assert CONFIG_DIR == REPO_CONFIGS  # found relative to the package (editable install)
    assert load_config(None) == Config()
    assert load_config() == Config()


def test_an_installed_videoact_finds_its_shipped_configs(tmp_path):
    """`pip install .` (not editable, as from a wheel or a git URL) left configs/ behind:
    `videoact demo` and `load_config("synthetic")` failed with "config file not found"."""
    src, site = tmp_path / "src", tmp_path / "site"
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("videoact", "configs"):  # a copy: building writes build/ and *.egg-info beside the sources
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(site), str(src)], check=True, capture_output=True)
    code = ("import json, videoact.config as c; "
            "print(json.dumps([str(c.CONFIG_DIR), c.load_config('synthetic').to_dict(), c.load_config().to_dict()]))")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(site)})
    assert run.returncode == 0, run.stderr
    config_dir, synthetic, default = json.loads(run.stdout)
    assert Path(config_dir) == site / "videoact" / "configs"  # the installed copy, not this source tree
    assert synthetic == load_config(REPO_CONFIGS / "synthetic.yaml").to_dict()
    assert default == Config().to_dict()


def test_synthetic_yaml_inherits_defaults_and_changes_some():
    cfg = load_config(REPO_CONFIGS / "synthetic.yaml")
    assert cfg.feature.pooling == "grid14" and cfg.feature.layer == "stride4" and cfg.feature.num_segments == 8
    assert cfg.model.head == "conv" and "rotate_cw:rotate_ccw" in cfg.train.reverse_pairs
    assert cfg.model.center is True and cfg.feature.resize == "squash"
    assert cfg.train.epochs > Config().train.epochs
    assert cfg.model.bidirectional is True  # from the base file / defaults
    assert cfg.work_dir == "runs/synthetic"
    # a bare name finds the shipped file
    assert load_config("synthetic") == cfg


def test_bare_config_name_is_the_shipped_file_even_beside_a_folder_of_that_name(tmp_path, monkeypatch):
    """`videoact make-synthetic synthetic` then `videoact train synthetic ...` (or the demo,
    which loads "synthetic") in the same directory read the clip folder as the config."""
    shipped = load_config("synthetic")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "synthetic").mkdir()
    assert load_config("synthetic") == shipped
    (tmp_path / "mine.yaml").write_text("train:\n  lr: 0.5\n")
    assert load_config("mine.yaml").train.lr == 0.5  # a file in the working directory still wins


def test_overrides_are_typed():
    cfg = load_config(None, [
        "train.lr=3e-4", "model.hidden=128", "feature.pooling=grid2", "model.bidirectional=false",
        "data.train=/videos/train list.txt", "feature.weights=2024", "data.val_fraction=0.25",
        "train.warmup_epochs=2", "work_dir=runs/x", "model={layers: 2, dropout: 0.5}",
    ])
    assert cfg.train.lr == 3e-4 and isinstance(cfg.train.lr, float)  # YAML 1.1 reads 3e-4 as str
    assert cfg.model.hidden == 128 and isinstance(cfg.model.hidden, int)
    assert cfg.feature.pooling == "grid2"
    assert cfg.model.bidirectional is False
    assert cfg.data.train == "/videos/train list.txt"
    assert cfg.feature.weights == "2024"  # str field keeps the text, not the int 2024
    assert cfg.data.val_fraction == 0.25
    assert cfg.train.warmup_epochs == 2.0 and isinstance(cfg.train.warmup_epochs, float)
    assert cfg.work_dir == "runs/x"
    assert cfg.model.layers == 2 and cfg.model.dropout == 0.5
    assert load_config(None, ["feature.weights=null", "feature.max_frames=300"]).feature.max_frames == 300
    assert load_config(None, ["feature.weights=null"]).feature.weights is None
    # a whole number written as a float is the int (it was refused while the text "3" was taken)
    epochs = load_config(None, ["train.epochs=3.0", "model.hidden=1e2"])
    assert (epochs.train.epochs, epochs.model.hidden) == (3, 100) and isinstance(epochs.train.epochs, int)
    assert Config.from_dict({"train": {"epochs": 3.0}}).train.epochs == 3
    # "none" as Python users write it (YAML alone would read a string 'None')
    none = load_config(None, ["data.val=none", "feature.max_frames=None", "feature.weights=~"])
    assert none.data.val is None and none.feature.max_frames is None and none.feature.weights is None


def test_file_then_overrides_order(tmp_path):
    path = write(tmp_path / "run.yaml", "train:\n  lr: 0.01\n  epochs: 5\nmodel:\n  hidden: 64\n")
    cfg = load_config(path, ["train.lr=0.02"])
    assert (cfg.train.lr, cfg.train.epochs, cfg.model.hidden) == (0.02, 5, 64)
    assert cfg.train.batch_size == Config().train.batch_size


@pytest.mark.parametrize("override, message", [
    ("train.lrr=1", "unknown key 'train.lrr'; did you mean 'train.lr'"),
    ("trian.lr=1", "unknown key 'trian'; did you mean 'train'"),
    ("model.hiden=3", "did you mean 'model.hidden'"),
    ("train.lr=abc", "train.lr: expected float, got 'abc'"),
    ("model.hidden=1.5", "model.hidden: expected int, got 1.5"),
    ("model.bidirectional=1", "model.bidirectional: expected bool, got 1"),
    ("train.lr=0", "train.lr: must be > 0.0"),
    ("train.lr=-1e-3", "train.lr: must be > 0.0"),
    ("train.lr=.inf", "train.lr: must be a finite number"),
    ("model.dropout=1.0", "model.dropout: must be < 1.0"),
    ("model.dropout=-0.1", "model.dropout: must be >= 0.0"),
    ("train.epochs=0", "train.epochs: must be >= 1"),
    ("data.val_fraction=1", "data.val_fraction: must be < 1.0"),
    ("data.val_fraction=0", "data.val_fraction: must be > 0.0"),
    ("feature.sampling=random", "feature.sampling: must be one of ['uniform', 'dense', 'fps', 'all']"),
    ("feature.pooling=grid5", "feature.pooling: must be one of"),
    ("model.temporal_pool=max", "model.temporal_pool: must be one of"),
    ("train.nonfinite=ignore", "train.nonfinite: must be one of ['stop', 'skip']"),
    ("train.device=gpu", "train.device: invalid value 'gpu'"),
    ("model.head=conv", "model.head: conv reads a grid of cells, but feature.pooling is 'avg' ("),
    ("model.head_time_kernel=2", "model.head_time_kernel: must be odd"),
    ("train.reverse_pairs=[a:b, left-right]", "train.reverse_pairs[1]: 'left-right' is not 'class_a:class_b'"),
    ("model=3", "model: expected a mapping"),
    ("model.hidden.x=3", "model.hidden is a value, not a section"),
    ("train.lr", "expected key=value"),
])
def test_override_errors(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert message in str(info.value)
    assert f"override {override!r}" in str(info.value)  # names where the bad value came from


def test_file_errors_name_file_and_key(tmp_path):
    bad_key = write(tmp_path / "bad_key.yaml", "train:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad_key\.yaml: unknown key 'train\.learning_rate'"):
        load_config(bad_key)
    bad_type = write(tmp_path / "bad_type.yaml", "train:\n  lr: fast\n")
    with pytest.raises(ConfigError, match=r"bad_type\.yaml: train\.lr: expected float, got 'fast'"):
        load_config(bad_type)
    bad_range = write(tmp_path / "bad_range.yaml", "model:\n  dropout: 1.5\n")
    with pytest.raises(ConfigError, match=r"bad_range\.yaml: model\.dropout: must be < 1\.0, got 1\.5"):
        load_config(bad_range)
    section = write(tmp_path / "section.yaml", "train: 3\n")
    with pytest.raises(ConfigError, match=r"section\.yaml: train: expected a mapping"):
        load_config(section)
    with pytest.raises(ConfigError, match=r"missing\.yaml: config file not found"):
        load_config(tmp_path / "missing.yaml")
    # configs/synthetic.yaml from the source tree's README, run from another folder
    with pytest.raises(ConfigError, match=r"synthetic\.yaml: config file not found \(the shipped one of that "
                                          r"name is read by its name alone: synthetic\)"):
        load_config(tmp_path / "configs" / "synthetic.yaml")
    broken = write(tmp_path / "broken.yaml", "train: {lr: [0.1\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: invalid YAML"):
        load_config(broken)
    top = write(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: expected a mapping of keys at the top level"):
        load_config(top)
    # a later override does not hide that the file's value was bad, nor the other way round
    good = write(tmp_path / "good.yaml", "train:\n  lr: 0.5\n")
    with pytest.raises(ConfigError, match=r"override 'train\.epochs=-2'"):
        load_config(good, ["train.epochs=-2"])
    assert issubclass(ConfigError, ValueError)


def test_base_inheritance(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "base.yaml", "train:\n  lr: 0.005\n  epochs: 7\nmodel:\n  hidden: 32\n")
    child = write(tmp_path / "sub" / "child.yaml", "_base_: ../base.yaml\ntrain:\n  epochs: 9\n")
    cfg = load_config(child)
    assert (cfg.train.lr, cfg.train.epochs, cfg.model.hidden) == (0.005, 9, 32)
    write(tmp_path / "grand.yaml", "model:\n  hidden: 8\n")
    write(tmp_path / "base2.yaml", "_base_: grand.yaml\n")
    two_levels = write(tmp_path / "child2.yaml", "_base_: base2.yaml\ntrain:\n  epochs: 3\n")
    assert (load_config(two_levels).model.hidden, load_config(two_levels).train.epochs) == (8, 3)
    # a shipped config that has a base of its own, by name (was refused: "only one level")
    tuned = write(tmp_path / "tuned.yaml", "_base_: synthetic\ntrain:\n  epochs: 3\n")
    assert load_config(tuned) == load_config("synthetic", ["train.epochs=3"])
    # a bare name finds the user's own file next to it first (the shipped one of the same name
    # replaced it silently), and a file that names itself gets the shipped one
    own = tmp_path / "own"
    own.mkdir()
    write(own / "synthetic.yaml", "_base_: synthetic\ntrain:\n  epochs: 3\n")
    write(own / "mine.yaml", "_base_: synthetic\nmodel:\n  hidden: 16\n")
    write(own / "base.yaml", "model:\n  hidden: 12\n")
    write(own / "child.yaml", "_base_: base\n")
    assert load_config(own / "mine.yaml") == load_config("synthetic", ["train.epochs=3", "model.hidden=16"])
    assert load_config(own / "child.yaml").model.hidden == 12
    write(tmp_path / "loop_a.yaml", "_base_: loop_b.yaml\n")
    write(tmp_path / "loop_b.yaml", "_base_: loop_a.yaml\n")
    with pytest.raises(ConfigError, match=r"_base_ files form a cycle \(.*loop_a\.yaml -> .*loop_b\.yaml -> "):
        load_config(tmp_path / "loop_a.yaml")
    missing = write(tmp_path / "child3.yaml", "_base_: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"child3\.yaml: _base_: .*nowhere\.yaml not found"):
        load_config(missing)
    write(tmp_path / "base4.yaml", "train:\n  lr: -1\n")
    child4 = write(tmp_path / "child4.yaml", "_base_: base4.yaml\n")
    with pytest.raises(ConfigError, match=r"base4\.yaml: train\.lr: must be > 0"):
        load_config(child4)
    # "_base_: default.yaml" (as configs/default.yaml suggests) in the user's own folder: the shipped file;
    # a section whose keys are all commented out is empty
    own = write(tmp_path / "mine.yaml", "_base_: default.yaml\ntrain:\n  # lr: 0.1\nmodel:\n  hidden: 48\n")
    assert load_config(own).model.hidden == 48 and load_config(own).train == load_config(None).train
    (tmp_path / "elsewhere").mkdir()  # a default.yaml in the working directory is not the shipped one
    write(tmp_path / "elsewhere" / "default.yaml", "train:\n  lr: 0.5\n")
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert load_config(own).train.lr == load_config(None).train.lr


def test_paths_from_the_command_line_are_taken_as_given(tmp_path):
    """--data none / --work-dir 2024 are folder names there, not YAML null or a number."""
    from videoact.config import reverse_pair_names

    cfg = load_config(None, ["data.val=none"], values={"data.train": "none", "work_dir": "2024"})
    assert (cfg.data.train, cfg.work_dir, cfg.data.val) == ("none", "2024", None)
    # spaces around a reverse pair's names are not part of the names
    assert reverse_pair_names(" move_left : move_right") == ("move_left", "move_right")
    assert load_config(None, ["train.reverse_pairs=['a : b']"]).train.reverse_pairs == ["a : b"]


def test_a_leading_tilde_in_a_path_setting_is_the_home_folder(tmp_path, monkeypatch):
    """``data: {train: ~/vids}`` was looked for in a folder literally named ``~`` (and
    ``work_dir: ~/runs/x`` created one): Python's file functions do not expand it."""
    monkeypatch.setenv("HOME", str(tmp_path))
    config = tmp_path / "mine.yaml"
    config.write_text("data: {train: ~/vids, classes: ~/classInd.txt}\nwork_dir: ~/runs/x\n")
    cfg = load_config(config, ["feature.cache_dir=~/features"], values={"data.val": "~/val"})
    assert (cfg.data.train, cfg.data.classes, cfg.data.val) == (
        str(tmp_path / "vids"), str(tmp_path / "classInd.txt"), str(tmp_path / "val"))
    assert (cfg.work_dir, cfg.feature.cache_dir) == (str(tmp_path / "runs" / "x"), str(tmp_path / "features"))
    # only paths: a tilde elsewhere is text (a class name in a reverse pair)
    assert load_config(None, ["train.reverse_pairs=['~a:b']"]).train.reverse_pairs == ["~a:b"]


def test_yaml_merge_keys_merge(tmp_path):
    """``<<: *anchor`` was refused as invalid YAML ("could not determine a constructor for
    the tag 'tag:yaml.org,2002:merge'"), though every YAML loader takes it."""
    config = tmp_path / "mine.yaml"
    config.write_text("train:\n  <<: {epochs: 5, lr: 0.01}\n  lr: 0.002\n")
    cfg = load_config(config)
    assert (cfg.train.epochs, cfg.train.lr) == (5, 0.002)  # merged, and overridden after it
    config.write_text("train:\n  epochs: 5\n  epochs: 6\n")
    with pytest.raises(ConfigError, match="key 'epochs' is given twice"):
        load_config(config)


def test_a_list_setting_with_every_item_commented_out_is_empty(tmp_path):
    """``reverse_pairs:`` with its items commented out is YAML null: it was refused as
    "expected a list of str", while a section left empty that way was taken as empty."""
    config = tmp_path / "mine.yaml"
    config.write_text("train:\n  reverse_pairs:\n  # - move_left:move_right\n")
    assert load_config(config).train.reverse_pairs == []
    with pytest.raises(ConfigError, match=r"train\.reverse_pairs: expected a list of str"):
        load_config(None, ["train.reverse_pairs=move_left:move_right"])


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config(None, ["train.lr=3e-4", "feature.pooling=grid3", "data.train=a/b.txt",
                             "model.name=meanpool", "train.amp=false"])
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(path) == cfg
    assert yaml.safe_load(path.read_text()) == cfg.to_dict()
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.yaml"]  # no temporaries left
    assert Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="did you mean 'train.epochs'"):
        Config.from_dict({"train": {"epoch": 3}})


def test_numbers_are_read_as_yaml_1_2_reads_them(tmp_path):
    """PyYAML's YAML 1.1 read a reverse pair of classes named 2 and 3 (`2:3`) as the
    base-60 number 123, and `010` as octal 8."""
    path = write(tmp_path / "c.yaml", "train:\n  reverse_pairs: [2:3, '10:11']\n  epochs: 010\n  lr: 1e-4\n"
                                      "  warmup_epochs: .5\nfeature:\n  max_frames: 1_000\n")
    cfg = load_config(path)
    assert cfg.train.reverse_pairs == ["2:3", "10:11"] and cfg.train.epochs == 10
    assert (cfg.train.lr, cfg.train.warmup_epochs, cfg.feature.max_frames) == (1e-4, 0.5, 1000)
    assert load_config(overrides=["train.epochs=010", "train.reverse_pairs=[2:3]"]).train.reverse_pairs == ["2:3"]
    assert yaml_load("[0x10, 0o17, -.inf, .NaN, yes, off]")[:3] == [16, 15, float("-inf")]
    # config.yaml reads back the same with our reader and with plain YAML 1.1 readers
    cfg.data.train, cfg.data.val = "1e5", "012"
    text = config_to_yaml(cfg)
    assert yaml.safe_load(text) == cfg.to_dict() == yaml_load(text)


def test_model_config_builds_both_models():
    from videoact.temporal import create_temporal_model

    for name in ("bilstm", "meanpool"):
        kwargs = dataclasses.asdict(load_config(None, [f"model.name={name}"]).model)
        model = create_temporal_model(**kwargs, in_dim=6, num_classes=3)
        assert model(torch.randn(2, 4, 6)).shape == (2, 3)
    # every ModelConfig field is a constructor argument of the BiLSTM
    model = create_temporal_model(**dataclasses.asdict(ModelConfig(hidden=8, proj_dim=4)), in_dim=6, num_classes=3)
    assert {k: v for k, v in model.config.items() if k in ModelConfig.__dataclass_fields__} == \
        dataclasses.asdict(ModelConfig(hidden=8, proj_dim=4))


def test_pooling_and_layer_choices_match_backbones():
    from videoact import backbones
    from videoact.config import LAYERS, POOLINGS

    assert tuple(POOLINGS) == tuple(backbones.POOLINGS)
    assert tuple(LAYERS) == tuple(backbones.LAYERS)


def test_mistakes_found_by_a_review_are_refused_or_read_as_meant(tmp_path):
    # A section given twice (a copied default.yaml with a second "train:" added): the
    # second replaced the first, and epochs and lr went silently back to their defaults.
    twice = write(tmp_path / "twice.yaml", "train:\n  epochs: 5\n  lr: 0.01\nmodel:\n  hidden: 8\ntrain:\n  batch_size: 8\n")
    with pytest.raises(ConfigError, match=r"key 'train' is given twice \(lines 1 and 6\)"):
        load_config(twice)
    # Python's None in a YAML file is the text "None": for a value that may be null it means null.
    nones = write(tmp_path / "nones.yaml", "feature:\n  weights: None\ndata:\n  train: None\n")
    assert load_config(nones).feature.weights is None and load_config(nones).data.train is None
    # An empty value made the current folder the work directory.
    for override in ("work_dir=", "data.train="):
        with pytest.raises(ConfigError, match=f"{override.rstrip('=')}: empty value"):
            load_config(None, [override])
    # A key of another section: the section it belongs to.
    for override, meant in (("lr=1e-4", "train.lr"), ("feature.hidden=64", "model.hidden")):
        with pytest.raises(ConfigError, match=f"did you mean '{meant}'"):
            load_config(None, [override])
    with pytest.raises(TypeError, match="a list of 'key=value' strings"):
        load_config(None, "train.lr=1e-4")  # was read one character at a time


def test_values_set_in_code_are_checked_as_a_files_are(tmp_path):
    """train(Config) took what code put in it: "5" epochs failed at a comparison, a Path
    work_dir failed to save config.yaml after the folder was made, bidirectional="no"
    reached torch.lstm after the extraction, 2.5 epochs were accepted."""
    from videoact.config import validate
    from videoact.training import TrainingError, train

    cfg = Config()
    cfg.train.epochs, cfg.work_dir = "5", tmp_path / "run"
    assert validate(cfg).train.epochs == 5 and cfg.work_dir == str(tmp_path / "run")
    for section, key, value, message in (("model", "bidirectional", "no", "expected bool"),
                                         ("train", "epochs", 2.5, "expected int"),
                                         ("train", "reverse_pairs", "a:b", r"expected a list of str \(\[a, b\]\)")):
        cfg = Config()
        setattr(getattr(cfg, section), key, value)
        with pytest.raises(ConfigError, match=f"{section}.{key}: {message}"):
            validate(cfg)
    # No training data, or data that is refused: an error, and no work directory left behind.
    with pytest.raises(TrainingError, match="no training data"):
        train({"work_dir": str(tmp_path / "nothing")})
    with pytest.raises(FileNotFoundError):
        train({"work_dir": str(tmp_path / "missing"), "data": {"train": str(tmp_path / "no_such_list.txt")}})
    assert not (tmp_path / "nothing").exists() and not (tmp_path / "missing").exists()


def test_a_tuple_for_a_list_setting_is_taken_as_a_list():
    from videoact.config import validate

    cfg = Config()
    cfg.train.reverse_pairs = ("a:b",)  # accepted before values set in code were type-checked: still is
    assert validate(cfg).train.reverse_pairs == ["a:b"]
