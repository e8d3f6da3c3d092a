"""Files that appear whole or not at all: written to a temporary file beside their place,
flushed to disk, then renamed into it. The one implementation every writer uses."""
import os
import tempfile
from pathlib import Path
from typing import Callable, Optional, Union

PathLike = Union[str, os.PathLike]


def publish_mode(path: PathLike) -> None:
    """Give a temporary file (``mkstemp`` makes it 0600) the mode a new file would get under
    the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(str(path), 0o666 & ~umask)


def fsync_file(path: PathLike) -> None:
    """Flush a written file's data to disk."""
    with open(str(path), 'rb') as f:
        os.fsync(f.fileno())


def fsync_dir(path: PathLike) -> None:
    """Flush a folder's entries (a rename into it) to disk; filesystems that cannot are
    left as they are."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_beside(path: PathLike) -> str:
    """The name of a new, empty temporary file in ``path``'s folder (created if missing),
    named ``.<name>.<random>.part`` so that it is hidden and recognisable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + path.name + '.', suffix='.part', dir=str(path.parent))
    os.close(fd)
    return tmp


def commit(tmp: PathLike, path: PathLike, mode: Optional[int] = None, sync_dir: bool = False) -> None:
    """Flush ``tmp`` to disk, give it ``mode`` (None: :func:`publish_mode`) and rename it over
    ``path``; with ``sync_dir`` also flush the folder, so the rename itself survives a crash."""
    fsync_file(tmp)  # a rename can reach the disk before the data it names
    if mode is None:
        publish_mode(tmp)
    else:
        os.chmod(str(tmp), mode)
    os.replace(str(tmp), str(path))
    if sync_dir:
        fsync_dir(Path(path).parent)


def discard(tmp: PathLike) -> None:
    """Remove a temporary file if it is still there."""
    try:
        os.unlink(str(tmp))
    except FileNotFoundError:
        pass


def write_atomically(path: PathLike, write: Callable[[str], None], mode: Optional[int] = None,
                     sync_dir: bool = False) -> Path:
    """Call ``write(tmp)`` with the name of a new, empty temporary file beside ``path``, then
    :func:`commit` it over ``path``.

    Readers see the old file or the whole new one, never a part. On any failure, Ctrl-C
    included, the temporary file is removed, ``path`` is untouched and the exception goes on.
    Returns ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    tmp = temp_beside(path)
    try:
        write(tmp)
        commit(tmp, path, mode, sync_dir)
    except BaseException:
        discard(tmp)
        raise
    return path
