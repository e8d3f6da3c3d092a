"""``vseimageencoder encode PATH...``: image files in, a .npy of embeddings and its file list out.

Uses the tower directly, without jina: no pods, no network.
"""
import os
import struct
import tempfile
from pathlib import Path
from typing import List, Optional

import numpy as np

from .common import (EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_SKIPPED, Progress, logger,
                     progress_enabled, progress_flags)


def _names_path(out: Path) -> Path:
    """The list of source files written beside ``out``: ``emb.npy`` -> ``emb.files.txt``
    (where ``search`` looks for it)."""
    from ..search import files_path
    return files_path(out)


def _npy_header(rows: int, cols: int, size: int = 128) -> bytes:
    """A .npy v1.0 header of exactly ``size`` bytes for float32 ``(rows, cols)``.

    The format allows any space padding, so a fixed size lets the row count be written
    last, over a placeholder, once it is known.
    """
    text = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, cols)
    pad = size - 10 - len(text) - 1
    if pad < 0:
        raise ValueError('shape too large for the header')
    return b'\x93NUMPY\x01\x00' + struct.pack('<H', size - 10) + (text + ' ' * pad + '\n').encode('latin1')


def encode_files(paths: List[Path], model_path: str, out: Path, batch_size: int = 32,
                 progress: bool = False, device: str = 'cpu', precision: str = 'fp32',
                 resize: Optional[str] = None, readers: Optional[int] = None) -> int:
    """Embed image files into ``out`` (float32 .npy, one row per readable image, in order)
    and ``<out stem>.files.txt`` (the file of each row). Returns the number skipped.

    Loads the tower from ``model_path`` (as :class:`~vseimageencoder.encoders.ImageEncoder`
    does for every front end), then :func:`write_embeddings`.
    """
    from ..encoders import ImageEncoder

    resize, readers = _reading_options(resize, readers)  # bad values fail before the load
    core = ImageEncoder(model_path, precision=precision, device=device, resize=resize)
    if core.options.precomputed:
        raise ValueError('%s is a precomputed-feature model (%s); encoding image files needs a '
                         'model with a CNN backbone' % (core.checkpoint_path, core.options.data_name))
    return write_embeddings(core.model, core.embed_size, paths, out, batch_size, progress, resize, readers)


def _reading_options(resize: Optional[str], readers: Optional[int]):
    from ..preprocess import DEFAULT_RESIZE, check_resize
    from ..reader import default_readers

    resize = check_resize(resize or DEFAULT_RESIZE)
    readers = default_readers() if readers is None else readers
    if readers < 0:
        raise ValueError('readers must be 0 (read on the main thread) or more, got %d' % readers)
    return resize, readers


def write_embeddings(model, embed_size: int, paths: List[Path], out: Path, batch_size: int = 32,
                     progress: bool = False, resize: Optional[str] = None,
                     readers: Optional[int] = None) -> int:
    """Embed image files with a prepared tower (a callable: float32 ``(B, 3, 224, 224)``
    tensor -> ``(B, embed_size)`` tensor) into ``out`` and ``<out stem>.files.txt``.
    Returns the number of files skipped as unreadable (each named in a warning).

    ``readers`` threads (None: :func:`~vseimageencoder.reader.default_readers`; 0: read on
    this thread, nothing ahead) decode and transform (``resize``: ``'fast'`` or ``'exact'``,
    None for the default) up to ``batch_size + readers`` images ahead of the tower.
    Memory is bounded by ``batch_size``: rows are streamed to a temporary file beside
    ``out``, renamed into place only when every image was tried. On any abort nothing is
    left at ``out``.
    """
    import functools

    import torch

    from ..preprocess import CHANNELS, CROP, ImageReadError, transform
    from ..reader import read_in_order
    from ..weights import publish_mode

    resize, readers = _reading_options(resize, readers)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    names_out = _names_path(out)
    fd_rows, tmp_rows = tempfile.mkstemp(prefix='.' + out.name + '.', suffix='.part', dir=str(out.parent))
    fd_names, tmp_names = tempfile.mkstemp(prefix='.' + names_out.name + '.', suffix='.part',
                                           dir=str(out.parent))
    bar = Progress(len(paths), progress)
    done = skipped = 0
    try:
        with os.fdopen(fd_rows, 'wb') as rows_f, os.fdopen(fd_names, 'w', encoding='utf-8') as names_f:
            rows_f.write(_npy_header(0, embed_size))
            batch = np.empty((batch_size, CHANNELS, CROP, CROP), np.float32)
            batch_names: List[str] = []

            def flush():
                nonlocal done
                if not batch_names:
                    return
                emb = model(torch.from_numpy(batch[:len(batch_names)]))
                rows_f.write(np.ascontiguousarray(emb.numpy(), '<f4').tobytes())
                names_f.write(''.join(n + '\n' for n in batch_names))
                done += len(batch_names)
                batch_names.clear()

            load = functools.partial(transform, resize=resize)
            with read_in_order(paths, load, readers, batch_size + readers, (ImageReadError,)) as images:
                for p, x in images:
                    if isinstance(x, ImageReadError):
                        skipped += 1
                        logger.warning('skipped: %s', x)
                    else:
                        batch[len(batch_names)] = x
                        batch_names.append(str(p))
                        if len(batch_names) == batch_size:
                            flush()
                    bar.update(done, skipped)
            flush()
            rows_f.seek(0)
            rows_f.write(_npy_header(done, embed_size))
            rows_f.flush()
            os.fsync(rows_f.fileno())
            names_f.flush()
            os.fsync(names_f.fileno())
        bar.close(done, skipped)
        for t in (tmp_names, tmp_rows):  # mkstemp's 0600 is for the partial file only
            publish_mode(t)
        os.replace(tmp_names, str(names_out))
        os.replace(tmp_rows, str(out))
    except BaseException:
        for t in (tmp_rows, tmp_names):
            if os.path.exists(t):
                os.unlink(t)
        raise
    logger.info('wrote %d embeddings (%d-d) to %s and their files to %s; %d skipped',
                done, embed_size, out, names_out, skipped)
    return skipped


