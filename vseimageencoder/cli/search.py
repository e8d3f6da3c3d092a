"""``vseimageencoder search INDEX CAPTION...``: rank indexed images by captions or by an image."""
import os
import sys
from pathlib import Path

from vseimageencoder.cli import options
from vseimageencoder.cli.common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, logger


def add_parser(sub):
    from vseimageencoder.index.store import ANN_THRESHOLD

    s = sub.add_parser('search', help='rank the images of an index by similarity to captions or an image',
                       description='Rank the images of INDEX (a folder `vseimageencoder index` keeps, or '
                                   'the INDEX.npy and INDEX.files.txt `vseimageencoder encode` wrote) by '
                                   'cosine similarity to the embedding of each CAPTION (the VSE++ text '
                                   'tower of the same checkpoint) or of each --image (the image tower, '
                                   'same transform), and print the K best as "score<TAB>file" lines, '
                                   'best first (file names escaped: see docs/index.md). With several '
                                   'queries, each block of K lines follows a "# QUERY" line, and the '
                                   'model loads once. A checkpoint other than the one the images were '
                                   'embedded with is refused (exit 2), naming both sha256s.')
    s.add_argument('index', metavar='INDEX', help='index folder, or embeddings .npy written by encode')
    s.add_argument('captions', nargs='*', metavar='CAPTION', help='caption(s) to search with')
    s.add_argument('--captions-file', metavar='FILE',
                   help='also read captions from FILE, one per line ("-" for stdin)')
    s.add_argument('--image', action='append', default=[], metavar='FILE',
                   help='search by this image (repeatable); uses the image tower')
    s.add_argument('-k', type=int, default=5, help='results per query (default: 5)')
    options.add_model_path(s, default=None, default_help='the one an index folder records, else pretrained')
    options.add_vocab_path(s)
    options.add_device(s)
    options.add_precision(s, 'tower precision')
    how = s.add_mutually_exclusive_group()
    how.add_argument('--exact', action='store_true',
                     help='scan every row (the default below {:,} rows)'.format(ANN_THRESHOLD))
    how.add_argument('--ann', action='store_true',
                     help='use the approximate index (the default from {:,} rows on)'.format(ANN_THRESHOLD))


class _Refused(Exception):
    pass


def _open(target: str):
    """``(search(queries, k) -> [[(score, file)]], dim, provenance or None, default model path)``."""
    from vseimageencoder.index import load_pair, open_index, provenance

    if os.path.isdir(target):
        ix = open_index(target)
        if len(ix) == 0:
            raise _Refused('%s holds no images: nothing to search' % target)
        return ix, ix.dim, ix.provenance, provenance.default_model_path(ix.provenance)
    pair = load_pair(target)
    return pair, pair.dim, pair.provenance, 'pretrained'


def run(args) -> int:
    from vseimageencoder.release.locate import DEFAULT_SEARCH_DIRS, CheckpointError, resolve_checkpoint_path
    from vseimageencoder.index import (IndexFileError, IndexFormatError, NoApproximateIndexError, ProvenanceMismatchError,
                         escape)
    from vseimageencoder.index import provenance
    from vseimageencoder.index.ranking import format_hit, format_hits, top_k
    from vseimageencoder.release.vocab import VocabularyError

    captions = list(args.captions)
    try:
        if args.captions_file:
            if args.captions_file == '-':
                captions += [line.rstrip('\n') for line in sys.stdin]
            else:
                captions += Path(args.captions_file).read_text(encoding='utf-8').splitlines()
        if not captions and not args.image:
            logger.error('no caption given: name one or more, or use --captions-file or --image')
            return EXIT_ERROR
        if args.k < 1:
            logger.error('-k must be at least 1, got %d', args.k)
            return EXIT_ERROR
        index, dim, prov, default_model = _open(args.index)
        checkpoint = resolve_checkpoint_path(args.model_path or default_model, list(DEFAULT_SEARCH_DIRS))
        provenance.check_checkpoint(args.index, prov, checkpoint,
                                    remedy='search with the same model (--model-path)')
        blocks = []
        if captions:
            from vseimageencoder.encoders import TextEncoder
            encoder = TextEncoder(checkpoint, args.vocab_path, args.precision, args.device)
            _check_width(args.index, dim, encoder)
            blocks.append((captions, encoder.encode(captions, batch_size=256)))
        if args.image:
            blocks.append((args.image, _embed_images(checkpoint, args, prov, dim)))
        exact = True if args.exact else (False if args.ann else None)
        lines = []
        n_queries = len(captions) + len(args.image)
        for names, queries in blocks:
            if hasattr(index, 'search'):
                found = index.search(queries, args.k, exact=exact)
                rendered = [[format_hit(s, f) for s, f in hits] for hits in found]
            else:
                rendered = [format_hits(hits, index.files) for hits in top_k(index.rows, queries, args.k)]
            for name, hit_lines in zip(names, rendered):
                if n_queries > 1:
                    lines.append('# ' + escape(name))
                lines.extend(hit_lines)
    except KeyboardInterrupt:
        logger.error('interrupted')
        return EXIT_INTERRUPTED
    except _Refused as e:
        logger.error('%s', e)
        return EXIT_ERROR
    except (IndexFileError, IndexFormatError, ProvenanceMismatchError, NoApproximateIndexError, CheckpointError,
            VocabularyError, FileNotFoundError, OSError, ValueError) as e:
        logger.error('%s', e)
        return EXIT_ERROR
    sys.stdout.write(''.join(line + '\n' for line in lines))
    sys.stdout.flush()
    return EXIT_OK


def _check_width(target, dim, encoder):
    from vseimageencoder.index import provenance

    provenance.check_width(target, dim, encoder.checkpoint_path, encoder.embed_size,
                           remedy='encode the images with the same model')


def _embed_images(checkpoint, args, prov, dim):
    """The image tower's embeddings of ``--image`` files, with the index's transform."""
    import numpy as np

    from vseimageencoder.encoders import ImageEncoder
    from vseimageencoder.index import escape
    from vseimageencoder.images.read import ImageReadError
    from vseimageencoder.images.transform import DEFAULT_RESIZE, transform

    resize = (prov or {}).get('resize') or DEFAULT_RESIZE
    encoder = ImageEncoder(checkpoint, precision=args.precision, device=args.device, resize=resize)
    encoder.require_backbone('searching by --image')
    _check_width(args.index, dim, encoder)
    rows = []
    for f in args.image:
        if not os.path.isfile(f):
            raise FileNotFoundError('no such image file: %s' % escape(f))
        try:
            x = transform(f, resize=resize)
        except ImageReadError as e:
            raise ValueError('cannot read the query image %s: %s' % (escape(f), e.reason)) from None
        rows.append(encoder.encode_checked(x[None]))
    return np.concatenate(rows)
