"""``vseimageencoder encode PATH...``: image files in, a .npy of embeddings and its file list out
(the tower directly, without jina).
"""
from pathlib import Path
from typing import List, Optional

from vseimageencoder.cli import options
from vseimageencoder.cli.common import (EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_SKIPPED, Progress,
                                        bad_reading_args, logger, progress_enabled)


def encode_files(paths: List[Path], model_path: str, out: Path, batch_size: int = 32,
                 progress: bool = False, device: str = 'cpu', precision: str = 'fp32',
                 resize: Optional[str] = None, readers: Optional[int] = None,
                 fuse: Optional[bool] = None) -> int:
    """Embed image files into ``out`` (float32 .npy, one row per readable image, in order)
    and ``<out stem>.files.txt`` (the file of each row). Returns the number skipped.

    Loads the tower from ``model_path`` (as :class:`~vseimageencoder.encoders.ImageEncoder`
    does for every front end), then :func:`write_embeddings`; the file list's header records
    the checkpoint's sha256, architecture, resize mode and precision.
    """
    from vseimageencoder.pipeline.embed_files import reading_options
    from vseimageencoder.encoders import ImageEncoder
    from vseimageencoder.index import provenance

    resize, readers = reading_options(resize, readers)  # bad values fail before the load
    core = ImageEncoder(model_path, precision=precision, device=device, resize=resize)
    core.require_backbone('encoding image files')
    prov = provenance.record(core.checkpoint_path, resize, core.precision, core.options)
    prov.pop('checkpoint')  # a path of this machine, of any length: not in the fixed-size header
    return write_embeddings(core.model, core.embed_size, paths, out, batch_size, progress, resize,
                            readers, provenance=prov, fuse=fuse)


def write_embeddings(model, embed_size: int, paths: List[Path], out: Path, batch_size: int = 32,
                     progress: bool = False, resize: Optional[str] = None,
                     readers: Optional[int] = None, provenance: Optional[dict] = None,
                     fuse: Optional[bool] = None) -> int:
    """Embed image files with a prepared tower (a callable: float32 ``(B, 3, 224, 224)``
    tensor -> ``(B, embed_size)`` tensor) into ``out`` and ``<out stem>.files.txt``.
    Returns the number of files skipped as unreadable (each named in a warning, the name
    escaped as in the file list).

    ``readers`` threads (None: one per core, :func:`~vseimageencoder.pipeline.thread_budget.thread_budget`;
    0: read on this thread, nothing ahead) each decode and transform (``resize``: ``'fast'``
    or ``'exact'``, None for the default) a batch and run the tower on it with their share
    of the cores (:func:`~vseimageencoder.pipeline.embed_files.embed_files`, which also decides
    ``fuse``: None fuses a bf16 or fp16 CPU tower for many images).
    Memory is bounded by ``batch_size``: rows are streamed to temporary files beside
    ``out``, renamed into place only when every image was tried. On any abort nothing is
    left at ``out``.
    """
    from vseimageencoder.pipeline.embed_files import embed_files, reading_options
    from vseimageencoder.index import PairWriter, escape

    resize, readers = reading_options(resize, readers)
    paths = list(paths)
    out = Path(out)
    bar = Progress(len(paths), progress)
    writer = PairWriter(out, embed_size, provenance)

    def unreadable(pos, err):
        logger.warning('skipped: %s: %s', escape(paths[pos]), getattr(err, 'reason', err))

    try:
        done, skipped = embed_files(model, paths, lambda rows, pos: writer.write(rows, [paths[i] for i in pos]),
                                    batch_size, resize, readers, unreadable, bar.update, fuse)
        bar.close(done, skipped)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    logger.info('wrote %d embeddings (%d-d) to %s and their files to %s; %d skipped',
                done, embed_size, escape(out), escape(writer.names_out), skipped)
    return skipped


def add_parser(sub):
    e = sub.add_parser('encode', help='embed image files into a .npy file',
                       description='Embed image files (and the image files inside folders, '
                                   'recursively, sorted) into OUT, one L2-normalised float32 row per '
                                   'readable image, in input order; OUT with .npy replaced by '
                                   '.files.txt lists the file of each row. Unreadable images are '
                                   'named on stderr and skipped (exit status 1).')
    e.add_argument('paths', nargs='+', metavar='PATH', help='image files or folders')
    options.add_model_path(e)
    options.add_batch_size(e, 32)
    e.add_argument('-o', '--output', default='embeddings.npy', help='output .npy (default: embeddings.npy)')
    options.add_device(e)
    options.add_precision(e, 'backbone precision')
    options.add_resize(e)
    options.add_readers(e)
    options.add_fuse(e)
    options.add_progress(e)


def run(args) -> int:
    progress = progress_enabled(args)
    from vseimageencoder.release.locate import CheckpointError

    if bad_reading_args(args):
        return EXIT_ERROR
    try:
        from vseimageencoder.images.folders import expand_paths
        paths = list(expand_paths(args.paths))
        if not paths:
            logger.error('no image files found in %s', ', '.join(args.paths))
            return EXIT_ERROR
        skipped = encode_files(paths, args.model_path, Path(args.output), args.batch_size,
                               progress, args.device, args.precision, args.resize, args.readers,
                               options.fuse_choice(args))
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