def add_parser(sub):
    e = sub.add_parser('encode', help='embed image files into a .npy file',
                       description='Embed image files (and the image files inside folders, '
                                   'recursively, sorted) into OUT, one L2-normalised float32 row per '
                                   'readable image, in input order; OUT with .npy replaced by '
                                   '.files.txt lists the file of each row. Unreadable images are '
                                   'named on stderr and skipped (exit status 1).')
    e.add_argument('paths', nargs='+', metavar='PATH', help='image files or folders')
    e.add_argument('--model-path', default='pretrained',
                   help='VSE++ checkpoint, or folder holding model_best.pth.tar (default: pretrained)')
    e.add_argument('--batch-size', type=int, default=32, help='images per forward pass (default: 32)')
    e.add_argument('-o', '--output', default='embeddings.npy', help='output .npy (default: embeddings.npy)')
    e.add_argument('--device', default='cpu', help="torch device, e.g. 'cuda:0' (default: cpu)")
    e.add_argument('--precision', default='fp32', choices=('fp32', 'bf16', 'fp16', 'auto'),
                   help='backbone precision; auto: fp16 on CUDA, bf16 on CPUs with bf16 '
                        'hardware, else fp32 (default: fp32, faithful)')
    from ..preprocess import DEFAULT_RESIZE, RESIZE_MODES
    from ..reader import default_readers
    e.add_argument('--resize', default=DEFAULT_RESIZE, choices=RESIZE_MODES,
                   help='fast: decode JPEGs at 1/2 to 1/8 scale and resize only the crop (embeddings '
                        'within cosine 0.999 of exact, measured); exact: the faithful transform, full '
                        'decode then resize (default: %s)' % DEFAULT_RESIZE)
    e.add_argument('--readers', type=int, default=None, metavar='N',
                   help='threads reading and transforming images ahead of the model; 0 reads on '
                        'the main thread (default: half the CPU cores, 1 to 8; %d here)'
                        % default_readers())
    progress_flags(e)


def run(args) -> int:
    progress = progress_enabled(args)
    from ..checkpoint import CheckpointError

    if args.batch_size < 1:
        logger.error('--batch-size must be at least 1, got %d', args.batch_size)
        return EXIT_ERROR
    if args.readers is not None and args.readers < 0:
        logger.error('--readers must be 0 (read on the main thread) or more, got %d', args.readers)
        return EXIT_ERROR
    try:
        from ..preprocess import expand_paths
        paths = list(expand_paths(args.paths))
        if not paths:
            logger.error('no image files found in %s', ', '.join(args.paths))
            return EXIT_ERROR
        skipped = encode_files(paths, args.model_path, Path(args.output), args.batch_size,
                               progress, args.device, args.precision, args.resize, args.readers)
    except KeyboardInterrupt:
        logger.error('interrupted; nothing written to %s', args.output)
        return EXIT_INTERRUPTED
    except (CheckpointError, FileNotFoundError, ValueError, OSError) as e:
        logger.error('%s; nothing written to %s', e, args.output)
        return EXIT_ERROR
    if skipped:
        logger.error('%d image(s) could not be read and were skipped', skipped)
        return EXIT_SKIPPED
    return EXIT_OK
