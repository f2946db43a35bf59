"""videoact.datasets on real files: encoded videos, list files, safetensors caches, split files."""
import os
import random
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from videoact.datasets import (
    AnnotationError,
    EpochSampler,
    FeatureDataset,
    VideoSample,
    collate_features,
    convert_hmdb51_splits,
    convert_kinetics_csv,
    convert_ucf101_splits,
    load_class_ids,
    load_classes,
    load_dataset,
    read_annotations,
    read_class_labels,
    scan_video_folder,
    stratified_split,
    ucf101_group,
    write_list,
)
from videoact.feature_cache import FeatureCacheError, cache_path, save_features
from videoact.testing import write_coded_video

REPO = Path(__file__).resolve().parents[1]


def video(path: Path) -> Path:
    """A real (tiny) encoded video; the codec follows the extension."""
    return write_coded_video(path, num_frames=3, height=32, width=40)


def kinds(problems):
    return [(p.line, p.kind) for p in problems]


# --------------------------------------------------------------------------- folders


def test_scan_video_folder(tmp_path):
    root = tmp_path / "data"
    video(root / "walk" / "b.mp4")
    video(root / "walk" / "sub" / "a.AVI")  # nested, upper-case extension
    video(root / "run" / "r 1.mkv")  # space in the name
    video(root / "run" / ".r.mp4.tmp-1-0.mp4")  # hidden temporary: skipped
    video(root / ".cache" / "x.mp4")  # hidden folder: not a class
    (root / "run" / "notes.txt").write_text("not a video")
    (root / "empty").mkdir()  # no videos: not a class
    video(root / "stray.mp4")  # not in a class folder

    with pytest.warns(UserWarning, match=r"1 sub-folder without videos, not taken as classes: empty$"):
        samples, classes = scan_video_folder(root)
    assert classes == ["run", "walk"]
    assert [(s.rel, s.label, s.label_name) for s in samples] == [
        ("run/r 1.mkv", 0, "run"),
        ("walk/b.mp4", 1, "walk"),
        ("walk/sub/a.AVI", 1, "walk"),
    ]
    assert all(s.path.is_absolute() and s.path.is_file() for s in samples)
    assert samples[2].path == (root / "walk" / "sub" / "a.AVI").resolve()

    # fixed classes keep their order; an unknown class folder is an error naming it
    samples, classes = scan_video_folder(root, classes=["walk", "run", "jump"])
    assert classes == ["walk", "run", "jump"] and [s.label for s in samples] == [1, 0, 0]
    with pytest.raises(AnnotationError, match="'walk'"):
        scan_video_folder(root, classes=["run"])
    samples, classes, problems = load_dataset(root, classes=["run"])
    assert [s.rel for s in samples] == ["run/r 1.mkv"] and kinds(problems) == [(None, "unknown_label")]

    # a dataset root holding its splits (train/ val/ test/) made a 3-class model of them
    for split in ("train", "val", "test"):
        video(tmp_path / "splits" / split / "walk" / "a.mp4")
    with pytest.raises(ValueError, match=r"sub-folders are test, train, val: splits of a dataset.*e.g. .*train$"):
        scan_video_folder(tmp_path / "splits")
    # so with a model's classes (`videoact test` on the root: was one unknown_label per split)
    with pytest.raises(ValueError, match=r"sub-folders are test, train, val: splits of a dataset"):
        load_dataset(tmp_path / "splits", classes=["walk", "run"])
    # but not where a split's name is a class of the model
    assert kinds(load_dataset(tmp_path / "splits", classes=["test", "walk"]).problems) == [(None, "unknown_label")] * 2
    # frame folders (decode-frames' output) are named: datasets read videos
    frames = tmp_path / "frames" / "walk" / "a"
    frames.mkdir(parents=True)
    (frames / "img_00001.jpg").write_bytes(b"")
    with pytest.warns(UserWarning, match="walk hold JPEG frame folders .*give the videos"):
        assert load_dataset(tmp_path / "frames") == ([], [], [])
    with pytest.warns(UserWarning, match="walk hold JPEG frame folders"):  # `videoact test` on them
        assert load_dataset(tmp_path / "frames", classes=["walk", "run"]).samples == []
    # fixed classes (a validation split): an empty class folder is no news, and it is a class
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        samples, classes, _ = load_dataset(root, classes=["walk", "run", "empty"])
    assert classes == ["walk", "run", "empty"] and len(samples) == 3

    # a flat folder of videos is not a dataset: say how it should look
    flat = tmp_path / "flat"
    video(flat / "clip.mp4")
    with pytest.raises(ValueError, match="one sub-folder per class"):
        scan_video_folder(flat)


def test_video_extensions_match_the_decoder():
    decode = pytest.importorskip("videoact.decode")
    from videoact.datasets import VIDEO_EXTENSIONS

    assert set(decode.VIDEO_EXTENSIONS) == VIDEO_EXTENSIONS


# --------------------------------------------------------------------------- lists


@pytest.fixture()
def dataset_root(tmp_path):
    root = tmp_path / "root"
    for rel in ("walk/w1.mp4", "walk/w2.mp4", "run/my clip.mp4", "run/r2.avi"):
        video(root / rel)
    video(tmp_path / "elsewhere.mp4")  # exists, but outside the root
    return root


def test_list_every_problem_kind(tmp_path, dataset_root):
    outside = tmp_path / "elsewhere.mp4"
    lines = [
        "# a comment",  # 1
        "",  # 2
        "walk/w1.mp4 walk",  # 3 ok
        "run/my clip.mp4   run",  # 4 ok: space in the path
        "walk/gone.mp4 walk",  # 5 missing
        "walk/w1.mp4 walk",  # 6 duplicate
        "walk/./w1.mp4 run",  # 7 duplicate after normalisation, other label
        "walk/w2.mp4 swim",  # 8 unknown label (classes fixed)
        "lonely_token",  # 9 malformed
        "run/r2.avi",  # 10 malformed: path without a label
        "../elsewhere.mp4 walk",  # 11 outside via ..
        f"{outside} walk",  # 12 outside, absolute
        "   ",  # 13 blank
        "run/r2.avi\trun",  # 14 ok, tab separated
    ]
    list_file = tmp_path / "list.txt"
    list_file.write_text("\r\n".join(lines) + "\r\n")  # CRLF as written on Windows

    samples, classes, problems = read_annotations(list_file, dataset_root, classes=["walk", "run"])
    assert kinds(problems) == [
        (5, "missing"),
        (6, "duplicate"),
        (7, "duplicate"),
        (8, "unknown_label"),
        (9, "malformed"),
        (10, "malformed"),
        (11, "outside_root"),
        (12, "outside_root"),
    ]
    assert all(p.file == str(list_file) for p in problems)
    assert "line 3" in problems[1].message and "different label" in problems[2].message
    assert "'swim'" in problems[3].message
    assert classes == ["walk", "run"]
    assert [(s.rel, s.label, s.label_name) for s in samples] == [
        ("walk/w1.mp4", 0, "walk"),
        ("run/my clip.mp4", 1, "run"),
        ("run/r2.avi", 1, "run"),
    ]
    assert samples[1].path == dataset_root.resolve() / "run" / "my clip.mp4"

    # without fixed classes every name is a class; an integer id needs a classes file
    list_file.write_text("walk/w2.mp4 swim\nwalk/w1.mp4 walk\nrun/r2.avi 1\n")
    samples, classes, problems = read_annotations(list_file, dataset_root)
    assert classes == ["swim", "walk"] and [s.label for s in samples] == [0, 1]
    assert kinds(problems) == [(3, "unknown_label")] and "classes file" in problems[0].message

    # strict: one error listing every problem with its line
    list_file.write_text("walk/gone.mp4 walk\nwalk/w1.mp4 walk\nbad\n")
    with pytest.raises(AnnotationError) as err:
        read_annotations(list_file, dataset_root, strict=True)
    assert kinds(err.value.problems) == [(1, "missing"), (3, "malformed")]
    assert f"{list_file}:1: missing" in str(err.value) and f"{list_file}:3: malformed" in str(err.value)


