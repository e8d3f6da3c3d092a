"""Opening only regular files, so that a FIFO or device named like an image, checkpoint or
vocabulary cannot block or flood its reader (no jina, no torch).
"""
import os
import stat

_KINDS = ((stat.S_ISFIFO, 'a FIFO (named pipe)'), (stat.S_ISCHR, 'a character device'),
          (stat.S_ISBLK, 'a block device'), (stat.S_ISSOCK, 'a socket'),
          (stat.S_ISDIR, 'a directory'))


class NotARegularFileError(OSError):
    """The path names a FIFO, device, socket or directory, not a regular file."""


def kind_of(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return 'not a regular file'


def open_regular(path, max_bytes=None):
    """Open ``path`` for binary reading if it is a regular file; never blocks on the open.

    A FIFO blocks whoever opens it until a writer appears, a device such as ``/dev/zero``
    never ends, and opening some devices has side effects. So the path is looked at first,
    opened with ``O_NONBLOCK`` (which returns at once for a FIFO with no writer), and the
    opened descriptor is checked again, catching a file swapped in between look and open.

    Raises :class:`NotARegularFileError` naming the path and what it is instead,
    ``FileNotFoundError``/``OSError`` as ``open`` would, and, with ``max_bytes``,
    :class:`FileTooLargeError` for a larger file. Returns a buffered binary file.
    """
    path = os.fspath(path)
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotARegularFileError('%s is %s, not a regular file' % (path, kind_of(st.st_mode)))
    flags = os.O_RDONLY | getattr(os, 'O_NONBLOCK', 0) | getattr(os, 'O_NOCTTY', 0) \
        | getattr(os, 'O_CLOEXEC', 0) | getattr(os, 'O_BINARY', 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotARegularFileError('%s is %s, not a regular file' % (path, kind_of(st.st_mode)))
        if max_bytes is not None and st.st_size > max_bytes:
            raise FileTooLargeError('%s is %d bytes, over the limit of %d' % (path, st.st_size, max_bytes))
        if hasattr(os, 'set_blocking'):
            os.set_blocking(fd, True)  # no effect on regular files; plain semantics for readers
        return os.fdopen(fd, 'rb')
    except BaseException:
        os.close(fd)
        raise


class FileTooLargeError(OSError):
    """A regular file larger than the reader allows."""
