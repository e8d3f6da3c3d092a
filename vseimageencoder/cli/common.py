"""What every command shares at run time: exit statuses, the logger, the progress line and
the checks of the reading options (the options themselves: :mod:`.options`)."""
import logging
import sys
import time

logger = logging.getLogger('vseimageencoder')

EXIT_OK, EXIT_SKIPPED, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


def progress_enabled(args) -> bool:
    """Whether to show progress: ``--progress`` / ``--no-progress``, else when stderr is a terminal."""
    return sys.stderr.isatty() if args.progress is None else args.progress


class Progress:
    """A one-line progress bar on stderr, redrawn at most 5 times a second."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled = total, enabled
        self.done = self.skipped = 0
        self.start = self._last = time.monotonic()

    def update(self, done: int, skipped: int, force: bool = False):
        self.done, self.skipped = done, skipped
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < 0.2):
            return
        self._last = now
        frac = (done + skipped) / self.total if self.total else 1.0
        bar = '#' * int(frac * 30)
        rate = done / max(now - self.start, 1e-9)
        sys.stderr.write('\r[%-30s] %d/%d images, %d skipped, %.1f img/s'
                         % (bar, done + skipped, self.total, skipped, rate))
        sys.stderr.flush()

    def close(self, done: int, skipped: int):
        if self.enabled:
            self.update(done, skipped, force=True)
            sys.stderr.write('\n')


def bad_reading_args(args) -> bool:
    """Log and return True when ``--batch-size`` or ``--readers`` (commands that read images)
    is out of range, so the command exits 2 before anything is loaded."""
    if args.batch_size < 1:
        logger.error('--batch-size must be at least 1, got %d', args.batch_size)
        return True
    if getattr(args, 'readers', None) is not None and args.readers < 0:
        logger.error('--readers must be 0 (read on the main thread) or more, got %d', args.readers)
        return True
    return False