def test_integer_labels_follow_the_classes_file(tmp_path, dataset_root):
    class_ind = tmp_path / "classInd.txt"
    class_ind.write_text("1 walk\n2 run\n")  # UCF101 style: 1-based ids
    list_file = tmp_path / "list.txt"
    list_file.write_text("walk/w1.mp4 1\nrun/r2.avi 2\nrun/my clip.mp4 3\nwalk/w2.mp4 run\n")
    samples, classes, problems = read_annotations(list_file, dataset_root, classes=class_ind)
    assert classes == ["walk", "run"] == load_classes(class_ind)
    assert [(s.rel, s.label) for s in samples] == [("walk/w1.mp4", 0), ("run/r2.avi", 1), ("walk/w2.mp4", 1)]
    assert kinds(problems) == [(3, "unknown_label")]

    names = tmp_path / "classes.txt"
    names.write_text("walk\nrun\n")  # plain names: ids are 0-based positions
    zero_based = tmp_path / "zero.txt"
    zero_based.write_text("walk/w1.mp4 0\nrun/r2.avi 1\nrun/my clip.mp4 2\n")
    samples, _, problems = read_annotations(zero_based, dataset_root, classes=names)
    assert [s.label for s in samples] == [0, 1] and kinds(problems) == [(3, "unknown_label")]
    assert "label id 2 is not among the classes (0 to 1: positions among the class names)" in str(problems[0])
    # UCF101's own 1-based list read against the names (the converter's classes.txt) put
    # every video in the next class, silently: refused, saying why.
    with pytest.raises(AnnotationError, match=r"list\.txt:1: unknown_label: integer labels look 1-based: id 1 of a "
                       r"video in folder 'walk' is 'run' .* and so for all 2 videos in class folders"):
        read_annotations(list_file, dataset_root, classes=names)
    # a 0-based list (mmaction2's) read against classInd.txt's 1-based ids shifted every video
    # to the next class and only reported the 0s as unknown: refused, saying why
    mmaction = tmp_path / "mmaction.txt"
    mmaction.write_text("walk/w1.mp4 0\nrun/r2.avi 1\n")
    assert [s.label for s in read_annotations(mmaction, dataset_root, classes=names).samples] == [0, 1]
    with pytest.raises(AnnotationError, match=r"mmaction\.txt:1: unknown_label: integer labels look 0-based: id 0 "
                       r"of a video in folder 'walk' is no class under the classes file's own ids, and so for all 2 "
                       r"videos in class folders; 0-based ids go with a classes file of names only"):
        read_annotations(mmaction, dataset_root, classes=class_ind)
    # ids in another order than the classes in use (UCF101's classInd.txt against a model
    # trained on its sorted folders: Hammering and HammerThrow swap) labelled most videos
    # with another class than their folder's, silently: refused, saying so
    swapped = tmp_path / "swapped.txt"
    swapped.write_text("walk/w1.mp4 0\nrun/r2.avi 1\nwalk/w2.mp4 0\n")
    backwards = tmp_path / "backwards.txt"
    backwards.write_text("run\nwalk\n")
    with pytest.raises(AnnotationError, match=r"swapped\.txt:1: unknown_label: integer labels do not number the "
                       r"classes as the classes in use do \(positions among the class names\): id 0 of a video in "
                       r"folder 'walk' is 'run', and 3 of the 3 videos in class folders are labelled with another"):
        read_annotations(swapped, dataset_root, classes=backwards)
    # against the classes it numbers, read as given; so is one video of three against its
    # folder (the list's own labelling)
    assert [s.label for s in read_annotations(swapped, dataset_root, classes=names).samples] == [0, 1, 0]
    swapped.write_text("walk/w1.mp4 0\nrun/r2.avi 0\nwalk/w2.mp4 0\n")
    assert [s.label for s in read_annotations(swapped, dataset_root, classes=names).samples] == [0, 0, 0]
    # ids that name the folders' classes, and ids of videos outside class folders, are read as given
    outside = tmp_path / "flat.txt"
    outside.write_text("w1.mp4 1\n")
    (dataset_root / "w1.mp4").write_bytes((dataset_root / "walk" / "w1.mp4").read_bytes())
    assert [s.label for s in read_annotations(outside, dataset_root, classes=names).samples] == [1]
    # a label such as "²" is a name (str.isdigit took it for an id, and int() failed on it)
    odd = tmp_path / "odd.txt"
    odd.write_text("walk/w1.mp4 \u00b2\n")
    assert kinds(read_annotations(odd, dataset_root, classes=names).problems) == [(1, "unknown_label")]
    assert read_annotations(odd, dataset_root).classes == ["\u00b2"]

    # {id: name}, as a checkpoint keeps its classInd.txt ids: the same labels as the file
    assert load_class_ids(class_ind) == [1, 2] and load_class_ids(names) is None
    assert read_class_labels(class_ind) == {1: "walk", 2: "run"} and read_class_labels(names) == ["walk", "run"]
    samples, classes, problems = read_annotations(list_file, dataset_root, classes={2: "run", 1: "walk"})
    assert classes == ["walk", "run"] and [s.label for s in samples] == [0, 1, 1] and kinds(problems) == [(3, "unknown_label")]


def test_a_label_of_several_words_after_a_space_is_said(tmp_path, dataset_root):
    """``walk/w1.mp4 air drumming`` with a space: the path was taken as ``walk/w1.mp4 air``
    (missing: "is --root right?") and ``drumming`` became a class."""
    listing = tmp_path / "list.txt"
    listing.write_text("walk/w1.mp4 air drumming\nrun/my clip.mp4 run\nwalk/w2.mp4\tair drumming\n")
    samples, classes, problems = read_annotations(listing, dataset_root)
    assert [(s.rel, s.label_name) for s in samples] == [("run/my clip.mp4", "run"), ("walk/w2.mp4", "air drumming")]
    assert classes == ["air drumming", "run"] and kinds(problems) == [(1, "malformed")]
    assert problems[0].message.startswith("walk/w1.mp4 is there, and its label would be 'air drumming': a label of "
                                          "several words goes after a tab")


