"""``vseimageencoder search INDEX CAPTION...``: rank indexed images by captions."""
import sys
from pathlib import Path

from .common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, logger


def add_parser(sub):
    s = sub.add_parser('search', help='rank the images of an index by similarity to captions',
                       description='Rank the rows that `vseimageencoder encode` wrote (INDEX.npy and '
                                   'INDEX.files.txt) by cosine similarity to the embedding of each '
                                   'CAPTION (the VSE++ text tower of the same checkpoint), and print '
                                   'the K best as "score<TAB>file" lines, best first. With several '
                                   'captions, each block of K lines follows a "# CAPTION" line, and '
                                   'the model loads once.')
    s.add_argument('index', metavar='INDEX.npy', help='embeddings written by `vseimageencoder encode`')
    s.add_argument('captions', nargs='*', metavar='CAPTION', help='caption(s) to search with')
    s.add_argument('--captions-file', metavar='FILE',
                   help='also read captions from FILE, one per line ("-" for stdin)')
    s.add_argument('-k', type=int, default=5, help='results per caption (default: 5)')
    s.add_argument('--model-path', default='pretrained',
                   help='VSE++ checkpoint, or folder holding model_best.pth.tar (default: pretrained)')
    s.add_argument('--vocab-path', default=None,
                   help='vocabulary pickle or its folder (default: <data_name>_vocab.pkl beside the checkpoint)')
    s.add_argument('--device', default='cpu', help="torch device, e.g. 'cuda:0' (default: cpu)")
    s.add_argument('--precision', default='fp32', choices=('fp32', 'bf16', 'fp16', 'auto'),
                   help='text tower precision (default: fp32, faithful)')


def run(args) -> int:
    from ..checkpoint import CheckpointError
    from ..search import IndexFileError, format_hits, load_index, top_k
    from ..vocab import VocabularyError

    captions = list(args.captions)
    try:
        if args.captions_file:
            if args.captions_file == '-':
                captions += [line.rstrip('\n') for line in sys.stdin]
            else:
                captions += Path(args.captions_file).read_text(encoding='utf-8').splitlines()
        if not captions:
            logger.error('no caption given: name one or more, or use --captions-file')
            return EXIT_ERROR
        if args.k < 1:
            logger.error('-k must be at least 1, got %d', args.k)
            return EXIT_ERROR
        index = load_index(args.index)
        from ..encoders import TextEncoder
        encoder = TextEncoder(args.model_path, args.vocab_path, args.precision, args.device)
        if encoder.embed_size != index.dim:
            logger.error('%s holds %d-d embeddings, but the text tower of %s gives %d-d ones: '
                         'encode the images with the same model', args.index, index.dim,
                         encoder.checkpoint_path, encoder.embed_size)
            return EXIT_ERROR
        queries = encoder.encode(captions, batch_size=256)
        hits = top_k(index.rows, queries, args.k)
    except KeyboardInterrupt:
        logger.error('interrupted')
        return EXIT_INTERRUPTED
    except (IndexFileError, CheckpointError, VocabularyError, FileNotFoundError, OSError, ValueError) as e:
        logger.error('%s', e)
        return EXIT_ERROR
    lines = []
    for caption, found in zip(captions, hits):
        if len(captions) > 1:
            lines.append('# ' + caption)
        lines.extend(format_hits(found, index.files))
    sys.stdout.write(''.join(line + '\n' for line in lines))
    sys.stdout.flush()
    return EXIT_OK
