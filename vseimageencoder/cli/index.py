"""``vseimageencoder index INDEX_DIR PATH...``: create an on-disk index or bring it up to date."""
import json
import sys

from vseimageencoder.cli import options
from vseimageencoder.cli.common import (EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_SKIPPED, Progress,
                                        bad_reading_args, logger, progress_enabled)


def add_parser(sub):
    e = sub.add_parser(
        'index', help='create or update an on-disk index of image files',
        description='Create INDEX_DIR, or bring it up to date with the image files under the PATHs '
                    '(files and folders, recursive): new files are embedded, files whose size or '
                    'modification time changed are embedded again, files indexed under a PATH that '
                    'are gone are removed, unchanged files are not read. Each batch is committed, so '
                    'an interrupted run (even kill -9) keeps what it did and the next one does the '
                    'rest. The last line on stdout is "added A, updated U, removed R, unchanged K, '
                    'unreadable X". Exit 0; 1 when some files were unreadable (named on stderr); 2 '
                    'when nothing could be done; 130 on Ctrl-C.')
    e.add_argument('index_dir', metavar='INDEX_DIR', help='the index folder (created if missing)')
    e.add_argument('paths', nargs='*', metavar='PATH', help='image files or folders')
    e.add_argument('--from', dest='from_npy', metavar='EMB.npy',
                   help='import what `vseimageencoder encode` wrote (EMB.npy and EMB.files.txt) '
                        'instead of embedding PATHs; --model-path names the checkpoint it came from')
    options.add_model_path(e, default=None, default_help='the one the index records, else pretrained')
    options.add_batch_size(e, 32, 'images per forward pass and commit')
    options.add_device(e)
    options.add_precision(e, 'backbone precision', default=None, default_help='what the index records, else fp32')
    options.add_resize(e, recorded=True)
    options.add_readers(e)
    e.add_argument('--rebuild', action='store_true',
                   help='embed every file again (e.g. with another checkpoint); the index starts over')
    e.add_argument('--json', action='store_true', help='print the counts as one JSON object')
    options.add_fuse(e)
    options.add_progress(e)


def run(args) -> int:
    from vseimageencoder.release.locate import CheckpointError
    from vseimageencoder.index import (IndexFileError, IndexFormatError, IndexLockedError, ProvenanceMismatchError,
                         escape, update_index)
    from vseimageencoder.release.vocab import VocabularyError

    if bad_reading_args(args):
        return EXIT_ERROR
    if bool(args.paths) == bool(args.from_npy):
        logger.error('give image files or folders (PATH...) or --from EMB.npy, one of the two')
        return EXIT_ERROR
    if args.from_npy and not args.model_path:
        logger.error('--from needs --model-path: the checkpoint %s was embedded with', args.from_npy)
        return EXIT_ERROR

    unreadable = []

    def report(path, why):
        unreadable.append(path)
        logger.warning('unreadable: %s: %s', escape(path), escape(why))

    bar = None
    if progress_enabled(args):
        def bar_update(done, skipped, total):
            nonlocal bar
            if bar is None:
                bar = Progress(total, True)
            bar.update(done, skipped)
    else:
        bar_update = None
    try:
        counts = update_index(args.index_dir, args.paths, args.model_path, args.batch_size, args.device,
                              args.precision, args.resize, args.readers, bar_update, args.rebuild,
                              args.from_npy, report, options.fuse_choice(args))
    except KeyboardInterrupt:
        if bar is not None:
            sys.stderr.write('\n')
        logger.error('interrupted; %s holds every batch committed so far (run again to finish)',
                     args.index_dir)
        return EXIT_INTERRUPTED
    except (IndexFormatError, IndexFileError, IndexLockedError, ProvenanceMismatchError, CheckpointError,
            VocabularyError, FileNotFoundError, ValueError, OSError) as e:
        if bar is not None:
            sys.stderr.write('\n')
        logger.error('%s', e)
        return EXIT_ERROR
    if bar is not None:
        bar.close(bar.done, bar.skipped)
    sys.stdout.write((json.dumps(counts.as_dict(), sort_keys=True) if args.json else counts.line()) + '\n')
    sys.stdout.flush()
    if counts.unreadable:
        logger.error('%d file(s) could not be read: %s', counts.unreadable,
                     ', '.join(escape(p) for p in unreadable[:10]) + (' ...' if len(unreadable) > 10 else ''))
        return EXIT_SKIPPED
    return EXIT_OK