def test_a_list_written_on_windows_finds_its_videos(tmp_path, dataset_root):
    """``walk\\w1.mp4 walk`` (a list made on Windows) found no video on Linux: every line
    was "missing"."""
    listed = tmp_path / "win.txt"
    listed.write_bytes(b"walk\\w1.mp4 walk\r\nrun\\my clip.mp4\trun\r\nwalk\\gone.mp4 walk\r\n")
    samples, classes, problems = read_annotations(listed, dataset_root)
    assert [(s.rel, s.label_name) for s in samples] == [("walk/w1.mp4", "walk"), ("run/my clip.mp4", "run")]
    assert kinds(problems) == [(3, "missing")] and f"nor {dataset_root / 'walk' / 'gone.mp4'}" in str(problems[0])


def test_a_header_line_of_a_text_list_is_no_video(tmp_path, dataset_root):
    """``path label`` on top (pandas' ``to_csv(sep=" ")``) was a missing video and a class
    named "label", an output of the model that never had data."""
    for header in ("path label", "Video\tClass", "# the list\nfilename label_name"):
        listed = tmp_path / "header.txt"
        listed.write_text(f"{header}\nwalk/w1.mp4 walk\nrun/r2.avi run\n")
        samples, classes, problems = read_annotations(listed, dataset_root)
        assert classes == ["run", "walk"] and len(samples) == 2 and problems == [], header
    # only on the first line: further down it is a line like any other
    listed.write_text("walk/w1.mp4 walk\npath label\n")
    assert kinds(read_annotations(listed, dataset_root).problems) == [(2, "missing")]


def test_escaping_paths_refused_unless_allowed(tmp_path, dataset_root):
    outside = tmp_path / "elsewhere.mp4"
    list_file = tmp_path / "list.txt"
    list_file.write_text(
        f"walk/../walk/w1.mp4 walk\n../elsewhere.mp4 walk\nrun/../../elsewhere.mp4 run\n{outside} walk\n")

    samples, _, problems = read_annotations(list_file, dataset_root)
    assert [s.rel for s in samples] == ["walk/w1.mp4"]  # ".." that stays inside is fine
    assert kinds(problems) == [(2, "outside_root"), (3, "outside_root"), (4, "outside_root")]
    assert str(outside) in problems[0].message

    samples, _, problems = read_annotations(list_file, dataset_root, allow_outside_root=True)
    assert [(p.line, p.kind) for p in problems] == [(3, "duplicate"), (4, "duplicate")]
    assert samples[1].path == outside
    assert samples[1].rel == "__outside__/" + outside.as_posix().lstrip("/")
    cache_path(tmp_path / "cache", samples[1].rel)  # a valid cache key (no "..", relative)

    # write_list keeps outside samples readable: absolute path, accepted with the flag
    written = write_list(tmp_path / "out.txt", samples)
    again, _, problems = read_annotations(written, dataset_root, allow_outside_root=True)
    assert problems == [] and [s.rel for s in again] == [s.rel for s in samples]


def test_csv_formats(tmp_path):
    root = tmp_path / "k400"
    video(root / "air drumming" / "abcdefghijk_000001_000011.mp4")  # crawler layout, space kept
    video(root / "air_drumming" / "bbbbbbbbbbb_000020_000030.mp4")  # underscore folders
    video(root / "zzzzzzzzzzz_000005_000015.mp4")  # flat (CVDF tarballs)
    csv_file = tmp_path / "train.csv"
    csv_file.write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\n"  # line 1
        "air drumming,abcdefghijk,1,11,train,0\n"  # 2
        "air drumming,bbbbbbbbbbb,20,30,train,0\n"  # 3
        '"abseiling",zzzzzzzzzzz,5,15,train,0\n'  # 4 quoted label, flat file
        "abseiling,missingvid00,0,10,train,0\n"  # 5 never downloaded
        "abseiling,badtimes0000,x,10,train,0\n"  # 6 malformed
    )
    samples, classes, problems = read_annotations(csv_file, root)
    assert classes == ["abseiling", "air drumming"]
    assert [(s.rel, s.label_name, s.label) for s in samples] == [
        ("air drumming/abcdefghijk_000001_000011.mp4", "air drumming", 1),
        ("air_drumming/bbbbbbbbbbb_000020_000030.mp4", "air drumming", 1),
        ("zzzzzzzzzzz_000005_000015.mp4", "abseiling", 0),
    ]
    assert kinds(problems) == [(5, "missing"), (6, "malformed")]
    assert "missingvid00_000000_000010.mp4" in problems[0].message
    # against the classes of underscore folders (a model trained on the folder, tested with
    # the CSV): "air drumming" is class air_drumming (it was an unknown label, and left out)
    samples, classes, problems = read_annotations(csv_file, root, classes=["abseiling", "air_drumming"])
    assert [(s.label_name, s.label) for s in samples] == [("air_drumming", 1), ("air_drumming", 1), ("abseiling", 0)]
    assert kinds(problems) == [(5, "missing"), (6, "malformed")]

    # simpler path,label CSV, with or without a header
    plain = tmp_path / "plain.csv"
    plain.write_text("path,label\nair drumming/abcdefghijk_000001_000011.mp4,air drumming\nnot_there.mp4,x\n")
    samples, classes, problems = read_annotations(plain, root)
    assert [s.rel for s in samples] == ["air drumming/abcdefghijk_000001_000011.mp4"]
    assert classes == ["air drumming", "x"] and kinds(problems) == [(3, "missing")]
    plain.write_text("zzzzzzzzzzz_000005_000015.mp4,abseiling\nonly_one_column\n")
    samples, _, problems = read_annotations(plain, root)
    assert [s.rel for s in samples] == ["zzzzzzzzzzz_000005_000015.mp4"] and kinds(problems) == [(2, "malformed")]
    # a label with an unquoted comma was cut at it, silently (class "air drumming", then " badly"
    # dropped); an empty cell after the last (a trailing comma) is nothing left out
    plain.write_text("zzzzzzzzzzz_000005_000015.mp4,abseiling,\n"
                     "air drumming/abcdefghijk_000001_000011.mp4,air drumming, badly\n")
    samples, _, problems = read_annotations(plain, root)
    assert [s.label_name for s in samples] == ["abseiling"] and kinds(problems) == [(2, "malformed")]
    assert "expected path,label, got 3 cells in" in str(problems[0]) and "goes in double quotes" in str(problems[0])

    # Column names of its own: read as a header (it was read as data: a missing video
    # "video_path" and a class "label"). A row starting with "#" that names a video there is
    # data (HMDB51's names start with "#"); one that does not is a comment, as before.
    hmdb = video(root / "#20_Rhythm_clapping_f_nm_np1_fr_med_2.avi")
    flat = "zzzzzzzzzzz_000005_000015.mp4"
    plain.write_text(f"video_path,action\n{hmdb.name},clap\n#{flat},abseiling\n# a comment, as before\n")
    samples, classes, problems = read_annotations(plain, root)
    assert [(s.rel, s.label_name) for s in samples] == [(hmdb.name, "clap")] and classes == ["clap"]
    assert problems == []
    # other names: pandas' unnamed index column first, a digit in a word, a folder named as
    # the path column (the last round took these for data: a video "videos", a class "labels")
    (root / "videos").mkdir()
    for header in (",video_path,action", "s3_path,class", "videos,labels", "Video Path,Class Name",
                   "Path to a video,Label", "Vid\u00e9o_path,Action"):
        first = "0," if header.startswith(",") else ""
        plain.write_text(f"{header}\n{first}{hmdb.name},clap\n")
        samples, classes, problems = read_annotations(plain, root)
        assert [s.rel for s in samples] == [hmdb.name] and classes == ["clap"] and problems == [], header
    # ... but rows that read alike stay data: a first video that is missing is reported and its
    # class kept, so label ids do not depend on what was downloaded (a version that took such a
    # row for names dropped class_a and moved every id down by one)
    for name in ("video_2", "video_3"):
        (root / name).write_bytes((root / flat).read_bytes())
    plain.write_text("video_1,class_a\nvideo_2,class_b\nvideo_3,class_c\n")
    samples, classes, problems = read_annotations(plain, root)
    assert classes == ["class_a", "class_b", "class_c"] and [s.label for s in samples] == [1, 2]
    assert kinds(problems) == [(1, "missing")]
    # a header above path-less rows (frame folders named without an extension) is still names
    # when its label cell is a label column's usual name; a header alone is an empty list
    for header in ("video_id,label", ",clip_id,class_name"):
        first = "0," if header.startswith(",") else ""
        plain.write_text(f"{header}\n{first}video_2,run\n")
        samples, classes, problems = read_annotations(plain, root)
        assert [s.rel for s in samples] == ["video_2"] and classes == ["run"] and problems == [], header
    plain.write_text("video_path,label\n")
    assert read_annotations(plain, root) == ([], [], [])
    # a header-less first row of names without an extension, whose video is there, is data, as
    # before (files not checked too)
    for name in ("clip_01", "clip"):
        (root / name).write_bytes((root / flat).read_bytes())
    plain.write_text("clip_01,action_a\nclip,action_b\n")
    assert [s.rel for s in read_annotations(plain, root).samples] == ["clip_01", "clip"]
    assert [s.rel for s in read_annotations(plain, root, check_files=False).samples] == ["clip_01", "clip"]
    plain.write_text("clip,action\n")  # words of names, but a file of that name is there
    assert [s.rel for s in read_annotations(plain, root).samples] == ["clip"]
    assert [s.rel for s in read_annotations(plain, root, check_files=False, labels=False).samples] == ["clip"]
    for header in ("video_id,label1", "clip16_path,label", "filepath,label2id"):  # names with digits
        plain.write_text(f"{header}\n{hmdb.name},clap\n")
        assert read_annotations(plain, root).classes == ["clap"], header
    text_list = tmp_path / "hmdb.txt"  # the same in a text list
    text_list.write_text(f"{hmdb.name} clap\n#{flat} abseiling\n# a comment\n")
    samples, classes, problems = read_annotations(text_list, root)
    assert [s.rel for s in samples] == [hmdb.name] and classes == ["clap"] and problems == []


