"""``vseimageencoder download MODEL``: a released model and its vocabulary (no torch import)."""
from .common import (EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_SKIPPED, logger, progress_enabled,
                     progress_flags)


def add_parser(sub):
    from ..weights import DEFAULT_MODEL, RELEASE_ARCHIVE_URL, RELEASED_MODELS, VOCAB_ARCHIVE_URL
    d = sub.add_parser('download', help='fetch a released model and its vocabulary',
                       description='Stream the VSE++ release archive and write one model to '
                                   'DEST/model_best.pth.tar, then stream the vocabulary archive and '
                                   'write the vocabulary its text tower was trained with to '
                                   'DEST/<data_name>_vocab.pkl, each with a record of what was '
                                   'fetched beside it (.json). Nothing is fetched for a file DEST '
                                   'already holds, verified. If the vocabulary fails after the model '
                                   'arrived, the model is kept. Known models: %s.'
                                   % ', '.join(sorted(RELEASED_MODELS)))
    d.add_argument('model', metavar='MODEL', help='released model name, e.g. %s' % DEFAULT_MODEL)
    d.add_argument('--source', default=None, metavar='URL|PATH',
                   help='the model archive: an http(s) URL or a local path (default: %s)' % RELEASE_ARCHIVE_URL)
    d.add_argument('--vocab-source', default=None, metavar='URL|PATH',
                   help='the vocabulary archive: an http(s) URL or a local path (default: %s)'
                        % VOCAB_ARCHIVE_URL)
    d.add_argument('--dest', default='pretrained', help='folder to write into (default: pretrained)')
    which = d.add_mutually_exclusive_group()
    which.add_argument('--no-vocab', action='store_true',
                       help='the model only (the image encoder needs no vocabulary)')
    which.add_argument('--vocab-only', action='store_true',
                       help="the model's vocabulary only, e.g. beside a checkpoint you already have")
    progress_flags(d)


def run(args) -> int:
    progress = progress_enabled(args)
    import shlex

    from ..weights import (UnknownModelError, VocabularyDownloadError, WeightsError, download,
                          download_vocab)

    try:
        if args.vocab_only:
            download_vocab(args.model, args.vocab_source, args.dest, progress)
        else:
            download(args.model, args.source, args.dest, progress, vocab_source=args.vocab_source,
                     vocab=not args.no_vocab)
    except UnknownModelError as e:
        logger.error('%s', e)
        return EXIT_ERROR
    except KeyboardInterrupt:
        # Files land by rename: an interrupted one leaves nothing, finished ones stay.
        logger.error('interrupted; nothing half-written left in %s', args.dest)
        return EXIT_INTERRUPTED
    except VocabularyDownloadError as e:
        retry = 'vseimageencoder download %s --vocab-only --dest %s' % (
            shlex.quote(args.model), shlex.quote(str(args.dest)))
        if args.vocab_source:
            retry += ' --vocab-source ' + shlex.quote(args.vocab_source)
        logger.error('%s; no vocabulary written; the model at %s is kept (complete and verified); '
                     'fetch the vocabulary with: %s', e, e.checkpoint, retry)
        return EXIT_SKIPPED
    except (WeightsError, OSError) as e:
        logger.error('%s; nothing written to %s', e, args.dest)
        return EXIT_SKIPPED
    return EXIT_OK
