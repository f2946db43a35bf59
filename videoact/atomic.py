"""Write-then-rename, so a file that a later run trusts is never half-written.

A crash (even ``kill -9``) leaves either the old file or the new one, plus at most a
``*.tmp-<pid>-<n>`` file next to it that no reader looks at.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from .notices import VideoactWarning

_counter = itertools.count()

NAME_MAX = 255  # bytes in one file name (ext4, XFS, Btrfs, APFS): longer names fail with ENAMETOOLONG
# Room for the name inside a temporary's name ".<name>.tmp-<pid>-<n>" (pid and n up to 20 digits).
_TEMPORARY_ROOM = NAME_MAX - len("..tmp--") - 2 * 20


def fit_name(name: str, limit: int = NAME_MAX) -> str:
    """``name`` when it takes at most ``limit`` bytes on disk, else its start plus ``~`` and
    12 hex digits of a hash of the whole name, ``limit`` bytes at most.

    Why: outputs are named after inputs plus a suffix (``clip.mp4.safetensors``, the
    temporaries beside them), so an input name close to the file system's limit (80 CJK
    characters are 240 bytes) had outputs that could not be created. The same name always
    gives the same result, and distinct long names stay distinct."""
    raw = os.fsencode(name)
    if len(raw) <= limit:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:12]
    cut = raw[:max(0, limit - len(digest) - 1)]
    # End on a character boundary: drop a UTF-8 character that the cut split.
    start = len(cut)
    while start > 0 and len(cut) - start < 3 and cut[start - 1] & 0xC0 == 0x80:
        start -= 1
    if start > 0 and cut[start - 1] >= 0xC0:
        lead = cut[start - 1]
        if len(cut) - (start - 1) < (2 if lead < 0xE0 else 3 if lead < 0xF0 else 4):
            cut = cut[:start - 1]
    return os.fsdecode(cut) + "~" + digest


def temporary_prefix(path: str | os.PathLike, suffix: str = "") -> str:
    """The start of the names of ``path``'s temporaries: ``.<name>.tmp-``, the name shortened
    by ``fit_name`` when the whole would not fit (``suffix``: what follows the counter)."""
    room = _TEMPORARY_ROOM - len(os.fsencode(suffix))
    return f".{fit_name(Path(path).name, room)}.tmp-"


def temporary_path(path: str | os.PathLike) -> Path:
    """A unique sibling path for ``path`` (same directory, so rename is atomic)."""
    path = Path(path)
    return path.with_name(f"{temporary_prefix(path)}{os.getpid()}-{next(_counter)}")


def is_temporary(path: str | os.PathLike) -> bool:
    name = Path(path).name
    return name.startswith(".") and ".tmp-" in name


def temporary_writer(path: str | os.PathLike) -> int | None:
    """The pid of the process that made the temporary ``path`` (``.<name>.tmp-<pid>-<n>``,
    as :func:`temporary_path` names them), or None when the name holds none."""
    try:
        return int(Path(path).name.rsplit(".tmp-", 1)[1].split("-")[0])
    except (IndexError, ValueError):
        return None


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file for writing; on success fsync it and rename it onto ``path``.

    On any exception the temporary file is removed and ``path`` is untouched. An OSError
    of the writing itself (a full disk: ``write``, ``flush`` and ``fsync`` name no file) is
    raised again naming ``path``, so the message says which file could not be written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        # Text is UTF-8 whatever the locale (every reader here reads UTF-8), written as given
        # (newline=""): CSV rows keep their own line ends, lists their "\n" on every system.
        # surrogateescape: a file name that is not valid UTF-8 (Python reads it with
        # surrogates) is written as its own bytes, not a UnicodeEncodeError.
        text = "b" not in mode
        with open(tmp, mode, encoding="utf-8" if text else None, newline="" if text else None,
                  errors="surrogateescape" if text else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None and exc.strerror:
            exc.filename = str(path)  # the same exception (its class kept): str(exc) now ends with the path
        raise


def error_text(exc: BaseException) -> str:
    """``exc`` for a message that names its file already: ``[Errno 28] No space left on
    device``, without the path an OSError's text ends with."""
    if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:
        return f"[Errno {exc.errno}] {exc.strerror}"
    return str(exc)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_write(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def atomic_save_torch(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through a temporary file."""
    import torch

    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` (the writer named in a temporary's name) still runs here.

    A killed process that nobody has reaped yet is a zombie: ``os.kill(pid, 0)`` still
    succeeds on it, and in a container whose first process does not reap, it stays one,
    so its temporaries were kept for ever. On Linux its state in ``/proc`` says so."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    except (OverflowError, ValueError):
        return False  # not a pid at all
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rpartition(b")")[2].split()[0]  # after "(name)", which may hold spaces
    except (OSError, IndexError):
        return True  # no /proc (macOS, Windows): as os.kill says
    return state not in (b"Z", b"X")


class InUseError(RuntimeError):
    """Another process holds the lock of a folder a run would write into."""


# Descriptors of the locks this process holds. A forked child (a DataLoader worker) gets
# copies, and a flock lasts until every copy is closed: the child closes its copies, so
# the lock ends with its holder's ``with`` block, not with the last worker.
_LOCK_FDS: set[int] = set()


def _close_inherited_locks() -> None:
    for fd in list(_LOCK_FDS):
        with contextlib.suppress(OSError):
            os.close(fd)  # a close, not an unlock: the parent's lock stays
    _LOCK_FDS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, what: str, *, wait: bool = False) -> Iterator[bool]:
    """Hold an exclusive lock on the file ``path`` (created if missing; the holder's pid is
    written in it) or on the folder ``path`` (nothing written) for the ``with`` block, or
    raise :class:`InUseError` at once naming ``what`` and the holder's pid (``wait=True``:
    wait for the holder instead).

    Why: two runs writing one work directory (a job started twice, a sweep that forgot to
    change it) each wrote whole files, and the last writer of each won, so config.yaml,
    metrics.jsonl, best.pt and last.pt came from different runs. ``flock``: released by
    the system when the holder exits, however it ends; where there is no ``fcntl``
    (Windows), or where the file system refuses locks (some network file systems), nothing
    is locked. Yields whether the lock is held."""
    try:
        import fcntl
    except ImportError:
        yield False
        return
    folder = os.path.isdir(path)
    fd = os.open(path, os.O_RDONLY if folder else os.O_RDWR | os.O_CREAT, 0o644)
    _LOCK_FDS.add(fd)
    locked = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = "" if folder else os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            raise InUseError(f"{what} is in use by another run{f' (pid {holder})' if holder.isdigit() else ''}: "
                             "wait for it to end, or use another folder") from None
        except OSError as exc:  # e.g. NFS without lock support (ENOLCK, EBADF), Lustre without flock (ENOSYS)
            import warnings

            warnings.warn(f"{what}: cannot be locked here ({exc.strerror or exc}); going on without a lock",
                          VideoactWarning)
        else:
            locked = True
            if not folder:
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield locked
    finally:
        _LOCK_FDS.discard(fd)
        os.close(fd)


def update_failure_log(path: str | os.PathLike, key: str, failures: Sequence[dict[str, Any]],
                       handled: Iterable[str], *, optional: bool = False) -> None:
    """Rewrite the JSON-lines failure log ``path`` after a run: entries of the videos it
    ``handled`` (by their ``key`` field) are replaced by its ``failures``, the others kept;
    no entries left, no file. Why: a second run into the same folder (the test list after
    the training list, or two at once) removed the first one's record of its failures.

    Unchanged entries are not written again. ``optional``: the run wrote nothing (all its
    outputs were current, the folder may be read-only): a log that cannot be rewritten then
    is a warning, not an error."""
    import json

    path = Path(path)
    # The same video may be named relative to one run's folder and absolutely by another.
    handled = {os.path.abspath(v) for v in (*handled, *(f[key] for f in failures))}
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(path.parent, str(path), wait=True):  # read, then write; the folder: no lock file left
        kept, before = [], []
        with contextlib.suppress(FileNotFoundError):
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line of something else: not ours to keep
                before.append(entry)
                if isinstance(entry, dict) and os.path.abspath(str(entry.get(key, ""))) not in handled:
                    kept.append(entry)
        entries = kept + list(failures)
        if entries == before and (entries or not path.exists()):
            return  # nothing changed: nothing written (the folder may be read-only, its outputs current)
        try:
            if entries:
                atomic_write_text(path, "".join(json.dumps(e) + "\n" for e in entries))
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        except OSError as exc:
            if not optional:
                raise
            import warnings

            warnings.warn(f"{path}: cannot be brought up to date ({exc.strerror or exc}); it may still list "
                          "videos that are fine now", VideoactWarning, stacklevel=2)


def not_a_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path, refused when a file is there where the output folder for
    ``what`` goes (checked without writing anything: before a run's slow start)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path}: a file, not a folder for {what}")
    return path


def writable_folder(path: str | os.PathLike, what: str) -> Path:
    """Make the output folder ``path`` (parents too) and check that files can be created in
    it, before any work: a file there, or a folder without write permission, otherwise
    surfaced as a traceback about an internal temporary late in the run. ``what`` names the
    folder's use in the message ("the features (OUT)")."""
    import tempfile

    path = not_a_file(path, what)
    if path.is_symlink() and not path.exists():
        raise NotADirectoryError(f"{path}: a broken symbolic link (to {os.readlink(path)}), not a folder for {what}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except FileExistsError:  # a file where a parent folder should be
        raise NotADirectoryError(f"{path}: cannot be made: a file is in its place (a parent folder)") from None
    except OSError as e:
        raise PermissionError(f"{path}: cannot write {what} there ({e.strerror or e})") from None
    return path


def remove_dead_temporaries(folder: str | os.PathLike, prefix: str | tuple[str, ...] = ".", *,
                            own: bool = False) -> int:
    """Delete what killed runs left in ``folder`` (not below it): temporaries (files or
    folders named as :func:`temporary_path` names them) starting with ``prefix`` (e.g.
    ``temporary_prefix(path)``: those of one output; a tuple: of several) whose writer
    process is gone. Another live process's are kept; this process's only with ``own`` (a
    writer that does not run in threads: a pid reused from a killed run's, as in
    containers). Returns how many."""
    import shutil

    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    removed = 0
    for name in names:
        if not name.startswith(prefix) or not is_temporary(name):
            continue
        pid = temporary_writer(name)
        if pid is None or (pid_alive(pid) and not (own and pid == os.getpid())):
            continue
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:  # gone already, or a folder we may not write (best effort)
                continue
        removed += 1
    return removed


# ------------------------------------------------------------------ outputs vs inputs


def _identity(path: str | os.PathLike) -> tuple:
    """What makes two names the same file: (device, inode) when it exists (hard links,
    symlinks), else the resolved path. ``dir/missing/../clip.mp4`` is ``dir/clip.mp4``
    once written (the missing folder is made first), so it is resolved before ``stat``."""
    try:
        resolved = str(Path(path).resolve())
    except (OSError, RuntimeError, ValueError):  # a symlink loop, ...
        resolved = os.path.abspath(path)
    for name in (path, resolved):
        try:
            st = os.stat(name)
            return ("inode", st.st_dev, st.st_ino)
        except (OSError, ValueError):
            pass
    return ("path", resolved)


def clobber_error(outputs: Sequence[tuple[str, str | os.PathLike | None]],
                  inputs: Iterable[str | os.PathLike]) -> str | None:
    """A usage error when an output (``(option, path)``; ``None`` paths are skipped)
    is one of ``inputs``, or two outputs are the same file; else None.

    Writing the output would replace that input (a video, the checkpoint, a list file)
    with a JSON file or an annotated copy: refused before any work."""
    given = [(option, path) for option, path in outputs if path is not None]
    if not given:
        return None
    wanted = {}
    for option, path in given:
        key = _identity(path)
        if key in wanted:
            return f"{wanted[key][0]} and {option} are the same file ({path}): give two different files"
        wanted[key] = (option, path)
    for source in inputs:
        hit = wanted.get(_identity(source))
        if hit is not None:
            option, path = hit
            return (f"{option} {path} is the input {source}: writing it would replace that file; "
                    "give another output file")
    for option, path in given:
        if os.path.isdir(path):
            return f"{option} {path} is a directory: give a file name"
    return None