def test_write_list_round_trip_and_load_dataset(tmp_path, dataset_root):
    samples, classes = scan_video_folder(dataset_root)
    samples.append(VideoSample(dataset_root / "walk" / "w2.mp4", "walk/w2.mp4", 0, "long jump"))
    out = write_list(tmp_path / "lists" / "all.txt", samples)
    assert os.listdir(out.parent) == ["all.txt"]  # atomic: no temporary left
    assert "walk/w2.mp4\tlong jump\n" in out.read_text()  # tab keeps the spaced name whole
    back, back_classes, problems = load_dataset(out, root=dataset_root)
    assert kinds(problems) == [(5, "duplicate")]
    assert [(s.rel, s.label_name) for s in back] == [(s.rel, s.label_name) for s in samples][:4]
    assert back_classes == ["run", "walk"]
    with pytest.raises(FileNotFoundError, match="nothing.txt"):
        load_dataset(tmp_path / "nothing.txt")
    with pytest.raises(NotADirectoryError, match="no_root"):
        read_annotations(out, tmp_path / "no_root")


# --------------------------------------------------------------------------- splits


def fake_samples(sizes):
    samples = []
    for label, n in enumerate(sizes):
        for i in range(n):
            rel = f"c{label}/v_C{label}_g{i // 2:02d}_c{i % 2:02d}.avi"
            samples.append(VideoSample(Path("/data") / rel, rel, label, f"c{label}"))
    return samples


def test_stratified_split_properties():
    samples = fake_samples([1, 2, 5, 20])
    train, val = stratified_split(samples, 0.2, seed=3)
    assert sorted(s.rel for s in train + val) == sorted(s.rel for s in samples)
    assert not {s.rel for s in train} & {s.rel for s in val}
    per_class = lambda part: [sum(s.label == c for s in part) for c in range(4)]  # noqa: E731
    # round(28 * 0.2) = 6 in all: floor(n * 0.2) per class, then the largest remainder (c1: 0.4)
    assert per_class(val) == [0, 1, 1, 4]
    assert all(n >= 1 for n in per_class(train))
    assert per_class(stratified_split(samples, 0.9, seed=0)[0]) == [1, 1, 1, 1]  # never a class's last one
    # a small dataset still gets a validation set: 8 * 0.1 rounds to 0, one is held out anyway
    train8, val8 = stratified_split(fake_samples([4, 4]), 0.1, seed=0)
    assert len(val8) == 1 and len(train8) == 7
    assert stratified_split(samples, 0.0, seed=0)[1] == []
    # order is kept within each part
    assert [s.rel for s in train] == [s.rel for s in samples if s in train]

    # deterministic for a seed, whatever the input order; other seeds pick other videos
    shuffled = samples[:]
    random.Random(0).shuffle(shuffled)
    assert {s.rel for s in stratified_split(shuffled, 0.2, seed=3)[1]} == {s.rel for s in val}
    vals = {frozenset(s.rel for s in stratified_split(samples, 0.2, seed=k)[1]) for k in range(5)}
    assert len(vals) > 1

    # groups (clips cut from one video) stay on one side
    train, val = stratified_split(samples, 0.3, seed=1, group_key=ucf101_group)
    assert not {ucf101_group(s) for s in train} & {ucf101_group(s) for s in val}
    assert ucf101_group(samples[3]) == "C2_g00"
    with pytest.raises(ValueError):
        stratified_split(samples, 1.0, seed=0)


def test_groups_spanning_classes_stay_on_one_side():
    """An actor (or source video) with clips in several classes: all of them on one side,
    or the validation accuracy measures recognising the actor."""
    samples = [VideoSample(Path("/d") / f"{c}/actor{a}_{k}.mp4", f"{c}/actor{a}_{k}.mp4", label, c)
               for label, c in enumerate(["run", "walk", "jump"]) for a in range(6) for k in range(2)]
    actor = lambda s: Path(s.rel).stem.split("_")[0]  # noqa: E731
    for seed in range(8):
        for fraction in (0.2, 0.4):
            train, val = stratified_split(samples, fraction, seed=seed, group_key=actor)
            assert not {actor(s) for s in train} & {actor(s) for s in val}, (seed, fraction)
            assert val and all(any(s.label == c for s in train) for c in range(3))
            assert sorted(s.rel for s in train + val) == sorted(s.rel for s in samples)


