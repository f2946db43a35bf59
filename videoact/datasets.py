"""Datasets: video folders, annotation lists, Kinetics CSV, splits, feature datasets.

Where the videos come from
--------------------------
- a *folder*, one sub-folder per class: ``root/<class>/**/<video>`` (:func:`scan_video_folder`);
- an *annotation list*, one ``relative/path label`` per line, the UCF101/HMDB51 style
  (:func:`read_annotations`). The label is the last whitespace-separated token, so paths
  may contain spaces; when a line holds a tab, the split is at the last tab instead, which
  is how :func:`write_list` writes class names that contain spaces (Kinetics);
- a *CSV*: Kinetics (``label,youtube_id,time_start,time_end,split``) or ``path,label``.

Every sample carries ``rel``, its path relative to the dataset root: the key of its
feature file in the cache (:func:`videoact.feature_cache.cache_path`).

Integer labels are ids in the numbering of the classes file: 1-based for UCF101's
``classInd.txt`` (``1 ApplyEyeMakeup``), 0-based positions for a file of plain names.

What the model trains on, cached features of these videos, is :mod:`videoact.feature_dataset`.
"""
from __future__ import annotations

import csv
import io
import math
import os
import random
import re
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, NamedTuple, Sequence

from .atomic import atomic_write_text, clobber_error
# The feature dataset has its own module; importable from here too, where it was first.
from .feature_dataset import EpochSampler, FeatureDataset, collate_features  # noqa: F401
from .notices import VideoactWarning

# The same set as videoact.decode.VIDEO_EXTENSIONS (kept here so lists parse without decoders).
VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4", ".m4v", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m2v", ".wmv",
        ".asf", ".flv", ".f4v", ".gif", ".3gp", ".3g2", ".ogv", ".ts", ".mts", ".m2ts",
        ".vob", ".mxf", ".divx", ".y4m",
    }
)

# Cache keys of samples that live outside the dataset root (allow_outside_root=True):
# ``__outside__/<absolute path without its leading slash>``, so keys never contain "..".
OUTSIDE_PREFIX = "__outside__/"

# Problem kinds reported by read_annotations.
MISSING = "missing"  # the video file does not exist
UNKNOWN_LABEL = "unknown_label"  # label not in the fixed classes (or an id without a classes file)
DUPLICATE = "duplicate"  # the same video listed again
MALFORMED = "malformed"  # the line cannot be parsed
OUTSIDE_ROOT = "outside_root"  # the path escapes the dataset root
PROBLEM_KINDS = (MISSING, UNKNOWN_LABEL, DUPLICATE, MALFORMED, OUTSIDE_ROOT)

PathLike = str | os.PathLike


@dataclass
class VideoSample:
    """One labelled video."""

    path: Path  # absolute path of the video
    rel: str  # path relative to the dataset root, "/"-separated: the feature-cache key
    label: int  # index into the class list
    label_name: str


@dataclass(frozen=True)
class AnnotationProblem:
    """Something wrong with one line of an annotation file (``line`` is 1-based, or None)."""

    file: str
    line: int | None
    kind: str  # one of PROBLEM_KINDS
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.kind}: {self.message}"


class AnnotationError(ValueError):
    """Raised with every problem found at once (``strict=True``, converters)."""

    def __init__(self, problems: Sequence[AnnotationProblem]):
        self.problems = list(problems)
        lines = [str(p) for p in self.problems]
        super().__init__(f"{len(lines)} annotation problem(s):\n  " + "\n  ".join(lines))


class VideoList(NamedTuple):
    """What :func:`read_annotations` and :func:`load_dataset` return; unpacks as a 3-tuple."""

    samples: list[VideoSample]
    classes: list[str]
    problems: list[AnnotationProblem]


# --------------------------------------------------------------------------- classes


class _ClassIndex:
    """Class names plus, for ``id name`` files, the file's own ids -> positions."""

    def __init__(self, names: Sequence[str], ids: dict[int, int] | None = None):
        self.names = list(names)
        self.position = {name: i for i, name in enumerate(self.names)}
        self.ids = ids  # None: integer labels are 0-based positions

    def lookup(self, token: str) -> int | None:
        if token in self.position:
            return self.position[token]
        if _is_id(token):
            number = int(token)
            if self.ids is not None:
                return self.ids.get(number)
            return number if number < len(self.names) else None
        return None


def _parse_class_lines(file: str, lines: Iterable[tuple[int, str]]) -> _ClassIndex:
    entries = [(n, line.strip()) for n, line in lines]
    entries = [(n, s) for n, s in entries if s and not s.startswith("#")]
    problems: list[AnnotationProblem] = []
    numbered = [re.fullmatch(r"(\d+)\s+(\S.*)", s) for _, s in entries]
    if entries and all(numbered):
        # "id name" lines (classInd.txt): keep the file's ids, order classes by id.
        by_id: dict[int, str] = {}
        for (n, _), m in zip(entries, numbered):
            number, name = int(m.group(1)), m.group(2).strip()
            if number in by_id:
                problems.append(AnnotationProblem(file, n, DUPLICATE, f"class id {number} given twice"))
            by_id[number] = name
        ids = sorted(by_id)
        names = [by_id[i] for i in ids]
        mapping = {number: pos for pos, number in enumerate(ids)}
    else:
        names = [s for _, s in entries]
        mapping = None
    seen: dict[str, int] = {}
    for (n, _), name in zip(entries, names):
        if name in seen:
            problems.append(AnnotationProblem(file, n, DUPLICATE, f"class {name!r} listed twice"))
        seen.setdefault(name, n)
    if not names:
        problems.append(AnnotationProblem(file, None, MALFORMED, "no class names in file"))
    if problems:
        raise AnnotationError(problems)
    return _ClassIndex(names, mapping)


def _class_index(classes: Sequence[str] | Mapping[int, str] | PathLike | None) -> _ClassIndex | None:
    if classes is None:
        return None
    if isinstance(classes, (str, os.PathLike)):
        path = Path(classes)
        return _parse_class_lines(str(path), enumerate(_read_text(path, "classes file").splitlines(), 1))
    ids = sorted(classes) if isinstance(classes, Mapping) else None  # {id: name}: a classInd.txt's own ids
    names = [str(classes[i]) for i in ids] if ids is not None else [str(c) for c in classes]
    if len(set(names)) != len(names):
        raise ValueError(f"class names are not unique: {names}")
    return _ClassIndex(names, None if ids is None else {number: pos for pos, number in enumerate(ids)})


def load_classes(path: PathLike) -> list[str]:
    """Read a classes file: one name per line, or ``id name`` lines (``classInd.txt``), ordered by id."""
    index = _class_index(Path(path))
    assert index is not None
    return index.names


def load_class_ids(path: PathLike) -> list[int] | None:
    """The ids of an ``id name`` classes file (``classInd.txt``) in class order; ``None`` for
    a file of plain names (whose integer labels are 0-based positions)."""
    labels = read_class_labels(path)
    return sorted(labels) if isinstance(labels, dict) else None


def class_labels(classes: Sequence[str], class_ids: Sequence[int] | None = None) -> list[str] | dict[int, str]:
    """What a list's integer labels mean, as :func:`load_dataset`'s ``classes``: ``{id: name}``
    for a ``classInd.txt``'s ids, else the names (integers are 0-based positions)."""
    return dict(zip(class_ids, classes)) if class_ids else list(classes)


