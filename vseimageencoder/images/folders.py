"""The one folder walk: the image files a list of paths names, in a stable order."""
import os
from pathlib import Path
from typing import Iterable, Iterator, Optional, Tuple, Union

from vseimageencoder.images.formats import IMAGE_SUFFIXES

PathLike = Union[str, os.PathLike]


def walk(paths: Iterable[PathLike]) -> Iterator[Tuple[str, Optional[str]]]:
    """``(given, file)`` pairs, in the order of ``paths``.

    A folder gives one pair per file under it (recursively) whose suffix is in
    :data:`~.formats.IMAGE_SUFFIXES`, sorted by path components (a folder's files stay
    together); any other path that exists as a directory entry (a file, a FIFO, a link even
    when dangling) gives ``(given, given)``; a path that does not exist gives ``(given, None)``.
    ``given`` and ``file`` are ``str`` in the form given (relative stays relative). Nothing is
    opened; entries that are not regular files are for the caller to refuse.
    """
    for given in paths:
        given = os.fspath(given)
        if os.path.isdir(given):
            found = []
            for root, dirs, names in os.walk(given):
                dirs.sort()
                found.extend(os.path.join(root, n) for n in names if os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES)
            for f in sorted(found, key=lambda f: Path(f).parts):
                yield given, f
        elif os.path.lexists(given):
            yield given, given
        else:
            yield given, None


def expand_paths(paths: Iterable[PathLike]) -> Iterator[Path]:
    """The image files :func:`walk` finds, as ``Path`` objects; a path that does not exist
    (a dangling link included) raises ``FileNotFoundError`` naming it."""
    for given, f in walk(paths):
        if f is None or (f == given and not os.path.exists(f)):
            raise FileNotFoundError('no such image file or folder: %s' % given)
        yield Path(f)