# --------------------------------------------------------------------------- features


@pytest.fixture()
def feature_cache(tmp_path):
    """Cache files for 3 videos with T = 10, 3, 1; row t of video v holds 100 * v + t."""
    cache = tmp_path / "cache"
    samples = []
    for v, t in enumerate([10, 3, 1]):
        rel = f"cls{v}/video {v}.mp4"
        samples.append(VideoSample(tmp_path / "videos" / rel, rel, v, f"cls{v}"))
        feats = (100 * v + torch.arange(t, dtype=torch.float32))[:, None].repeat(1, 6)
        save_features(cache_path(cache, rel), feats, torch.arange(t) * 2, {"backbone": "test"})
    return samples, cache


def rows_of(item):
    features, _ = item
    assert features.dtype == torch.float32 and features.shape[1] == 6
    return [int(r) % 100 for r in features[:, 0]]


def test_feature_dataset_sampling(feature_cache):
    samples, cache = feature_cache
    ev = FeatureDataset(samples, cache, num_segments=4, train=False)
    assert len(ev) == 3 and ev.labels == [0, 1, 2]
    rows = rows_of(ev[0])
    assert len(rows) == 4 and rows == rows_of(ev[0])  # eval: deterministic
    assert all(k * 10 // 4 <= r < -(-(k + 1) * 10 // 4) for k, r in enumerate(rows))  # one row per segment
    assert rows_of(ev[1]) == sorted(rows_of(ev[1])) and set(rows_of(ev[1])) == {0, 1, 2}  # short: repeats
    assert rows_of(ev[2]) == [0, 0, 0, 0] and ev[2][1] == 2

    def train_rows(seed, epoch=0, jitter=True):
        ds = FeatureDataset(samples, cache, num_segments=4, train=True, temporal_jitter=jitter, seed=seed)
        ds.set_epoch(epoch)
        return rows_of(ds[0])

    draws = [train_rows(seed) for seed in range(6)]
    for drawn in draws:
        assert all(k * 10 // 4 <= r < -(-(k + 1) * 10 // 4) for k, r in enumerate(drawn))
    assert len({tuple(r) for r in draws}) > 1  # jitter varies with the seed
    assert train_rows(4) == train_rows(4)  # ... and is reproducible
    assert len({tuple(train_rows(0, epoch)) for epoch in range(6)}) > 1  # and varies per epoch
    assert train_rows(0, jitter=False) == rows  # jitter off: the eval centres


def test_feature_dataset_preload_reads_each_file_once(feature_cache):
    """With preload the items are those read from the files, epoch after epoch, after the
    files are gone; and changing a returned item does not change the next one."""
    samples, cache = feature_cache
    plain = FeatureDataset(samples, cache, num_segments=4, train=True, seed=3)
    kept = FeatureDataset(samples, cache, num_segments=4, train=True, seed=3, preload=True)
    expected = {}
    for epoch in range(2):
        plain.set_epoch(epoch)
        kept.set_epoch(epoch)
        for i in range(3):
            expected[epoch, i] = plain[i]
            got = kept[i]
            assert torch.equal(got[0], expected[epoch, i][0]) and got[1] == expected[epoch, i][1]
    for file in cache.rglob("*.safetensors"):
        file.unlink()
    with pytest.raises(FeatureCacheError):
        plain[0]
    whole = kept.load(0)
    whole += 1000  # a caller's change stays its own
    for epoch in range(2):
        kept.set_epoch(epoch)
        for i in range(3):
            assert torch.equal(kept[i][0], expected[epoch, i][0])


def test_feature_dataset_time_reversal(feature_cache):
    samples, cache = feature_cache
    pairs = {0: 1, 1: 0}  # class 2 has no reverse: never flipped

    def items(epoch, reverse):
        ds = FeatureDataset(samples, cache, num_segments=4, train=True, seed=3,
                            reverse_labels=pairs if reverse else None)
        ds.set_epoch(epoch)
        return [(rows_of(ds[i]), ds[i][1]) for i in range(3)]

    lengths = [10, 3, 1]
    flipped = 0
    for epoch in range(12):
        plain, mixed = items(epoch, False), items(epoch, True)
        for i, ((rows, label), (rows2, label2)) in enumerate(zip(plain, mixed)):
            if i == 2 or (rows2, label2) == (rows, label):
                assert (rows2, label2) == (rows, label)
            else:  # the clip reversed, then sampled with the same draws, with the partner's label
                n = lengths[i]
                assert [n - 1 - r for r in rows2] == rows and label2 == pairs[label]
                if n >= 4:  # each frame in its segment of the reversed clip (10 frames do not
                    # split into 4 mirror-image segments: the jittered rows, reversed, were
                    # outside them, e.g. row 3 of the clip first, outside the reversed [0, 2))
                    assert all((k * n) // 4 <= n - 1 - r < ((k + 1) * n) // 4 for k, r in enumerate(rows2))
                flipped += 1
    assert 6 <= flipped <= 18  # about half of the 24 draws of classes 0 and 1
    ev = FeatureDataset(samples, cache, num_segments=4, train=False, reverse_labels=pairs)
    assert [rows_of(ev[i]) for i in range(3)] == [rows_of(FeatureDataset(samples, cache, 4)[i]) for i in range(3)]


def test_epochs_reach_persistent_workers(feature_cache):
    """Persistent DataLoader workers keep their own dataset copy: the epoch, and with it the
    jitter and the reversals, must still change every epoch (EpochSampler carries it)."""
    samples, cache = feature_cache
    ds = FeatureDataset(samples, cache, num_segments=4, train=True, seed=5, reverse_labels={0: 1, 1: 0})
    sampler = EpochSampler(torch.utils.data.SequentialSampler(ds))
    loader = DataLoader(ds, batch_size=3, sampler=sampler, collate_fn=collate_features,
                        num_workers=2, persistent_workers=True)
    seen = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        (features, _, labels), = list(loader)
        ds.set_epoch(epoch)  # the main process's copy, indexed directly, as the reference
        direct = [ds[i] for i in range(3)]
        assert all(torch.equal(features[i], direct[i][0]) for i in range(3))
        assert labels.tolist() == [label for _, label in direct]
        seen.append((features[0, :, 0].tolist(), labels.tolist()))
    assert len({str(s) for s in seen}) > 1  # epochs differ in the workers too


def test_reverse_label_map(capsys):
    from videoact.training import TrainingError, reverse_label_map

    classes = ["fade_in", "fade_out", "spin"]
    assert reverse_label_map(["fade_in:fade_out", "spin:spin"], classes) == {0: 1, 1: 0, 2: 2}
    assert reverse_label_map([], classes) == {}
    with pytest.raises(TrainingError, match="'fade_in-fade_out' is not 'class_a:class_b'"):
        reverse_label_map(["fade_in-fade_out"], classes)
    with pytest.raises(TrainingError, match="names 'zoom', not a class"):
        reverse_label_map(["fade_in:zoom"], classes)
    with pytest.warns(UserWarning, match="'zoom_in:zoom_out': neither class is in the training data; ignored"):
        assert reverse_label_map(["zoom_in:zoom_out", "spin:spin"], classes) == {2: 2}  # neither: skipped
    with pytest.raises(TrainingError, match="'fade_in' is paired twice"):
        reverse_label_map(["fade_in:fade_out", "fade_in:spin"], classes)


def test_feature_dataset_variable_length_and_collate(feature_cache):
    samples, cache = feature_cache
    ds = FeatureDataset(samples, cache, num_segments=None)
    assert [tuple(ds[i][0].shape) for i in range(3)] == [(10, 6), (3, 6), (1, 6)]
    features, lengths, labels = collate_features([ds[1], ds[0], ds[2]])
    assert features.shape == (3, 10, 6) and features.dtype == torch.float32
    assert lengths.tolist() == [3, 10, 1] and lengths.dtype == torch.int64
    assert labels.tolist() == [1, 0, 2] and labels.dtype == torch.int64
    assert torch.equal(features[0, :3, 0], torch.tensor([100.0, 101.0, 102.0]))
    assert features[0, 3:].abs().sum() == 0 and features[2, 1:].abs().sum() == 0
    with pytest.raises(ValueError, match="one D"):
        collate_features([ds[0], (torch.zeros(2, 5), 0)])
    with pytest.raises(ValueError, match=r"\(4,\)"):  # a 1-D item: the same message, not an IndexError
        collate_features([ds[0], (torch.zeros(4), 0)])

    # DataLoader workers (separate processes) give what direct indexing gives
    loader = DataLoader(FeatureDataset(samples, cache, num_segments=5), batch_size=2,
                        num_workers=2, collate_fn=collate_features)
    batches = list(loader)
    assert [b[1].tolist() for b in batches] == [[5, 5], [5]]
    direct = FeatureDataset(samples, cache, num_segments=5)
    assert torch.equal(batches[0][0][1], direct[1][0]) and batches[1][2].tolist() == [2]


def test_feature_dataset_missing_or_corrupt_cache(feature_cache, tmp_path):
    samples, cache = feature_cache
    extra = VideoSample(tmp_path / "videos" / "new.mp4", "new.mp4", 0, "cls0")
    ds = FeatureDataset([*samples, extra], cache, num_segments=4)
    with pytest.raises(FeatureCacheError) as err:
        ds[3]
    assert str(extra.path) in str(err.value) and str(cache_path(cache, "new.mp4")) in str(err.value)

    cache_path(cache, samples[1].rel).write_bytes(b"\x00garbage, not safetensors")
    with pytest.raises(FeatureCacheError, match="video 1.mp4.*unusable"):
        ds[1]
    save_features(cache_path(cache, samples[2].rel), torch.full((2, 6), float("nan")), torch.arange(2), {})
    with pytest.raises(FeatureCacheError, match="NaN"):
        ds[2]


# --------------------------------------------------------------------------- official splits


def test_convert_ucf101_splits(tmp_path):
    splits = tmp_path / "ucfTrainTestlist"
    splits.mkdir()
    # the real classInd order is not Python's sort order (Hammering before HammerThrow)
    (splits / "classInd.txt").write_text("1 Archery\r\n2 Hammering\r\n3 HammerThrow\r\n")
    (splits / "trainlist01.txt").write_text(
        "Archery/v_Archery_g08_c01.avi 1\r\nHammerThrow/v_HammerThrow_g08_c02.avi 3\r\n"
        "Hammering/v_Hammering_g09_c01.avi 2\r\n"
    )
    (splits / "testlist01.txt").write_text(
        "Archery/v_Archery_g01_c01.avi\r\nHammerThrow/v_HammerThrow_g01_c03.avi\r\n")
    out = tmp_path / "lists"
    written = convert_ucf101_splits(splits, out)
    assert sorted(p.name for p in written) == ["classes.txt", "test_split1.txt", "train_split1.txt"]
    assert load_classes(out / "classes.txt") == ["Archery", "Hammering", "HammerThrow"]
    assert (out / "test_split1.txt").read_text() == (
        "Archery/v_Archery_g01_c01.avi Archery\nHammerThrow/v_HammerThrow_g01_c03.avi HammerThrow\n"
    )

    root = tmp_path / "UCF-101"
    for line in (splits / "trainlist01.txt").read_text().split():
        if line.endswith(".avi"):
            video(root / line)
    samples, classes, problems = read_annotations(out / "train_split1.txt", root, classes=out / "classes.txt")
    assert problems == [] and classes == ["Archery", "Hammering", "HammerThrow"]
    assert [s.label for s in samples] == [0, 2, 1]  # classInd id - 1

    # the script: same output, and --root reports the test videos that are not there
    ucf101_to_list = [sys.executable, str(REPO / "datasets" / "ucf101_to_list.py"), str(splits)]
    with ThreadPoolExecutor(max_workers=2) as pool:  # two processes of their own, side by side
        script = pool.submit(subprocess.run, [*ucf101_to_list, str(tmp_path / "s"), "--root", str(root)],
                             capture_output=True, text=True, timeout=120)
        # a --root that is not there: one line, before anything is written (was a traceback)
        typo = pool.submit(subprocess.run, [*ucf101_to_list, str(tmp_path / "t"), "--root", str(tmp_path / "UCF101")],
                           capture_output=True, text=True, timeout=120)
        script, typo = script.result(), typo.result()
    assert script.returncode == 1, script.stderr
    assert "2 missing" in script.stderr and "v_Archery_g01_c01.avi" in script.stderr
    assert (tmp_path / "s" / "train_split1.txt").read_text() == (out / "train_split1.txt").read_text()
    assert typo.returncode == 1 and typo.stderr == f"ucf101_to_list: --root {tmp_path / 'UCF101'}: no such folder\n"
    assert not (tmp_path / "t").exists()

    # bad input: every problem at once, with file and line, and nothing written
    (splits / "trainlist01.txt").write_text("Archery/v_Archery_g08_c01.avi 2\nArchery/x.avi\nArchery/v.avi 7\n")
    (splits / "testlist01.txt").write_text("Archery/a.avi\nArchery/a.avi\nBoxing/b.avi\n")
    with pytest.raises(AnnotationError) as err:
        convert_ucf101_splits(splits, tmp_path / "bad")
    assert kinds(err.value.problems) == [(1, "unknown_label"), (2, "malformed"), (3, "unknown_label"),
                                         (2, "duplicate"), (3, "unknown_label")]
    assert "folder 'Archery'" in err.value.problems[0].message
    assert not (tmp_path / "bad").exists()

    # a split that leaks: a test video also in training, a test group (person) with training
    # videos (the lists were taken as they were)
    (splits / "trainlist01.txt").write_text("Archery/v_Archery_g08_c01.avi 1\nArchery/v_Archery_g09_c01.avi 1\n")
    (splits / "testlist01.txt").write_text(
        "Archery/v_Archery_g08_c01.avi\nArchery/v_Archery_g09_c02.avi\nArchery/v_Archery_g01_c01.avi\n")
    with pytest.raises(AnnotationError) as err:
        convert_ucf101_splits(splits, tmp_path / "leak")
    assert kinds(err.value.problems) == [(1, "duplicate"), (2, "duplicate")]
    assert [p.message for p in err.value.problems] == [
        "Archery/v_Archery_g08_c01.avi is also on line 1 of trainlist01.txt",
        "group g09 of Archery is in trainlist01.txt too (Archery/v_Archery_g09_c01.avi): a split holds out "
        "whole groups"]
    assert not (tmp_path / "leak").exists()


def test_convert_hmdb51_splits(tmp_path):
    splits = tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    for n in (1, 2):
        (splits / f"brush_hair_test_split{n}.txt").write_text(
            f"April_09_brush_hair_u_nm_np1_ba_goo_0.avi {n} \nApril_09_brush_hair_u_nm_np1_ba_goo_1.avi {3 - n} \n"
            "Blonde_being_brushed_f_nm_np2_ri_med_0.avi 0 \n"
        )
        (splits / f"pick_test_split{n}.txt").write_text("#122_Cleaning_Up_The_Beach_pick_f_cm_np1_ba_bad_0.avi 2 \n")
    out = tmp_path / "lists"
    written = convert_hmdb51_splits(splits, out)
    assert sorted(p.name for p in written) == [
        "classes.txt", "test_split1.txt", "test_split2.txt", "train_split1.txt", "train_split2.txt"]
    assert load_classes(out / "classes.txt") == ["brush_hair", "pick"]
    assert (out / "train_split1.txt").read_text() == (
        "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi brush_hair\n")
    assert (out / "test_split1.txt").read_text() == (
        "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_1.avi brush_hair\n"
        "pick/#122_Cleaning_Up_The_Beach_pick_f_cm_np1_ba_bad_0.avi pick\n"
    )
    root = tmp_path / "hmdb51_org"
    video(root / "pick" / "#122_Cleaning_Up_The_Beach_pick_f_cm_np1_ba_bad_0.avi")
    video(root / "brush_hair" / "April_09_brush_hair_u_nm_np1_ba_goo_1.avi")
    samples, _, problems = read_annotations(out / "test_split1.txt", root, classes=out / "classes.txt")
    assert problems == [] and [(s.label_name, s.label) for s in samples] == [("brush_hair", 0), ("pick", 1)]

    script = subprocess.run(
        [sys.executable, str(REPO / "datasets" / "hmdb51_to_list.py"), str(splits), str(tmp_path / "s")],
        capture_output=True, text=True, timeout=120,
    )
    assert script.returncode == 0, script.stderr
    assert (tmp_path / "s" / "test_split2.txt").read_text() == (out / "test_split2.txt").read_text()

    (splits / "pick_test_split2.txt").write_text("a.avi 3\nb.avi 1\nb.avi 2\n")
    (splits / "pick_test_split1.txt").unlink()
    with pytest.raises(AnnotationError) as err:
        convert_hmdb51_splits(splits, tmp_path / "bad")
    assert kinds(err.value.problems) == [(None, "missing"), (1, "malformed"), (3, "duplicate")]
    assert "pick_test_split2.txt" in err.value.problems[1].file
    # one split file, or a folder that is not there, given for the folder ("[Errno 20] Not a directory")
    for wrong, what in ((splits / "pick_test_split2.txt", "not a folder"), (tmp_path / "nope", "no such folder")):
        script = subprocess.run([sys.executable, str(REPO / "datasets" / "hmdb51_to_list.py"), str(wrong),
                                 str(tmp_path / "t")], capture_output=True, text=True, timeout=120)
        assert script.returncode == 1 and script.stderr == (
            f"hmdb51_to_list: 1 annotation problem(s):\n  {wrong}: missing: {what}: give the folder of HMDB51's "
            "<class>_test_split<N>.txt files\n"), script.stderr


def test_convert_kinetics_csv(tmp_path):
    csv_file = tmp_path / "train.csv"
    csv_file.write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "air drumming,abcdefghijk,1,11,train\nabseiling,0123456789a,20,30,train\nabseiling,lostvideo00,0,10,train\n"
    )
    root = tmp_path / "k400" / "train"
    video(root / "air drumming" / "abcdefghijk_000001_000011.mp4")
    video(root / "abseiling" / "0123456789a_000020_000030.mp4")
    result = convert_kinetics_csv(csv_file, tmp_path / "train.txt", root=root, classes_out=tmp_path / "classes.txt")
    assert kinds(result.problems) == [(4, "missing")]
    lost = "lostvideo00_000000_000010.mp4"  # looked for in each layout a downloader writes
    assert f"video not found: {root / 'abseiling' / lost} (nor {root / lost})" in str(result.problems[0])
    assert load_classes(tmp_path / "classes.txt") == ["abseiling", "air drumming"]  # lost clips keep their class
    samples, classes, problems = read_annotations(tmp_path / "train.txt", root, classes=tmp_path / "classes.txt")
    assert problems == [] and [(s.rel, s.label) for s in samples] == [
        ("air drumming/abcdefghijk_000001_000011.mp4", 1), ("abseiling/0123456789a_000020_000030.mp4", 0)]

    # a --root one level too high finds no clip: an error, and nothing written (was: exit 0, an empty list)
    with pytest.raises(ValueError, match=r"train\.csv: none of its 3 clips is under .*k400 \(looked for .*"
                                         r"nothing written"):
        convert_kinetics_csv(csv_file, tmp_path / "none.txt", root=root.parent, classes_out=tmp_path / "c2.txt")
    assert not (tmp_path / "none.txt").exists() and not (tmp_path / "c2.txt").exists()
    # folders renamed by the older mmaction script: spaces to "_", parentheses to "-"
    football = tmp_path / "football.csv"
    football.write_text('label,youtube_id,time_start,time_end,split\n'
                        '"passing American football (in game)",-VtLx-mcPds,16,26,train\n')
    video(root / "passing_American_football_-in_game-" / "-VtLx-mcPds_000016_000026.mp4")
    found = convert_kinetics_csv(football, tmp_path / "football.txt", root=root)
    assert found.problems == [] and len(found.samples) == 1

    val = tmp_path / "val.csv"
    val.write_text("label,youtube_id,time_start,time_end,split\nswimming,abcdefghijk,1,11,val\n")
    with pytest.raises(AnnotationError, match="swimming"):
        convert_kinetics_csv(val, tmp_path / "val.txt", classes=tmp_path / "classes.txt")

    # The four runs of the script below write nothing the others read: side by side, each in a
    # process of its own.
    kinetics_to_list = [sys.executable, str(REPO / "datasets" / "kinetics_to_list.py")]
    before = csv_file.read_bytes()
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = [pool.submit(subprocess.run, [*kinetics_to_list, *args], capture_output=True, text=True, timeout=120)
                for args in ([str(csv_file), str(tmp_path / "s.txt"), "--root", str(root), "--relative-to",
                              str(root.parent)],
                             [str(csv_file), str(tmp_path / "r.txt"), "--relative-to", str(root.parent)],
                             [str(csv_file), str(csv_file)],
                             [str(csv_file), str(tmp_path / "o.txt"), "--classes-out", str(csv_file)])]
        script, lost, *replacing = [run.result() for run in runs]
    assert script.returncode == 0, script.stderr
    assert "2 clips, 2 classes" in script.stdout and "1 missing" in script.stdout
    assert (tmp_path / "s.txt").read_text() == "".join(
        f"train/{line}" for line in (tmp_path / "train.txt").read_text().splitlines(keepends=True))
    samples, _, problems = read_annotations(tmp_path / "s.txt", root.parent)
    assert problems == [] and samples[0].path == root / "air drumming" / "abcdefghijk_000001_000011.mp4"
    # --relative-to without --root would write paths relative to the CSV's folder
    assert lost.returncode == 1 and "--relative-to needs --root" in lost.stderr and not (tmp_path / "r.txt").exists()

    # the annotation CSV (which may not be downloadable again) is never written over
    for script in replacing:
        assert script.returncode == 1 and "would replace that file" in script.stderr, script.stderr
    assert csv_file.read_bytes() == before and not (tmp_path / "o.txt").exists()


def test_text_files_are_utf8_whatever_the_locale(tmp_path):
    """Under an ASCII locale (LC_ALL=C, no UTF-8 mode: as on some servers and containers),
    lists, class files, configs and CSV results with non-ASCII labels are written as UTF-8
    and read back the same; lists keep "\n" line ends, CSV rows their "\r\n". (File names
    stay ASCII here: such a locale cannot name a file otherwise.)"""
    script = tmp_path / "write.py"
    script.write_text(
        "import csv, sys, torch\n"
        "from pathlib import Path\n"
        "from videoact.config import load_config, save_config\n"
        "from videoact.datasets import VideoSample, load_classes, read_annotations, write_classes, write_list\n"
        "from videoact.inference import Prediction, write_predictions\n"
        "d = Path(sys.argv[1])\n"
        "name = 'caf\\u00e9 \\u65e5\\u672c'\n"
        "(d / 'v.mp4').write_bytes(b'x')\n"
        "write_list(d / 'list.txt', [VideoSample(d / 'v.mp4', 'v.mp4', 0, name)])\n"
        "write_classes(d / 'classes.txt', [name, 'b'])\n"
        "samples, classes, problems = read_annotations(d / 'list.txt', classes=d / 'classes.txt')\n"
        "assert problems == [] and samples[0].label_name == name and load_classes(d / 'classes.txt')[0] == name\n"
        "save_config(load_config(None, ['data.train=' + name]), d / 'config.yaml')\n"
        "assert load_config(d / 'config.yaml').data.train == name\n"
        "write_predictions([Prediction('v.mp4', [(name, 0.75)], torch.ones(1))], d / 'out.csv')\n"
        "with open(d / 'out.csv', encoding='utf-8', newline='') as f:\n"
        "    assert list(csv.reader(f))[1] == ['v.mp4', '1', name, '0.750000', '']\n"
        "print('ok')\n", encoding="utf-8")
    env = dict(os.environ, LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                          encoding="utf-8", env=env, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
    assert (tmp_path / "classes.txt").read_bytes() == "caf\u00e9 \u65e5\u672c\nb\n".encode()
    csv_bytes = (tmp_path / "out.csv").read_bytes()
    assert csv_bytes.count(b"\r\n") == 2 and b"\r\r" not in csv_bytes


def test_class_names_that_start_with_a_number_read_back_as_written(tmp_path, dataset_root):
    """A CSV labelled "1 walk", "2 run" gave a classes.txt of those lines, read back as
    classInd.txt's `id name` lines: classes walk and run, and every list line's label
    unknown."""
    from videoact.datasets import write_classes

    for classes in (["1 walk", "2 run"], ["1 walk", "run"]):
        write_classes(tmp_path / "classes.txt", classes)
        assert load_classes(tmp_path / "classes.txt") == classes
    assert (tmp_path / "classes.txt").read_text() == "1 walk\nrun\n"  # one plain name: plain lines
    write_classes(tmp_path / "classes.txt", ["1 walk", "2 run"])
    listing = tmp_path / "list.txt"
    listing.write_text("walk/w1.mp4\t1 walk\nrun/r2.avi 1\n")  # by name, and by id (line 2 is id 1)
    samples, classes, problems = read_annotations(listing, dataset_root, classes=tmp_path / "classes.txt")
    assert classes == ["1 walk", "2 run"] and [s.label for s in samples] == [0, 1] and problems == []


def test_a_utf16_list_from_windows_powershell_is_read(tmp_path, dataset_root):
    """Windows PowerShell 5's ``>`` writes UTF-16 with a BOM: the list was refused as "not
    UTF-8 text ... is this a video or a model?", misleading for an ordinary list."""
    text = "walk/w1.mp4 walk\r\nrun/my clip.mp4\tcaf\u00e9\r\n"
    for encoding in ("utf-16", "utf-16-be"):
        listed = tmp_path / "ps.txt"
        bom = "\ufeff" if encoding == "utf-16-be" else ""  # Python's "utf-16" writes its own
        listed.write_bytes((bom + text).encode(encoding))
        samples, classes, problems = read_annotations(listed, dataset_root)
        assert problems == [] and [s.label_name for s in samples] == ["walk", "caf\u00e9"], encoding
    classes_file = tmp_path / "classes.txt"
    classes_file.write_bytes("walk\r\nrun\r\n".encode("utf-16"))
    assert load_classes(classes_file) == ["walk", "run"]
    # text that is not UTF-8 still says so
    listed.write_bytes(b"walk/w1.mp4 w\xe4lk\n")
    with pytest.raises(AnnotationError, match="not UTF-8 text"):
        read_annotations(listed, dataset_root)


def test_a_class_level_folder_that_cannot_be_read_is_no_class(tmp_path):
    """lost+found (mode 700, root's) in a dataset root on a mounted disk: once unreadable
    folders were listed as failing entries, it became a third class, or with fixed classes
    an error ("folder 'lost+found' is not one of the 2 classes")."""
    from faults import unreadable_prefix

    prefix, why = unreadable_prefix()
    if prefix is None:
        pytest.skip(why)
    for c in ("a", "b"):
        for i in range(2):
            write_coded_video(tmp_path / "ds" / c / f"{i}.mp4", 8)
    locked = tmp_path / "ds" / "lost+found"
    locked.mkdir()
    locked.chmod(0)
    script = ("import warnings; from videoact.datasets import scan_video_folder\n"
              "with warnings.catch_warnings(record=True) as caught:\n"
              "    warnings.simplefilter('always')\n"
              f"    print(scan_video_folder({str(tmp_path / 'ds')!r})[1], "
              f"scan_video_folder({str(tmp_path / 'ds')!r}, classes=['a', 'b'])[1])\n"
              "print([str(w.message) for w in caught])\n")
    proc = subprocess.run([*prefix, sys.executable, "-c", script], capture_output=True, text=True)
    locked.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "['a', 'b'] ['a', 'b']"
    assert f"{locked}: a folder that cannot be read (permission denied): not taken as a class" in proc.stdout