def read_class_labels(path: PathLike) -> list[str] | dict[int, str]:
    """A classes file read once, as :func:`class_labels` gives it: ``{id: name}`` for
    ``id name`` lines, else the names in file order."""
    index = _class_index(Path(path))
    assert index is not None
    return class_labels(index.names, None if index.ids is None else sorted(index.ids))


def write_classes(path: PathLike, classes: Sequence[str]) -> Path:
    """Write one class name per line, atomically (line ``i`` is class ``i``). Where every
    name starts with a number and a space ("1 walk"), lines of names would read back as
    ``id name`` lines (classInd.txt): each is written after its position instead
    (``0 1 walk``), which reads back as the same names and ids."""
    for name in classes:
        if not name.strip() or "\n" in name or name != name.strip() or name.startswith("#"):
            raise ValueError(f"{path}: class name {name!r} cannot be written one per line")
    lines = list(classes)
    if lines and all(re.fullmatch(r"(\d+)\s+(\S.*)", name) for name in lines):
        lines = [f"{position} {name}" for position, name in enumerate(lines)]
    atomic_write_text(path, "".join(f"{line}\n" for line in lines))
    return Path(path)


def _read_text(path: Path, what: str = "annotation file") -> str:
    try:
        raw = path.read_bytes()
        # UTF-16 with its BOM: what Windows PowerShell 5's `>` writes (`dir -n > list.txt`)
        encoding = "utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"  # -sig: a BOM from editors
        return raw.decode(encoding).replace("\r\n", "\n").replace("\r", "\n")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise IsADirectoryError(f"{path}: a folder, not {_a(what)}") from None
    except UnicodeDecodeError as exc:
        shape = "a name or `id name` per line" if what == "classes file" else "`path label` lines"
        raise AnnotationError([AnnotationProblem(
            str(path), None, MALFORMED, f"not {exc.encoding.upper()} text ({exc.reason} at byte {exc.start}): "
                                        f"{_a(what)} is text, {shape}; is this a video or a model?")]) from None


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


# --------------------------------------------------------------------------- folders


