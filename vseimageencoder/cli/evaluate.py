"""``vseimageencoder evaluate``: VSE++'s retrieval protocol (R@K, medr, meanr, rsum) on a split."""
import json
import sys
from pathlib import Path

from vseimageencoder.files.atomic import write_atomically
from vseimageencoder.cli import options
from vseimageencoder.cli.common import (EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, bad_reading_args, logger,
                                        progress_enabled)


def add_parser(sub):
    e = sub.add_parser('evaluate', help='image-caption retrieval figures of a model on a data split',
                       description='Encode the images and captions of a split (five captions per '
                                   'image: the first five of each) and report VSE++\'s figures: '
                                   'R@1/5/10, medr and meanr for image->text and text->image, and '
                                   'rsum. Ties in score count against the query.')
    options.add_data_flags(e)
    e.add_argument('--split', default='test', help='split to evaluate (default: test)')
    e.add_argument('--fold5', action='store_true',
                   help="cut the images into five consecutive folds, score each and average "
                        "(COCO's 1K protocol); without it all images at once (COCO 5K)")
    options.add_model_path(e)
    options.add_vocab_path(e)
    options.add_batch_size(e, 128)
    options.add_device(e)
    options.add_precision(e, 'tower precision')
    options.add_resize(e)
    options.add_readers(e, threads="--threads, else torch's (one per physical core)")
    options.add_threads(e)
    e.add_argument('-o', '--output', metavar='FILE.json', help='also write the figures as JSON')
    e.add_argument('--ranks', metavar='FILE.npz',
                   help="save every query's 0-based rank (arrays i2t (N,) and t2i (5N,))")
    options.add_progress(e)


def run(args) -> int:
    from vseimageencoder.release.locate import CheckpointError
    from vseimageencoder.release.vocab import VocabularyError
    from vseimageencoder.training.data import DataError

    if bad_reading_args(args):
        return EXIT_ERROR
    if args.karpathy and not args.images:
        logger.error('--karpathy needs --images ROOT, the folder its images are in')
        return EXIT_ERROR
    if args.threads is not None:
        if args.threads < 1:
            logger.error('--threads must be at least 1, got %d', args.threads)
            return EXIT_ERROR
        import torch
        torch.set_num_threads(args.threads)
    try:
        result = evaluate_model(args)
    except KeyboardInterrupt:
        logger.error('interrupted; nothing written')
        return EXIT_INTERRUPTED
    except (CheckpointError, VocabularyError, DataError, FileNotFoundError, ValueError, OSError) as e:
        logger.error('%s', e)
        return EXIT_ERROR
    from vseimageencoder.training.metrics import format_table
    sys.stdout.write(format_table(result, 'split %r of %s, model %s (sha256 %s)' % (
        args.split, args.karpathy or args.precomp, result['checkpoint'], result['model'][:12])) + '\n')
    return EXIT_OK


def evaluate_model(args) -> dict:
    """Load the model and the split, score it, write ``--output`` / ``--ranks``; the result."""
    import numpy as np

    from vseimageencoder.encoders import ImageEncoder, TextEncoder
    from vseimageencoder.training.data import DataError, load_split
    from vseimageencoder.training.evaluation import evaluate_split
    from vseimageencoder.release.weights import sha256_of

    split = load_split(args.split, args.karpathy, args.images, args.precomp)
    split.check_files()  # before the model loads: a missing image should not cost that wait
    image_enc = ImageEncoder(args.model_path, precision=args.precision, device=args.device,
                             resize=args.resize)
    if image_enc.options.precomputed != split.precomputed:
        raise DataError('%s is a %s model, but %s holds %s' % (
            image_enc.checkpoint_path,
            'precomputed-feature' if image_enc.options.precomputed else 'full-image (%s)' % image_enc.options.cnn_type,
            split.source, 'precomputed features' if split.precomputed else 'image files'))
    if split.precomputed and split.features.shape[1] != image_enc.options.img_dim:
        raise DataError('%s has %d-d features, but %s expects %d-d' % (
            split.source, split.features.shape[1], image_enc.checkpoint_path, image_enc.options.img_dim))
    text_enc = TextEncoder(args.model_path, args.vocab_path, precision=args.precision, device=args.device)
    logger.info('evaluating split %r: %d images, %d captions', args.split, len(split), len(split.captions))
    progress = None
    if progress_enabled(args) and not split.precomputed:
        total = len(split)

        def progress(done):
            sys.stderr.write('\rencoded %d/%d images' % (done, total))
            sys.stderr.flush()
    result = evaluate_split(split, image_enc.model, text_enc.encode_checked, folds=5 if args.fold5 else 1,
                            batch_size=args.batch_size, resize=args.resize, readers=args.readers,
                            image_progress=progress)
    if progress:
        sys.stderr.write('\n')
    logger.info('encoded in %.1f s, ranked in %.2f s', result['seconds']['encode'], result['seconds']['rank'])
    ranks = result.pop('ranks')
    result['model'] = sha256_of(image_enc.checkpoint_path)
    result['checkpoint'] = str(image_enc.checkpoint_path)
    if args.output:
        doc = {k: result[k] for k in ('i2t', 't2i', 'rsum', 'images', 'captions', 'folds', 'model')}
        doc.update(split=args.split, checkpoint=result['checkpoint'])
        write_atomically(Path(args.output),
                         lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=2) + '\n', encoding='utf-8'))
    if args.ranks:
        def write_npz(tmp):
            with open(tmp, 'wb') as f:
                np.savez(f, i2t=ranks['i2t'], t2i=ranks['t2i'], folds=np.int64(result['folds']))
        write_atomically(Path(args.ranks), write_npz)
    return result
