"""The command line, ``vseimageencoder COMMAND``: one module per command (``add_parser`` and
``run``), wired here; commands import what they need when they run.
"""
import argparse
import importlib
import logging
import sys
from typing import List, Optional

from vseimageencoder.cli.common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_SKIPPED  # noqa: F401
from vseimageencoder.cli.encode import encode_files, write_embeddings  # noqa: F401  (the Python entry points)

#: Command name -> module in this package, in the order ``--help`` lists them.
COMMANDS = {
    'encode': 'encode',
    'download': 'download',
    'search': 'search',
    'index': 'index',
    'evaluate': 'evaluate',
    'train': 'train',
    'serve': 'serve',
}


def _parser() -> argparse.ArgumentParser:
    from vseimageencoder._version import __version__

    p = argparse.ArgumentParser(prog='vseimageencoder', description='VSE++ image and caption embeddings.')
    p.add_argument('--version', action='version', version='%(prog)s ' + __version__)
    sub = p.add_subparsers(dest='command')
    sub.required = True
    for name, module in COMMANDS.items():
        importlib.import_module('.' + module, __name__).add_parser(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s', stream=sys.stderr)
    logging.getLogger('vseimageencoder.release.checkpoint').setLevel(logging.WARNING)
    status = importlib.import_module('.' + COMMANDS[args.command], __name__).run(args)
    if status == EXIT_INTERRUPTED and argv is None and args.command in _EXIT_AT_ONCE:
        _exit_now(status)
    return status


#: Commands that start no processes of their own (only threads), so an interrupted run
#: loses nothing by skipping interpreter teardown (multiprocessing's atexit clean-up).
_EXIT_AT_ONCE = ('encode', 'index', 'download')


def _exit_now(status: int) -> None:
    """End an interrupted command-line run at once. The command has already cleaned up;
    finalising torch and jina's modules takes seconds, and a reader thread left blocked in
    I/O must not meet interpreter teardown (Ctrl-C is to end the run within a second)."""
    import os

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)