def _is_video(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def _find_videos(directory: str) -> list[str]:
    """Absolute paths of the videos below ``directory``, sorted; hidden entries skipped."""
    try:
        from .decode import list_videos
    except ImportError:  # decoding not installed: the same scan, done here
        pass
    else:
        return [os.path.abspath(p) for p in list_videos(directory, VIDEO_EXTENSIONS)]
    found: list[str] = []
    seen_dirs: set[str] = set()
    for current, dirs, files in os.walk(directory, followlinks=True):
        real = os.path.realpath(current)
        if real in seen_dirs:  # a symlink loop
            dirs[:] = []
            continue
        seen_dirs.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(os.path.join(current, f) for f in files if _is_video(f))
    return sorted(found)


# Sub-folder names that are a dataset's splits: a folder holding only these is one level too high.
_SPLIT_NAMES = frozenset({"train", "training", "val", "valid", "validation", "test", "testing"})


def _warn_empty_folders(root: PathLike, root_abs: str, empty: Sequence[str], fixed_classes: bool) -> None:
    """Say which sub-folders hold no video: with classes taken from the folders, that they are
    not classes (a class left empty); in any case, frame folders from decode-frames."""
    try:
        from .decode import list_videos
    except ImportError:  # decoding not installed (see _find_videos): no frame folders to name
        frames = []
    else:
        frames = [name for name in empty if list_videos(os.path.join(root_abs, name), (), frame_folders=True)]
    frames_note = (f"{', '.join(frames[:5])}{' ...' if len(frames) > 5 else ''} hold JPEG frame folders "
                   "(decode-frames' output), which `videoact infer` reads but datasets do not: give the videos")
    if fixed_classes:  # a class without videos here (a validation split lacking one) is ordinary
        if frames:
            warnings.warn(f"{root}: {frames_note}", VideoactWarning, stacklevel=4)
        return
    warnings.warn(f"{root}: {len(empty)} sub-folder{'s' if len(empty) > 1 else ''} without videos, not taken as "
                  f"classes: {', '.join(empty[:10])}{' ...' if len(empty) > 10 else ''}"
                  f"{'; ' + frames_note if frames else ''}", VideoactWarning, stacklevel=4)


def scan_video_folder(
    root: PathLike, classes: Sequence[str] | Mapping[int, str] | PathLike | None = None
) -> tuple[list[VideoSample], list[str]]:
    """Find ``root/<class>/**/<video>`` (extensions in ``VIDEO_EXTENSIONS``, any case).

    Classes are the sub-folders that hold at least one video, sorted, unless ``classes``
    fixes them (a list or a classes file); then a folder that is not a known class is an
    error. Hidden files and folders (such as atomic-write temporaries) are skipped.
    """
    samples, names, problems = _scan_folder(root, classes)
    if problems:
        raise AnnotationError(problems)
    return samples, names


def _scan_folder(
    root: PathLike, classes: Sequence[str] | Mapping[int, str] | PathLike | None
) -> tuple[list[VideoSample], list[str], list[AnnotationProblem]]:
    root_abs = os.path.abspath(root)
    if not os.path.isdir(root_abs):
        raise NotADirectoryError(f"{root}: not a folder of class sub-folders")
    index = _class_index(classes)
    found: dict[str, list[str]] = {}
    empty: list[str] = []
    for entry in sorted(os.scandir(root_abs), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        if not os.access(entry.path, os.R_OK | os.X_OK):  # lost+found on a mounted disk: no class, no label
            warnings.warn(f"{entry.path}: a folder that cannot be read (permission denied): not taken as a "
                          "class; the videos in it, if any, are left out", VideoactWarning, stacklevel=3)
            continue
        videos = _find_videos(entry.path)
        if videos:
            found[entry.name] = videos
        else:
            empty.append(entry.name)
    # (with the classes fixed, by a checkpoint for `videoact test`: unless a split's name is a class)
    if len(found) >= 2 and set(found) <= _SPLIT_NAMES and (index is None or not set(found) & set(index.position)):
        raise ValueError(f"{root}: its sub-folders are {', '.join(found)}: splits of a dataset, not classes; give "
                         f"one split, e.g. {os.path.join(root, min(found, key=lambda n: not n.startswith('train')))}")
    if empty:
        _warn_empty_folders(root, root_abs, empty, fixed_classes=index is not None)
    if not found:
        stray = [e.name for e in os.scandir(root_abs) if e.is_file() and _is_video(e.name)]
        if stray:
            raise ValueError(
                f"{root}: {len(stray)} videos (e.g. {sorted(stray)[0]}) lie directly in the folder; "
                "a dataset folder needs one sub-folder per class: <root>/<class>/<video>"
            )
    problems: list[AnnotationProblem] = []
    if index is None:
        index = _ClassIndex(sorted(found))
    samples = []
    for name, videos in found.items():
        label = index.position.get(name)
        if label is None:
            problems.append(
                AnnotationProblem(
                    os.path.join(root_abs, name), None, UNKNOWN_LABEL,
                    f"folder {name!r} ({len(videos)} videos) is not one of the {len(index.names)} classes",
                )
            )
            continue
        for video in videos:
            rel = Path(os.path.relpath(video, root_abs)).as_posix()
            samples.append(VideoSample(Path(video), rel, label, name))
    return samples, index.names, problems


# --------------------------------------------------------------------------- lists


class _Outside(Exception):
    pass


def _place(path_text: str, root_abs: str, allow_outside: bool) -> tuple[Path, str]:
    """Absolute path and cache key of a listed path; raises _Outside when it escapes root."""
    full = os.path.normpath(path_text if os.path.isabs(path_text) else os.path.join(root_abs, path_text))
    inside = full != root_abs and os.path.commonpath([full, root_abs]) == root_abs
    if inside:
        return Path(full), Path(os.path.relpath(full, root_abs)).as_posix()
    if not allow_outside:
        raise _Outside(full)
    return Path(full), OUTSIDE_PREFIX + Path(full).as_posix().lstrip("/")


class _Collector:
    """Shared bookkeeping of read_annotations: placement, labels, duplicates, problems."""

    def __init__(self, file: str, root_abs: str, index: _ClassIndex | None, allow_outside: bool, check_files: bool,
                 labels: bool = True):
        self.file, self.root_abs, self.index = file, root_abs, index
        self.allow_outside, self.check_files = allow_outside, check_files
        self.labels = labels  # False: only the paths matter (label -1, no label problems)
        self.entries: list[tuple[Path, str, str, int | None]] = []  # path, rel, label name, label
        self.first_line: dict[str, tuple[int, str]] = {}
        self.seen_names: set[str] = set()
        self.problems: list[AnnotationProblem] = []
        # (line, id, folder) of every integer label, to catch ids off by one against the
        # classes: 1-based ids (UCF101's and HMDB51's own lists) read against a file of
        # names, 0-based ids (mmaction2's lists) read against classInd.txt's 1-based ids.
        self.integer_labels: list[tuple[int, int, str]] = []

    def problem(self, line: int | None, kind: str, message: str) -> None:
        self.problems.append(AnnotationProblem(self.file, line, kind, message))

    def is_comment(self, path_text: str) -> bool:
        """A line or row starting with ``#`` is a comment, unless it names a video that is
        there: HMDB51's file names start with ``#`` (``#20_Rhythm_clapping_..._0.avi``)."""
        if not path_text.startswith("#"):
            return False
        return not (_looks_like_path(path_text) and os.path.isfile(os.path.join(self.root_abs, path_text)))

    def add(self, line: int, path_text: str, label_token: str, candidates: Sequence[str] = (),
            label_aliases: Sequence[str] = ()) -> None:
        """``candidates``: alternative paths tried in order when the first does not exist;
        ``label_aliases``: other spellings of the label, tried in order when the classes are
        fixed and do not have it (a Kinetics label against class folders with underscores)."""
        if not self.labels:
            name, label = label_token, -1
        elif _is_id(label_token):
            if self.index is None:
                self.problem(line, UNKNOWN_LABEL, f"integer label {label_token} needs a classes file")
                return
            self.integer_labels.append((line, int(label_token), Path(path_text.replace("\\", "/")).parent.name))
            label = self.index.lookup(label_token)
            if label is None:
                ids = ("not one of the classes' ids" if self.index.ids is not None
                       else f"not among the classes (0 to {len(self.index.names) - 1}: positions among the class names)")
                self.problem(line, UNKNOWN_LABEL, f"label id {label_token} is {ids}")
                return
            name = self.index.names[label]
        else:
            name = label_token
            label = None
            if self.index is not None:
                label = next((found for spelling in (name, *label_aliases)
                              if (found := self.index.lookup(spelling)) is not None), None)
                if label is None:
                    self.problem(line, UNKNOWN_LABEL, f"label {name!r} is not one of the classes")
                    return
                name = self.index.names[label]
        if "\\" in path_text and os.sep == "/":  # a list written on Windows: Archery\b.avi
            candidates = (*candidates, *(c.replace("\\", "/") for c in (path_text, *candidates)))
        try:
            placed = [_place(p, self.root_abs, self.allow_outside) for p in (path_text, *candidates)]
        except _Outside as exc:
            self.problem(
                line, OUTSIDE_ROOT,
                f"{path_text!r} resolves to {exc.args[0]}, outside the dataset root {self.root_abs} "
                "(refused: a higher --root (data.root) takes it in; in code, allow_outside_root=True)",
            )
            return
        path, rel = placed[0]
        if self.check_files:
            existing = [pr for pr in placed if pr[0].exists()]
            if not existing:
                # Classes come from the text, not the disk: a class whose videos are all
                # missing still exists, so label ids do not depend on what was downloaded.
                self.seen_names.add(name)
                others = list(dict.fromkeys(str(pr[0]) for pr in placed[1:] if pr[0] != path))
                also = f" (nor {' or '.join(others)})" if others else ""
                self.problem(line, MISSING, f"video not found: {path}{also}")
                return
            path, rel = existing[0]
        elif len(placed) > 1:  # not checked, but of the layouts tried the one that is there
            path, rel = next((pr for pr in placed if pr[0].exists()), placed[0])
        if rel in self.first_line:
            first, first_label = self.first_line[rel]
            extra = "" if first_label == name else f" with a different label ({first_label!r} there, {name!r} here)"
            self.problem(line, DUPLICATE, f"{rel} already listed on line {first}{extra}; this line is ignored")
            return
        self.first_line[rel] = (line, name)
        self.seen_names.add(name)
        self.entries.append((path, rel, name, label))

    def check_integer_ids(self) -> None:
        """Refuse integer labels that number the classes otherwise than the classes in use,
        seen where videos lie in folders named after classes:

        * off by one: every such video is labelled with the class after its folder's, or
          before it, and never with its own (``ApplyEyeMakeup/... 1`` read as ``Archery``
          among names; ``... 0`` against classInd.txt, whose ids start at 1);
        * in another order: most such videos are labelled with another class than their
          folder's (UCF101's classInd.txt numbers ``Hammering`` before ``HammerThrow``; a
          model trained on the folders sorts them the other way, and so on).

        Left alone, those labels are silently wrong (and a 0 only reported as unknown)."""
        index = self.index
        if index is None:
            return

        def name_of(number: int) -> str | None:
            position = index.lookup(str(number)) if number >= 0 else None
            return None if position is None else index.names[position]

        for shift in (-1, 1):
            # the videos in class folders whose id names a class read either way
            in_class_folders = [(n, number, folder) for n, number, folder in self.integer_labels
                                if folder in index.position
                                and (name_of(number), name_of(number + shift)) != (None, None)]
            if in_class_folders and all(name_of(number) != folder and name_of(number + shift) == folder
                                        for _, number, folder in in_class_folders):
                break
        else:
            # Not a shift: a few videos labelled against their folder can be the list's
            # own choice, most of them cannot.
            in_class_folders = [(n, number, folder) for n, number, folder in self.integer_labels
                                if folder in index.position]
            wrong = [entry for entry in in_class_folders if name_of(entry[1]) != entry[2]]
            if 2 * len(wrong) <= len(in_class_folders):
                return
            n, number, folder = wrong[0]
            named = f"is {name_of(number)!r}" if name_of(number) is not None else "is no class"
            numbering = "the classes file's own ids" if index.ids is not None else "positions among the class names"
            raise AnnotationError([AnnotationProblem(
                self.file, n, UNKNOWN_LABEL,
                f"integer labels do not number the classes as the classes in use do ({numbering}): id {number} of "
                f"a video in folder {folder!r} {named}, and {len(wrong)} of the {len(in_class_folders)} videos in "
                "class folders are labelled with another class than their folder's; use a list labelled with "
                "class names (datasets/ucf101_to_list.py and hmdb51_to_list.py write them), or the classes file "
                "the list's ids come from (UCF101's classInd.txt)")])
        n, number, folder = in_class_folders[0]
        named = f"is {name_of(number)!r}" if name_of(number) is not None else "is no class"
        if index.ids is None and shift == -1:  # UCF101's or HMDB51's own list against names
            what = (f"integer labels look 1-based: id {number} of a video in folder {folder!r} {named} "
                    "as a 0-based position among the class names")
            fix = ("use the lists datasets/ucf101_to_list.py and hmdb51_to_list.py write (labelled with names), "
                   "or train with the 'id name' classes file (UCF101's classInd.txt) as --classes")
        elif index.ids is not None and shift == 1:  # a 0-based list (mmaction2's) against classInd.txt
            what = (f"integer labels look 0-based: id {number} of a video in folder {folder!r} {named} "
                    "under the classes file's own ids")
            fix = ("0-based ids go with a classes file of names only, one per line (line 1 is id 0), or use "
                   "the lists datasets/ucf101_to_list.py and hmdb51_to_list.py write (labelled with names)")
        else:
            what = (f"integer labels are one {'above' if shift == -1 else 'below'} the classes': id {number} of a "
                    f"video in folder {folder!r} {named}")
            fix = "check that the list and the classes file number the classes alike"
        raise AnnotationError([AnnotationProblem(self.file, n, UNKNOWN_LABEL,
                                                 f"{what}, and so for all {len(in_class_folders)} videos in class "
                                                 f"folders; {fix}")])

    def result(self) -> VideoList:
        names: Sequence[str] = []
        if self.labels:
            self.check_integer_ids()
            names = self.index.names if self.index is not None else sorted(self.seen_names)
        position = {n: i for i, n in enumerate(names)}
        samples = [
            VideoSample(path, rel, label if label is not None else position[name], name)
            for path, rel, name, label in self.entries
        ]
        return VideoList(samples, list(names), self.problems)


def _is_id(token: str) -> bool:
    """An integer label: ASCII digits only (``str.isdigit`` also takes ``²``, which ``int`` refuses)."""
    return token.isascii() and token.isdigit()


def _looks_like_path(token: str) -> bool:
    return "/" in token or "\\" in token or os.path.splitext(token)[1].lower() in VIDEO_EXTENSIONS


# A video path, then words after a space: compiled once, as it is matched on every line.
_PATH_THEN_WORDS = re.compile(r"(.*?\.(?:" + "|".join(e.lstrip(".") for e in VIDEO_EXTENSIONS) + r"))\s+(\S.*)",
                              flags=re.IGNORECASE)


def _label_after_a_space(path_text: str, label: str, col: _Collector) -> str | None:
    """Why ``path_text label`` is a label of several words after a space (``abc.mp4 air
    drumming``: the path would be ``abc.mp4 air``, the class ``drumming``), or None: a
    video is there under the path up to its extension, and nothing under the whole."""
    m = _PATH_THEN_WORDS.fullmatch(path_text)
    if not m or not col.check_files:
        return None
    video, words = m.group(1), f"{m.group(2)} {label}"
    if os.path.exists(os.path.join(col.root_abs, path_text)) or not os.path.isfile(os.path.join(col.root_abs, video)):
        return None
    return (f"{video} is there, and its label would be {words!r}: a label of several words goes after a tab "
            "(with a space, only the last word is the label and the rest is taken for the path)")


def _read_text_list(text: str, col: _Collector) -> None:
    first = True
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if "\t" in line:
            path_text, _, label = line.rpartition("\t")
            path_text, label = path_text.strip(), label.strip()
        else:
            parts = line.rsplit(None, 1)
            path_text, label = (parts[0], parts[1]) if len(parts) == 2 else ("", "")
        if line.startswith("#") and col.is_comment(path_text or line):
            continue
        if first and path_text.lower() in _PATH_COLUMNS and label.lower() in _LABEL_COLUMNS \
                and not os.path.exists(os.path.join(col.root_abs, path_text)):
            continue  # a header (pandas' to_csv(sep=" ") writes "path label"), not a video of class "label"
        first = False
        if "\t" not in line and (glued := _label_after_a_space(path_text, label, col)):
            col.problem(number, MALFORMED, glued)
            continue
        if not col.labels and (not label or _looks_like_path(label)):  # a bare path (UCF101 testlist)
            path_text, label = line, ""
        if not path_text and _looks_like_path(line) and col.labels:  # UCF101's testlist lines
            col.problem(number, MALFORMED, f"expected 'relative/path label', got {line!r}, a path without a label "
                        "(UCF101's testlist files have none: datasets/ucf101_to_list.py writes labelled lists)")
        elif not path_text or (not label and col.labels):
            col.problem(number, MALFORMED, f"expected 'relative/path label', got {line!r}")
        elif _looks_like_path(label):
            col.problem(number, MALFORMED, f"no label: the last token {label!r} looks like a path, in {line!r}")
        else:
            col.add(number, path_text, label)


_KINETICS_COLUMNS = ("youtube_id", "time_start", "time_end")
_PATH_COLUMNS = ("path", "video", "filename", "file")
_LABEL_COLUMNS = ("label", "class", "label_name")


def _kinetics_time(text: str) -> int:
    value = float(text)
    if value < 0 or value != int(value):
        raise ValueError(text)
    return int(value)


def kinetics_filename(youtube_id: str, time_start: int, time_end: int) -> str:
    """``<youtube_id>_<start:06d>_<end:06d>.mp4``, the ActivityNet crawler's clip name."""
    return f"{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"


_PATH_STEMS = ("path", "video", "file", "clip")
_LABEL_STEMS = ("label", "class", "action", "categor", "activit")


# Label column names as they are written: a first row whose label cell is one of these is
# names, whatever lies below it (a class would hardly be called "label").
_LABEL_NAMES = frozenset({"label", "labels", "label_name", "class", "classes", "class_name", "classname",
                          "class_label", "action", "actions", "category", "categories", "activity", "activities"})


def _header_columns(cells: list[str], following: list[str] | None, col: _Collector) -> list[str] | None:
    """A first row of column names other than the ones above (``video_path,label``,
    ``,video_id,action`` as pandas writes it, ``Path to a video,Label``): the names, its
    path and label columns renamed ``path`` and ``label``; None for a row of data. Read as
    data, such a header became a missing video and its label name a class.

    A name is made of words (split at anything but letters and digits); a path column has
    a word with path, video, file or clip in it, a label column one with label, class,
    action, categor(y) or activit(y). Such a row, with no path in it (``/``, ``\\`` or a video
    extension) and no file or frame folder of its path cell's name there, is names when
    there is no row after it (a header alone: an empty list), when the row after it
    (``following``) has a path in that column, or when its label cell is a label column's
    usual name (``label``, ``class_name``, ``action`` ...). Otherwise it is data: rows that
    read alike (``video_1,class_a`` above ``video_2,class_b``) stay data, so a missing
    first video is reported and its class kept (label ids do not depend on what was
    downloaded). Left ambiguous: a path-less first row of data above rows with paths."""
    if any(_looks_like_path(c) for c in cells):
        return None
    words = [[w for w in re.split(r"[\W_]+", c.lower()) if w] for c in cells]

    def column(stems: tuple[str, ...], skip: int | None = None) -> int | None:
        return next((i for i, ws in enumerate(words) if i != skip and any(s in w for w in ws for s in stems)), None)

    path_at, label_at = column(_PATH_STEMS), None
    if path_at is not None:
        label_at = column(_LABEL_STEMS, skip=path_at)
    if path_at is None or label_at is None:
        return None
    there = os.path.join(col.root_abs, cells[path_at])
    frames = os.path.join(there, "img_00001.jpg")  # a frame folder's first frame (decode.FRAME_NAME)
    if cells[path_at] and (os.path.isfile(there) or os.path.isfile(frames)):
        return None
    names_above_data = (following is None
                        or (path_at < len(following) and _looks_like_path(following[path_at]))
                        or "_".join(words[label_at]) in _LABEL_NAMES)
    if not names_above_data:
        return None
    named = [c.lower() for c in cells]
    named[path_at], named[label_at] = "path", "label"
    return named


def _read_csv(text: str, col: _Collector) -> None:
    reader = csv.reader(io.StringIO(text))
    # (line number, cells) of the rows that are not blank or comments, read one ahead: a
    # first row of names is told from one of data by the row after it.
    rows = ((reader.line_num, cells) for cells in ([c.strip() for c in row] for row in reader)
            if any(cells) and not col.is_comment(cells[0]))
    header: list[str] | None = None
    after = next(rows, None)
    while after is not None:
        (number, cells), after = after, next(rows, None)
        if header is None:
            lowered = [c.lower() for c in cells]
            if all(c in lowered for c in _KINETICS_COLUMNS) or (
                any(c in lowered for c in _PATH_COLUMNS) and any(c in lowered for c in _LABEL_COLUMNS)
            ):
                header = lowered
            else:  # column names of its own (video_path,label; clip,action ...), or a first row of data
                header = _header_columns(cells, after[1] if after is not None else None, col)
            if header is not None:
                if "youtube_id" in header and "label" not in header and col.labels:
                    col.problem(number, MALFORMED, "Kinetics CSV without a label column (an unlabelled test set?)")
                    return
                continue
            header = ["path", "label"]  # no header line: plain path,label rows
        if "youtube_id" in header:
            _kinetics_row(header, cells, number, col)
            continue
        row = dict(zip(header, cells))
        path_text = next((row[c] for c in _PATH_COLUMNS if row.get(c)), "")
        label = next((row[c] for c in _LABEL_COLUMNS if row.get(c)), "")
        if len(cells) < len(header) or not path_text or not label:
            col.problem(number, MALFORMED, f"expected {','.join(header)}, got {','.join(cells)!r}")
        elif any(cells[len(header):]):  # "a.mp4,making tea, badly" was class "making tea", silently
            col.problem(number, MALFORMED, f"expected {','.join(header)}, got {len(cells)} cells in "
                        f"{','.join(cells)!r} (a label with a comma goes in double quotes)")
        else:
            col.add(number, path_text, label)


def _kinetics_row(header: list[str], cells: list[str], number: int, col: _Collector) -> None:
    row = dict(zip(header, cells))
    try:
        if len(cells) < len(header):
            raise ValueError("too few columns")
        label, youtube_id = row.get("label", ""), row["youtube_id"]
        start, end = _kinetics_time(row["time_start"]), _kinetics_time(row["time_end"])
        if (not label and col.labels) or not youtube_id or "/" in youtube_id or end <= start:
            raise ValueError("empty field or bad times")
    except (ValueError, KeyError, OverflowError) as exc:  # OverflowError: a time of "inf"
        col.problem(number, MALFORMED, f"bad Kinetics row {','.join(cells)!r} ({exc})")
        return
    name = kinetics_filename(youtube_id, start, end)
    if not label:  # an unlabelled test set, read for its paths (check): its clips lie flat
        col.add(number, name, "")
        return
    # Downloaders differ: the ActivityNet crawler keeps spaces in class folders,
    # others use underscores (the older mmaction rename script also made "(" and ")" "-"),
    # the CVDF tarballs are flat. First existing one wins.
    underscores = label.replace(" ", "_")
    renamed = underscores.replace('(', '-').replace(')', '-')
    # The same spellings name the class where the classes come from those folders (a model
    # trained on the folder, tested with the CSV): "air drumming" is class "air_drumming".
    col.add(number, f"{label}/{name}", label, candidates=(f"{underscores}/{name}", f"{renamed}/{name}", name),
            label_aliases=(underscores, renamed))


def read_annotations(
    list_file: PathLike,
    root: PathLike | None = None,
    classes: Sequence[str] | Mapping[int, str] | PathLike | None = None,
    *,
    allow_outside_root: bool = False,
    strict: bool = False,
    check_files: bool = True,
    labels: bool = True,
) -> VideoList:
    """Read an annotation list or CSV into ``(samples, classes, problems)``.

    Args:
        list_file: ``relative/path label`` lines (``#`` comments, unless naming a video
            that is there, and blank lines ignored;
            label = last whitespace-separated token, or what follows the last tab), or a
            ``.csv`` file: Kinetics (``label,youtube_id,time_start,time_end,...`` header;
            videos at ``root/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4``, also found
            with ``_`` for spaces in the folder or in a flat folder) or ``path,label``
            (or other column names: ``video_path,action``, ...).
        root: the dataset root the paths are relative to (default: the list's folder).
        classes: fixes the class list (names, ``{id: name}``, or a classes.txt /
            classInd.txt file); otherwise classes are the sorted label names found in the
            file. Integer labels are the file's ids, or 0-based positions among names.
        allow_outside_root: accept paths that resolve outside ``root``; their cache key
            is ``__outside__/<absolute path>``.
        strict: raise :class:`AnnotationError` listing every problem instead of returning them.
        check_files: report listed videos that do not exist (``missing``) and drop them.
        labels: ``False`` reads only the paths (for a health check): lines may be bare paths
            (as UCF101's test lists), labels are not looked up, samples get label ``-1``
            and there are no classes.

    Problem lines are dropped from ``samples`` and reported with file and line number.
    """
    list_file = Path(list_file)
    text = _read_text(list_file)
    # A mistyped root is one mistake, not every listed file missing: refused whether or
    # not the files are looked for.
    if root is not None and not os.path.isdir(root):
        raise NotADirectoryError(f"{root}: dataset root of {list_file} not found")
    root_abs = os.path.normpath(os.path.abspath(root if root is not None else list_file.parent))
    col = _Collector(str(list_file), root_abs, _class_index(classes), allow_outside_root, check_files, labels)
    first_line = next((s for s in (line.strip() for line in text.splitlines()) if s and not s.startswith("#")), "")
    is_csv = list_file.suffix.lower() == ".csv" or all(c in first_line.lower() for c in _KINETICS_COLUMNS)
    (_read_csv if is_csv else _read_text_list)(text, col)
    result = col.result()
    if strict and result.problems:
        raise AnnotationError(result.problems)
    return result


def load_dataset(
    spec: PathLike,
    root: PathLike | None = None,
    classes: Sequence[str] | Mapping[int, str] | PathLike | None = None,
    **options,
) -> VideoList:
    """A folder of class sub-folders, or an annotation list/CSV (``options`` go to :func:`read_annotations`).

    For a folder, ``root`` is ignored (the folder is the root) and the only possible
    problems are sub-folders that are not among fixed ``classes``.
    """
    spec_path = Path(spec)
    if spec_path.is_dir():
        # A folder is its own root: ``root`` only applies to paths inside list files.
        samples, names, problems = _scan_folder(spec_path, classes)
        if options.get("strict") and problems:
            raise AnnotationError(problems)
        return VideoList(samples, names, problems)
    if not spec_path.exists():
        raise FileNotFoundError(f"{spec}: no such dataset folder or annotation file")
    kind = _not_a_list(spec_path)
    if kind:  # a likely mix-up (`test best.pt clip.mp4`): say so, not "not UTF-8 text"
        raise ValueError(f"{spec}: {kind}, not a dataset: give a folder of class sub-folders "
                         "(<root>/<class>/<video>) or an annotation list of `path label` lines"
                         + ("; to classify single videos, use `videoact infer`" if kind.startswith("a video") else ""))
    return read_annotations(spec_path, root, classes, **options)


_MODEL_EXTENSIONS = frozenset({".pt", ".pth", ".ckpt", ".safetensors", ".bin", ".onnx"})


def _not_a_list(path: Path) -> str | None:
    """What ``path`` is when its name says it cannot be an annotation list."""
    ext = path.suffix.lower()
    if ext in VIDEO_EXTENSIONS:
        return "a video file"
    if ext in _MODEL_EXTENSIONS:
        return "a model or feature file"
    return None


def _format_line(rel: str, label_name: str, where: PathLike) -> str:
    if "\n" in rel or "\r" in rel or "\t" in rel or rel != rel.strip() or rel.startswith("#") or not rel:
        raise ValueError(f"{where}: path {rel!r} cannot be written to a list file")
    if not label_name or "\n" in label_name or "\t" in label_name or label_name != label_name.strip():
        raise ValueError(f"{where}: label {label_name!r} cannot be written to a list file")
    if _looks_like_path(label_name):
        raise ValueError(f"{where}: label {label_name!r} would be read back as a path")
    # A tab keeps class names with spaces whole ("air drumming"); plain names use a space.
    sep = "\t" if any(ch.isspace() for ch in label_name) else " "
    return f"{rel}{sep}{label_name}\n"


def write_list(path: PathLike, samples: Iterable[VideoSample]) -> Path:
    """Write ``rel label_name`` lines atomically (what :func:`read_annotations` reads back).

    Samples from outside the root (``__outside__/`` keys) are written with their absolute
    path; reading them back needs ``allow_outside_root=True``. A class name that is all
    digits (a folder ``0/``) reads back as a class id, so it needs ``classes=`` (a
    classes file, e.g. :func:`write_classes`) to be read as a name.
    """
    lines = []
    for s in samples:
        rel = str(s.path) if s.rel.startswith(OUTSIDE_PREFIX) else s.rel
        lines.append(_format_line(rel, s.label_name, path))
    atomic_write_text(path, "".join(lines))
    return Path(path)


# --------------------------------------------------------------------------- splits


_UCF101_NAME = re.compile(r"v_(.+)_g(\d+)_c\d+$")


def ucf101_group(sample: VideoSample) -> str:
    """UCF101 group of a clip: ``v_Archery_g03_c02.avi`` -> ``Archery_g03``.

    Clips of one group are cut from the same long video; keep them on one side of a split.
    """
    stem = Path(sample.rel).stem
    match = _UCF101_NAME.match(stem)
    return f"{match.group(1)}_g{match.group(2)}" if match else stem


def ucf101_named(samples: Sequence[VideoSample]) -> bool:
    """Whether every clip is named as UCF101's are (``v_<class>_g<group>_c<clip>``)."""
    return bool(samples) and all(_UCF101_NAME.match(Path(s.rel).stem) for s in samples)


def _val_counts(sizes: dict[int, int], val_fraction: float, rng: random.Random) -> dict[int, int]:
    """How many samples of each class go to val: ``round(N * val_fraction)`` in all (at least
    one when ``val_fraction > 0``), shared in proportion to class size (largest remainders
    first, ties drawn by ``rng``), never a class's last sample."""
    quota = {c: n * val_fraction for c, n in sizes.items()}
    counts = {c: min(math.floor(q), sizes[c] - 1) for c, q in quota.items()}
    total = round(sum(sizes.values()) * val_fraction)
    if val_fraction > 0:
        total = max(total, 1)
    order = sorted(sizes, key=lambda c: (-(quota[c] - math.floor(quota[c])), rng.random()))
    while sum(counts.values()) < total:
        open_classes = [c for c in order if counts[c] < sizes[c] - 1]
        if not open_classes:
            break
        for c in open_classes[: total - sum(counts.values())]:
            counts[c] += 1
    return counts


def stratified_split(
    samples: Sequence[VideoSample],
    val_fraction: float,
    seed: int = 0,
    group_key: Callable[[VideoSample], str] | None = None,
) -> tuple[list[VideoSample], list[VideoSample]]:
    """Split per class: ``val_fraction`` of the samples to val, in proportion to class size,
    at least one sample of every class kept in train.

    The val part has ``round(N * val_fraction)`` samples (at least one when
    ``val_fraction > 0`` and some class has two), so small datasets do not get an empty
    validation set. Deterministic for a given ``seed`` and sample set (input order does not
    matter); both parts keep the input order. With ``group_key``, samples that share a key
    (e.g. :func:`ucf101_group`, or an actor id spanning classes) go to the same side, and
    the counts are approximate.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    by_class: dict[int, list[VideoSample]] = defaultdict(list)
    for s in samples:
        by_class[s.label].append(s)
    rng = random.Random(seed)
    counts = _val_counts({c: len(by_class[c]) for c in sorted(by_class)}, val_fraction, rng)
    key_of = group_key or (lambda s: s.rel)
    # A group is taken whole, across classes (an actor or source video may appear in several).
    groups: dict[str, list[VideoSample]] = defaultdict(list)
    for s in samples:
        groups[key_of(s)].append(s)
    left = {c: len(members) for c, members in by_class.items()}  # training samples per class
    taken: dict[int, int] = defaultdict(int)
    val_keys: set[str] = set()
    for label in sorted(by_class):
        keys = sorted({key_of(s) for s in by_class[label]})
        rng.shuffle(keys)
        for key in keys:
            if taken[label] >= counts[label]:
                break
            if key in val_keys:
                continue
            per_class = defaultdict(int)
            for s in groups[key]:
                per_class[s.label] += 1
            if any(left[c] - n < 1 for c, n in per_class.items()):
                continue  # it would take some class's last training sample
            val_keys.add(key)
            for c, n in per_class.items():
                left[c] -= n
                taken[c] += n
    train = [s for s in samples if key_of(s) not in val_keys]
    val = [s for s in samples if key_of(s) in val_keys]
    return train, val


# --------------------------------------------------------------------------- official splits


def _entry_lines(path: Path) -> list[tuple[int, str]]:
    return [(n, s.strip()) for n, s in enumerate(_read_text(path).splitlines(), 1) if s.strip()]


def _write_entries(path: Path, entries: Sequence[tuple[str, str]]) -> Path:
    atomic_write_text(path, "".join(_format_line(rel, name, path) for rel, name in entries))
    return path


def _ucf_group(rel: str) -> tuple[str, str] | None:
    """``("ApplyEyeMakeup", "g08")`` for ``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi``, else None."""
    m = re.fullmatch(r"([^/]+)/v_.*_(g\d+)_c\d+\.\w+", rel)
    return (m.group(1), m.group(2)) if m else None


def convert_ucf101_splits(split_dir: PathLike, out_dir: PathLike) -> list[Path]:
    """UCF101 ``ucfTrainTestlist`` -> ``train_splitN.txt``, ``test_splitN.txt``, ``classes.txt``.

    Reads ``classInd.txt`` (``1 ApplyEyeMakeup``), ``trainlist0N.txt`` (``path id``, ids
    1-based) and ``testlist0N.txt`` (path only; the class is the path's folder). Every
    line is checked (id known, folder matches the id's class, no duplicates, each split
    has both files); any problem raises :class:`AnnotationError` and nothing is written.
    ``classes.txt`` keeps classInd order, so its line ``i`` is id ``i + 1``.
    Returns the written files.
    """
    split_dir, out_dir = Path(split_dir), Path(out_dir)
    class_file = split_dir / "classInd.txt"
    index = _parse_class_lines(str(class_file), enumerate(_read_text(class_file).splitlines(), 1))
    problems: list[AnnotationProblem] = []

    def bad(file: Path, line: int | None, kind: str, message: str) -> None:
        problems.append(AnnotationProblem(str(file), line, kind, message))

    outputs: dict[str, list[tuple[str, str]]] = {}
    splits = sorted({int(m.group(2)) for p in split_dir.iterdir()
                     if (m := re.fullmatch(r"(train|test)list(\d+)\.txt", p.name))})
    if not splits:
        bad(split_dir, None, MISSING, "no trainlist0N.txt / testlist0N.txt files")
    for n in splits:
        lines: dict[str, dict[str, int]] = {}  # kind -> {rel: line}
        for kind in ("train", "test"):
            file = split_dir / f"{kind}list{n:02d}.txt"
            if not file.exists():
                bad(file, None, MISSING, f"split {n} has no {kind} list")
                continue
            entries: list[tuple[str, str]] = []
            seen: dict[str, int] = {}
            for line, text in _entry_lines(file):
                parts = text.split()
                rel = parts[0]
                folder = rel.split("/")[0] if "/" in rel else None
                if len(parts) != (2 if kind == "train" else 1) or folder is None or ".." in rel.split("/"):
                    want = "'Class/v_Class_gNN_cNN.avi id'" if kind == "train" else "'Class/v_Class_gNN_cNN.avi'"
                    bad(file, line, MALFORMED, f"expected {want}, got {text!r}")
                    continue
                if kind == "train":
                    label = index.lookup(parts[1]) if _is_id(parts[1]) else None
                    if label is None:
                        bad(file, line, UNKNOWN_LABEL, f"class id {parts[1]!r} is not in classInd.txt")
                        continue
                    if index.names[label] != folder:
                        bad(file, line, UNKNOWN_LABEL, f"id {parts[1]} is {index.names[label]!r} in classInd.txt "
                            f"but the video is in folder {folder!r}")
                        continue
                elif folder not in index.position:
                    bad(file, line, UNKNOWN_LABEL, f"folder {folder!r} is not a class of classInd.txt")
                    continue
                if rel in seen:
                    bad(file, line, DUPLICATE, f"{rel} already on line {seen[rel]}")
                    continue
                seen[rel] = line
                entries.append((rel, folder))
            outputs[f"{kind}_split{n}.txt"] = entries
            lines[kind] = seen
        # UCF101's splits hold out whole groups (the 25 people, _gNN_): a video, or a
        # group, on both sides of one split puts test clips of the same person and scene
        # in training, and accuracy goes up for nothing.
        if len(lines) == 2:
            train_groups = {g: rel for rel in lines["train"] if (g := _ucf_group(rel))}
            for rel, line in lines["test"].items():
                if rel in lines["train"]:
                    bad(split_dir / f"testlist{n:02d}.txt", line, DUPLICATE,
                        f"{rel} is also on line {lines['train'][rel]} of trainlist{n:02d}.txt")
                elif (g := _ucf_group(rel)) in train_groups:
                    bad(split_dir / f"testlist{n:02d}.txt", line, DUPLICATE,
                        f"group {g[1]} of {g[0]} is in trainlist{n:02d}.txt too ({train_groups[g]}): "
                        "a split holds out whole groups")
    if problems:
        raise AnnotationError(problems)
    written = [write_classes(out_dir / "classes.txt", index.names)]
    written += [_write_entries(out_dir / name, entries) for name, entries in outputs.items()]
    return written


def convert_hmdb51_splits(split_dir: PathLike, out_dir: PathLike) -> list[Path]:
    """HMDB51 ``testTrainMulti_7030_splits`` -> ``train_splitN.txt``, ``test_splitN.txt``, ``classes.txt``.

    Reads ``<class>_test_split<N>.txt`` files whose lines are ``video.avi 0|1|2``
    (1 train, 2 test, 0 not used); videos are expected at ``<class>/<video.avi>``.
    Every split must cover the same classes. Any problem raises :class:`AnnotationError`
    and nothing is written. Classes are sorted names. Returns the written files.
    """
    split_dir, out_dir = Path(split_dir), Path(out_dir)
    problems: list[AnnotationProblem] = []

    def bad(file: Path, line: int | None, kind: str, message: str) -> None:
        problems.append(AnnotationProblem(str(file), line, kind, message))

    if not split_dir.is_dir():  # iterdir's "[Errno 20] Not a directory" said neither what nor why
        what = "not a folder" if split_dir.exists() else "no such folder"
        raise AnnotationError([AnnotationProblem(str(split_dir), None, MISSING, f"{what}: give the folder of "
                                                 "HMDB51's <class>_test_split<N>.txt files")])
    files: dict[int, dict[str, Path]] = defaultdict(dict)
    for p in sorted(split_dir.iterdir()):
        m = re.fullmatch(r"(.+)_test_split(\d+)\.txt", p.name)
        if m:
            files[int(m.group(2))][m.group(1)] = p
    if not files:
        bad(split_dir, None, MISSING, "no <class>_test_split<N>.txt files")
    classes = sorted({c for per_split in files.values() for c in per_split})
    outputs: dict[str, list[tuple[str, str]]] = {}
    for n in sorted(files):
        absent = [c for c in classes if c not in files[n]]
        if absent:
            bad(split_dir, None, MISSING, f"split {n} has no file for classes {absent}")
        train: list[tuple[str, str]] = []
        test: list[tuple[str, str]] = []
        for name in classes:
            if name not in files[n]:
                continue
            file = files[n][name]
            seen: dict[str, int] = {}
            for line, text in _entry_lines(file):
                parts = text.split()
                if len(parts) != 2 or parts[1] not in ("0", "1", "2") or "/" in parts[0] or parts[0] in (".", ".."):
                    bad(file, line, MALFORMED, f"expected 'video.avi 0|1|2', got {text!r}")
                    continue
                if parts[0] in seen:
                    bad(file, line, DUPLICATE, f"{parts[0]} already on line {seen[parts[0]]}")
                    continue
                seen[parts[0]] = line
                if parts[1] != "0":
                    (train if parts[1] == "1" else test).append((f"{name}/{parts[0]}", name))
        outputs[f"train_split{n}.txt"] = train
        outputs[f"test_split{n}.txt"] = test
    if problems:
        raise AnnotationError(problems)
    written = [write_classes(out_dir / "classes.txt", classes)]
    written += [_write_entries(out_dir / name, entries) for name, entries in outputs.items()]
    return written


def convert_kinetics_csv(
    csv_file: PathLike,
    out_list: PathLike,
    root: PathLike | None = None,
    classes: Sequence[str] | Mapping[int, str] | PathLike | None = None,
    classes_out: PathLike | None = None,
    relative_to: PathLike | None = None,
) -> VideoList:
    """Kinetics CSV (``label,youtube_id,time_start,time_end,split``) -> a list file.

    With ``root`` (the downloaded videos), each clip is looked up as
    ``root/<label>/<id>_<start>_<end>.mp4`` (or with ``_`` for spaces, or flat in ``root``);
    clips that are not there are left out of the list and reported as ``missing``:
    Kinetics videos disappear from YouTube, so every copy lacks some. Without ``root``
    nothing is checked and the ``<label>/`` layout is written. ``classes`` fixes the label
    set (use the train CSV's ``classes.txt`` for val/test); ``classes_out`` writes the
    sorted label names. ``relative_to`` (a folder above ``root``) writes the paths relative
    to it, so that lists of splits stored in sibling folders share one root.
    Malformed rows or unknown labels raise :class:`AnnotationError`.
    """
    csv_file = Path(csv_file)
    inputs = [csv_file] + ([classes] if isinstance(classes, (str, os.PathLike)) else [])
    clash = clobber_error([("out_list", out_list), ("classes_out", classes_out)], inputs)
    if clash:  # annotations that cannot be downloaded again
        raise ValueError(clash)
    result = read_annotations(
        csv_file, root if root is not None else csv_file.parent, classes, check_files=root is not None
    )
    fatal = [p for p in result.problems if p.kind != MISSING]
    if fatal:
        raise AnnotationError(fatal)
    if root is not None and not result.samples and result.problems:  # a wrong --root, or a layout not known
        raise ValueError(f"{csv_file}: none of its {len(result.problems)} clips is under {root} (looked for "
                         "<label>/<youtube_id>_<start>_<end>.mp4, with spaces or underscores in the label "
                         "folder, and flat in the folder); give the folder of this split's videos; nothing written")
    if relative_to is not None:
        base = os.path.abspath(relative_to)
        rebased = []
        for s in result.samples:
            if os.path.commonpath([base, str(s.path)]) != base:
                raise ValueError(f"{s.path} is not inside relative_to={relative_to}")
            rebased.append(VideoSample(s.path, Path(os.path.relpath(s.path, base)).as_posix(), s.label, s.label_name))
        result = VideoList(rebased, result.classes, result.problems)
    if classes_out is not None:
        write_classes(classes_out, result.classes)
    write_list(out_list, result.samples)
    return result


def check_lists(list_files: Iterable[PathLike], root: PathLike) -> list[AnnotationProblem]:
    """Read converted lists against the videos in ``root``; every problem found (e.g. ``missing``).

    A ``classes.txt`` among ``list_files`` (or next to them) fixes the classes; it is not
    itself read as a list.
    """
    problems: list[AnnotationProblem] = []
    for file in map(Path, list_files):
        if file.name == "classes.txt":
            continue
        classes_file = file.parent / "classes.txt"
        classes = classes_file if classes_file.exists() else None
        problems += read_annotations(file, root, classes).problems
    return problems


def summarize_problems(problems: Sequence[AnnotationProblem | str], limit: int = 10) -> str:
    """Counts per kind, then the first ``limit`` problems, one per line (problems given as
    text, as a metrics file keeps them, have no kind to count)."""
    counts: dict[str, int] = defaultdict(int)
    for p in problems:
        if isinstance(p, AnnotationProblem):
            counts[p.kind] += 1
    lines = [", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))] if counts else []
    lines += [f"  {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)


def warn_shared_videos(sets: Sequence[tuple[str, PathLike | None, Sequence[VideoSample]]]) -> None:
    """Warn for each two of ``(role, source, samples)`` that list the same video file: a
    validation or test accuracy over videos the model was trained on (or chosen on)
    measures nothing. The same file is the same absolute path."""
    import itertools

    paths = [(role, source, {os.path.normpath(os.path.abspath(s.path)) for s in samples})
             for role, source, samples in sets if samples]
    for (role_a, source_a, a), (role_b, source_b, b) in itertools.combinations(paths, 2):
        shared = sorted(a & b)
        if shared:
            warnings.warn(f"{len(shared)} of the {len(b)} {role_b} videos ({source_b}) are also {role_a} videos "
                          f"({source_a}), e.g. {shared[0]}: {role_b} accuracy counts them", VideoactWarning,
                          stacklevel=2)


def none_found_hint(data: PathLike, root: PathLike | None, problems: Sequence[AnnotationProblem],
                    option: str = "--root") -> str:
    """Where every entry of a list is missing, the likely reason, to end the error with:
    its paths start from another folder than the one they were looked for under (the
    list's own, without ``root``). ``""`` otherwise."""
    if not problems or not all(getattr(p, "kind", None) == MISSING for p in problems):
        return ""
    base = root or os.path.dirname(os.path.abspath(data))
    none = "its one video is not there" if len(problems) == 1 else f"none of its {len(problems)} videos is there"
    return f": {none}, looked for under {base}; {option} names the folder the list's paths start from"


def warn_problems(source: PathLike, problems: Sequence[AnnotationProblem | str], limit: int = 10) -> None:
    """A list's problems as warnings (``warnings.warn``; the ``videoact`` command prints
    them as ``videoact CMD: warning: ...`` lines): each one, or past ``limit`` the counts
    and the first ``limit`` (a UCF101 list given without --root has 9,537 missing entries)."""
    if len(problems) <= limit:
        for p in problems:
            warnings.warn(str(p), VideoactWarning, stacklevel=2)
    else:
        # The counts per kind follow on the same line; problems given as text have none.
        counted = any(isinstance(p, AnnotationProblem) for p in problems)
        warnings.warn(f"{source}: {len(problems)} entries left out:{' ' if counted else chr(10)}"
                      f"{summarize_problems(problems, limit)}", VideoactWarning, stacklevel=2)
