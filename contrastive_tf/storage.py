"""Run folders, exports and results on any filesystem TensorFlow reaches: local paths,
and `gs://` (or `ram://`, TensorFlow's in-memory stand-in for it in tests) through
`tf.io.gfile`.

A local path stays a `pathlib.Path`; a remote one stays a string, because `pathlib`
would collapse its `//`. Files are written whole in a local staging file and then moved
into place (see `write_atomically`). A folder has no atomic move on GCS, so
`publish_directory` copies its marker file last: a folder without the marker is incomplete.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterator

import tensorflow as tf

from contrastive_tf.errors import UsageError, reason

# A path on any filesystem: local as a `pathlib.Path`, remote (`scheme://...`) as a string.
Location = pathlib.Path | str


def is_remote(path: str | os.PathLike) -> bool:
    """Whether `path` names a filesystem other than the local one (`gs://`, `ram://`)."""
    return "://" in str(path)


def location(path: str | os.PathLike) -> Location:
    """`path` as this module's functions take it: a remote string unchanged (without a
    trailing slash), a local path as a `pathlib.Path` with `~` expanded."""
    if is_remote(path):
        scheme, rest = str(path).split("://", 1)
        return f"{scheme}://{rest.rstrip('/')}"
    return pathlib.Path(path).expanduser()


def join(base: str | os.PathLike, *names: str) -> Location:
    """`base/name/...`, keeping a remote base's `//`."""
    base = location(base)
    return posixpath.join(base, *names) if isinstance(base, str) else base.joinpath(*names)


def basename(path: str | os.PathLike) -> str:
    return posixpath.basename(str(location(path)))


def parent(path: str | os.PathLike) -> Location:
    """The folder holding `path`; a filesystem's root is its own parent."""
    path = location(path)
    if isinstance(path, pathlib.Path):
        return path.parent
    scheme, rest = path.split("://", 1)
    return f"{scheme}://{posixpath.dirname(rest)}"


@contextlib.contextmanager
def _reaching(path: Location) -> Iterator[None]:
    """Turns a filesystem that cannot be reached (no network, no credentials, an unknown
    scheme) into one UsageError line."""
    try:
        yield
    except tf.errors.OpError as error:
        raise UsageError(
            f"cannot reach {path} ({reason(error)}); check the path, the bucket and your credentials"
        ) from None


def exists(path: str | os.PathLike) -> bool:
    with _reaching(path):
        return tf.io.gfile.exists(str(path))


def isdir(path: str | os.PathLike) -> bool:
    with _reaching(path):
        return tf.io.gfile.isdir(str(path))


def makedirs(path: str | os.PathLike) -> None:
    """Creates the folder `path` and its parents; UsageError when that is not possible."""
    try:
        tf.io.gfile.makedirs(str(path))
    except (tf.errors.OpError, OSError) as error:
        raise UsageError(
            f"cannot create the folder {path} ({reason(error)}); check the path and your access to it"
        ) from None


def check_reachable(path: str | os.PathLike) -> None:
    """UsageError when the filesystem of `path` cannot be reached (no network, no
    credentials, an unknown scheme) or a file stands where a folder of it should be; it
    writes nothing. A bucket that does not exist is refused where the folder is made."""
    path = found = location(path)
    with _reaching(path):
        while not tf.io.gfile.exists(str(found)):
            if str(parent(found)) == str(found):  # the root: an empty in-memory filesystem has none
                return
            found = parent(found)
        if not tf.io.gfile.isdir(str(found)):
            raise UsageError(f"{found} is a file, not a folder; choose another path than {path}")


def glob(pattern: str | os.PathLike) -> list[Location]:
    return [location(match) for match in tf.io.gfile.glob(str(pattern))]


def remove(path: str | os.PathLike) -> None:
    """Deletes the file `path` if it is there."""
    with contextlib.suppress(tf.errors.NotFoundError):
        tf.io.gfile.remove(str(path))


def read_text(path: str | os.PathLike) -> str:
    with tf.io.gfile.GFile(str(path), "r") as file:
        return file.read()


def write_atomically(path: str | os.PathLike, write: Callable[[pathlib.Path], object]) -> None:
    """`write(staged)` to a local file, then moves it to `path` whole. The staged name ends
    as `path` does, which Keras and Matplotlib read the format from."""
    path = location(path)
    if isinstance(path, pathlib.Path):
        staged = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        try:
            write(staged)
            os.replace(staged, path)
        finally:
            staged.unlink(missing_ok=True)
        return
    # Copied beside `path` under a fresh name, then renamed over it: writing over a file
    # appends on ram://, and the rename is atomic where the filesystem has one (on GCS it
    # is a copy of one object, which appears whole).
    beside = join(parent(path), f".tmp-{os.getpid()}-{basename(path)}")
    with tempfile.TemporaryDirectory() as folder:
        staged = pathlib.Path(folder) / basename(path)
        write(staged)
        remove(beside)
        try:
            tf.io.gfile.copy(str(staged), beside)
            tf.io.gfile.rename(beside, path, overwrite=True)
        finally:
            remove(beside)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` whole (see `write_atomically`)."""
    write_atomically(path, lambda staged: staged.write_text(text))


@contextlib.contextmanager
def local_copy(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """The file `path` as a local file, for readers that open only those (h5py): itself
    when local, else a temporary copy."""
    path = location(path)
    if isinstance(path, pathlib.Path):
        yield path
        return
    with tempfile.TemporaryDirectory() as folder:
        copy = pathlib.Path(folder) / basename(path)
        try:
            tf.io.gfile.copy(path, str(copy))
        except tf.errors.OpError as error:
            raise OSError(f"cannot read {path}: {reason(error)}") from None
        yield copy


def remove_tree(path: str | os.PathLike) -> None:
    """Deletes the folder `path` and everything in it, if it is there."""
    path = location(path)
    if isinstance(path, pathlib.Path):
        shutil.rmtree(path, ignore_errors=True)
    elif tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)


def publish_directory(staged: pathlib.Path, target: str | os.PathLike, marker: str) -> None:
    """Moves the local folder `staged` to `target`, replacing what is there.

    Locally by renames only, so readers see the old folder or the new, never half. Elsewhere
    by copies: the old folder's `marker` goes first and the new one's comes last, so a
    folder holding `marker` is complete, and one without it (a crash in between) is not.
    """
    target = location(target)
    if isinstance(target, pathlib.Path):
        if not target.exists():
            os.rename(staged, target)
            return
        retired = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, retired)
        os.rename(staged, target)
        shutil.rmtree(retired, ignore_errors=True)
        return
    remove(join(target, marker))
    remove_tree(target)
    files = sorted((file for file in staged.rglob("*") if file.is_file()), key=lambda file: file.name == marker)
    for file in files:
        destination = join(target, *file.relative_to(staged).parts)
        tf.io.gfile.makedirs(str(parent(destination)))
        tf.io.gfile.copy(str(file), destination, overwrite=True)
