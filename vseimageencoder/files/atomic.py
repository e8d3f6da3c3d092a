"""Files that appear whole or not at all: written beside their place, then renamed into it."""
import os
import tempfile
from pathlib import Path
from typing import Callable, Union


def write_atomically(path: Union[str, os.PathLike], write: Callable[[str], None],
                     mode: int = 0o644) -> Path:
    """Call ``write(tmp)`` with the name of a new, empty temporary file in ``path``'s folder
    (created if missing), flush it to disk, give it ``mode`` and rename it over ``path``.

    Readers see the old file or the whole new one, never a part. On any failure, Ctrl-C
    included, the temporary file is removed, ``path`` is untouched and the exception goes on.
    Returns ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + path.name + '.', suffix='.part', dir=str(path.parent))
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, 'rb') as f:  # a rename can reach the disk before the data it names
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp's 0600 is for the partial file only
        os.replace(tmp, str(path))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
