"""``vseimageencoder serve INDEX_DIR``: a search page and JSON API over an index."""
from vseimageencoder.cli import options
from vseimageencoder.cli.common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, logger, progress_enabled

LOOPBACK = ('127.0.0.1', 'localhost', '::1')


def add_parser(sub):
    from vseimageencoder.serve.service import MAX_K
    from vseimageencoder.serve.uploads import DEFAULT_MAX_UPLOAD_BYTES

    s = sub.add_parser('serve', help='serve a search page and JSON API over an index',
                       description='Load the image and caption towers of one checkpoint once and '
                                   'serve INDEX_DIR (built by `vseimageencoder index` with the same '
                                   'checkpoint): a page at / to search by caption, by photo and by '
                                   'result ("more like this"), and a JSON API (/api/search, '
                                   '/api/similar/ID, /healthz). There is no authentication: the '
                                   'default host serves this machine only.')
    s.add_argument('index', metavar='INDEX_DIR', help='index folder (created by --photos if missing)')
    s.add_argument('--photos', nargs='+', metavar='FOLDER',
                   help='first bring the index up to date with these folders or files (as '
                        '`vseimageencoder index INDEX_DIR FOLDER...` does), then serve it')
    s.add_argument('--host', default='127.0.0.1',
                   help='address to listen on (default: 127.0.0.1, this machine only; anything '
                        'else exposes the page and every indexed photo without a password)')
    s.add_argument('--port', type=int, default=8000, help='TCP port (default: 8000)')
    options.add_model_path(s, default=None, default_help='the one the index records, else pretrained',
                           note='; the one the index was built with')
    options.add_vocab_path(s)
    options.add_device(s, of='both towers')
    options.add_precision(s, 'arithmetic of both towers', default=None, default_help='fp32, faithful',
                          note='; with --photos, new images are embedded as the index records unless '
                               'this is given')
    s.add_argument('--max-upload-mb', type=float, default=DEFAULT_MAX_UPLOAD_BYTES / 2 ** 20,
                   help='largest photo accepted for search by photo, in MB (default: %(default)g)')
    s.add_argument('--max-k', type=int, default=MAX_K,
                   help='most results one query may ask for (default: %(default)d)')
    s.add_argument('--max-batch', type=int, default=64,
                   help='most concurrent queries answered in one pass of a tower and the index '
                        '(default: %(default)d; 1 answers them one by one)')
    options.add_batch_size(s, 32, 'with --photos: images per forward pass while indexing')
    options.add_fuse(s, help='compile the CPU image tower with oneDNN Graph fusion for single photo '
                             'queries at start (a one-off cost; faster single-photo passes in bf16: '
                             'see docs/speed.md); auto: when the towers run bf16 or fp16; with '
                             '--photos, indexing fuses as `index --fuse` does (default: auto)')
    options.add_progress(s)


def run(args) -> int:
    from vseimageencoder.release.locate import CheckpointError
    from vseimageencoder.release.vocab import VocabularyError

    if not 0 <= args.port <= 65535:
        logger.error('--port must be 0..65535, got %d', args.port)
        return EXIT_ERROR
    if args.max_upload_mb <= 0 or args.max_k < 1 or args.batch_size < 1 or args.max_batch < 1:
        logger.error('--max-upload-mb, --max-k, --max-batch and --batch-size must be positive')
        return EXIT_ERROR
    try:
        import uvicorn

        from vseimageencoder.index import IndexLockedError, ProvenanceMismatchError, update_index
        from vseimageencoder.serve import SearchService, create_app
    except ImportError as e:
        logger.error('serve needs the web stack the package installs (%s): pip install '
                     '"starlette>=0.40,<2" "uvicorn>=0.23.1,<1" "python-multipart>=0.0.18,<0.1"', e)
        return EXIT_ERROR
    service = None
    try:
        if args.photos:
            # precision None: new images embedded as the index records, as `index` does
            counts = update_index(args.index, args.photos, model_path=args.model_path,
                                  batch_size=args.batch_size, device=args.device,
                                  precision=args.precision, progress=progress_enabled(args),
                                  fuse=options.fuse_choice(args))
            logger.info('index %s brought up to date: %s', args.index,
                        ', '.join('%s %d' % kv for kv in counts.as_dict().items()))
        service = SearchService(args.index, args.model_path, args.vocab_path, args.device,
                                args.precision or 'fp32', max_batch=args.max_batch,
                                fuse=options.fuse_choice(args))
        app = create_app(service, max_upload_bytes=int(args.max_upload_mb * 2 ** 20),
                         max_k=args.max_k)
        if args.host not in LOOPBACK:
            logger.warning('listening on %s: anyone who can reach this address can search and see '
                           'every indexed photo (there is no authentication)', args.host)
        logger.info('serving %d images of %s at http://%s:%d/', service.stats()['images'],
                    args.index, args.host if ':' not in args.host else '[%s]' % args.host, args.port)
        uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level='warning',
                                      access_log=False, lifespan='off')).run()
    except KeyboardInterrupt:
        logger.error('interrupted')
        return EXIT_INTERRUPTED
    except (ProvenanceMismatchError, IndexLockedError, CheckpointError, VocabularyError,
            FileNotFoundError, OSError, ValueError) as e:
        logger.error('%s', e)
        return EXIT_ERROR
    finally:
        if service is not None:
            service.close()
    return EXIT_OK
