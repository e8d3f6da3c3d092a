"""``vseimageencoder train``: VSE++ training, writing checkpoints every front end loads."""
from vseimageencoder.cli import options
from vseimageencoder.cli.common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, logger


def add_parser(sub):
    t = sub.add_parser('train', help='train (or fine-tune) a VSE++ model on image-caption pairs',
                       description='VSE++ training with the paper\'s defaults: hardest-negative '
                                   'triplet loss, Adam, lr divided by 10 every --lr-update epochs, '
                                   'validation rsum picks model_best.pth.tar. OUT receives '
                                   'checkpoint.pth.tar (every epoch and on Ctrl-C; --resume OUT '
                                   'continues), model_best.pth.tar (release layout) and '
                                   '<data_name>_vocab.pkl.')
    options.add_data_flags(t)
    t.add_argument('--out', required=True, metavar='DIR', help='folder for checkpoints and the vocabulary')
    t.add_argument('--train-split', default='train', help='training split (default: train)')
    t.add_argument('--restval', action='store_true', help="also train on the 'restval' split (COCO)")
    t.add_argument('--val-split', default='dev',
                   help="validation split (default: dev; a Karpathy JSON's 'val' when it has no 'dev')")
    t.add_argument('--data-name', default=None,
                   help='data_name stored in the checkpoint and naming the vocabulary file (default: '
                        'from the data: the JSON name without dataset_, the precomp folder name)')
    m = t.add_argument_group('model')
    m.add_argument('--cnn-type', default='vgg19',
                   help='torchvision VGG or ResNet backbone for full images (default: vgg19; the '
                        'releases used vgg19 and resnet152)')
    m.add_argument('--embed-size', type=int, default=1024, help='joint space width (default: 1024)')
    m.add_argument('--word-dim', type=int, default=300, help='word embedding width (default: 300)')
    m.add_argument('--num-layers', type=int, default=1, help='GRU layers (default: 1)')
    m.add_argument('--no-imgnorm', action='store_true', help='do not L2-normalise image embeddings')
    m.add_argument('--use-abs', action='store_true', help='absolute value of embeddings (order embeddings)')
    m.add_argument('--finetune', action='store_true', help='train the backbone too')
    m.add_argument('--init-from', metavar='MODEL',
                   help='start from this checkpoint (file or folder; a released model too) and keep '
                        'its vocabulary')
    options.add_vocab_path(m, help="--init-from / --resume model's vocabulary (default: beside the checkpoint)")
    m.add_argument('--backbone-weights', metavar='FILE',
                   help='torchvision state dict (e.g. ImageNet weights) for a new backbone')
    m.add_argument('--vocab-threshold', type=int, default=4,
                   help='keep words seen at least this often in the training captions (default: 4)')
    o = t.add_argument_group('optimisation')
    o.add_argument('--margin', type=float, default=0.2, help='hinge margin (default: 0.2)')
    o.add_argument('--sum-violation', dest='max_violation', action='store_false',
                   help='sum over all negatives (VSE0) instead of the hardest one')
    o.add_argument('--lr', type=float, default=2e-4, help='Adam learning rate (default: 2e-4)')
    o.add_argument('--lr-update', type=int, default=15, help='divide the lr by 10 every N epochs (default: 15)')
    o.add_argument('--epochs', type=int, default=30, help='epochs (default: 30)')
    options.add_batch_size(o, 128, 'pairs per batch')
    o.add_argument('--grad-clip', type=float, default=2.0, help='gradient norm clip, 0 for none (default: 2)')
    o.add_argument('--crop-size', type=int, default=224, help='training crop of full images (default: 224)')
    o.add_argument('--no-hflip', dest='hflip', action='store_false',
                   help='no random horizontal flips (when captions say left and right)')
    o.add_argument('--val-step', type=int, default=500, help='validate every N iterations too (default: 500)')
    o.add_argument('--log-step', type=int, default=10, help='progress line every N iterations (default: 10)')
    o.add_argument('--max-iters', type=int, default=None,
                   help='stop after this many iterations in all, leaving a resumable checkpoint')
    o.add_argument('--resume', metavar='CHECKPOINT',
                   help='continue from checkpoint.pth.tar (or the folder holding it)')
    o.add_argument('--seed', type=int, default=0, help='seed of the initial weights and the batch order')
    r = t.add_argument_group('hardware')
    options.add_device(r)
    options.add_precision(r, 'autocast precision of the forward pass; the loss and the weights stay fp32',
                          default_help='fp32')
    options.add_threads(r, note='; 1 is fastest for small models on a busy machine')
    options.add_readers(r, training=True)


def run(args) -> int:
    from vseimageencoder.release.locate import CheckpointError
    from vseimageencoder.training.data import DataError
    from vseimageencoder.training.loop import Interrupted, TrainingError, default_options, train
    from vseimageencoder.release.vocab import VocabularyError

    fields = vars(default_options())
    opts = default_options(**{k: getattr(args, k) for k in fields if hasattr(args, k)})
    try:
        result = train(opts)
    except Interrupted as e:
        logger.error('interrupted; resumable checkpoint %s', e.checkpoint)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        logger.error('interrupted before training started; nothing written')
        return EXIT_INTERRUPTED
    except (TrainingError, DataError, CheckpointError, VocabularyError, FileNotFoundError, OSError) as e:
        logger.error('%s', e)
        return EXIT_ERROR
    logger.info('done: %d iterations, best validation rsum %.2f; model %s/model_best.pth.tar, vocabulary %s',
                result['iterations'], result['best_rsum'], result['out'], result['vocab'])
    return EXIT_OK
