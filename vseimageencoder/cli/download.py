"""``vseimageencoder download MODEL``: a released model and its vocabulary (no torch import)."""
from vseimageencoder.cli import options
from vseimageencoder.cli.common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_SKIPPED, logger, progress_enabled


#: Exit status after SIGTERM (128 + 15, as a shell reports a process killed by it).
EXIT_TERMINATED = 143


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so the same clean-up as Ctrl-C runs."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def add_parser(sub):
    from vseimageencoder.release.weights import (DEFAULT_DEADLINE, DEFAULT_MODEL, DEFAULT_STALL_TIMEOUT, MAX_MODEL_BYTES,
                           RELEASE_ARCHIVE_URL, RELEASED_MODELS, STALL_MIN_BYTES, VOCAB_ARCHIVE_URL)
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
    d.add_argument('--max-bytes', type=int, default=MAX_MODEL_BYTES, metavar='N',
                   help='refuse a model member declaring more bytes than this (default: %d, above '
                        'the largest released model, about 0.6 GB)' % MAX_MODEL_BYTES)
    d.add_argument('--deadline', type=float, default=DEFAULT_DEADLINE, metavar='SECONDS',
                   help='give up when the whole download takes longer (default: %d)' % DEFAULT_DEADLINE)
    d.add_argument('--stall-timeout', type=float, default=DEFAULT_STALL_TIMEOUT, metavar='SECONDS',
                   help='give up when the source sends fewer than %d bytes in this many seconds '
                        '(default: %d)' % (STALL_MIN_BYTES, DEFAULT_STALL_TIMEOUT))
    which = d.add_mutually_exclusive_group()
    which.add_argument('--no-vocab', action='store_true',
                       help='the model only (the image encoder needs no vocabulary)')
    which.add_argument('--vocab-only', action='store_true',
                       help="the model's vocabulary only, e.g. beside a checkpoint you already have")
    options.add_progress(d)


def run(args) -> int:
    progress = progress_enabled(args)
    import shlex

    from vseimageencoder.release.weights import (UnknownModelError, VocabularyDownloadError, WeightsError, download,
                          download_vocab)

    for name, value in (('--max-bytes', args.max_bytes), ('--deadline', args.deadline),
                        ('--stall-timeout', args.stall_timeout)):
        if not value > 0:
            logger.error('%s must be positive, got %s', name, value)
            return EXIT_ERROR
    import signal
    try:  # SIGTERM cleans up as Ctrl-C does (only the main thread may set handlers)
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:
        previous = None
    try:
        if args.vocab_only:
            download_vocab(args.model, args.vocab_source, args.dest, progress, args.deadline,
                           args.stall_timeout)
        else:
            download(args.model, args.source, args.dest, progress, vocab_source=args.vocab_source,
                     vocab=not args.no_vocab, max_bytes=args.max_bytes, deadline=args.deadline,
                     stall_timeout=args.stall_timeout)
    except UnknownModelError as e:
        logger.error('%s', e)
        return EXIT_ERROR
    except KeyboardInterrupt as e:
        # Files land by rename: an interrupted one leaves nothing, finished ones stay.
        terminated = isinstance(e, _Terminated)
        logger.error('%s; nothing half-written left in %s', 'terminated' if terminated else 'interrupted',
                     args.dest)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
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
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return EXIT_OK
