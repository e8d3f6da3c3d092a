"""The command line's options, each defined once: a command adds a shared option by calling
the function here, naming only what differs for it (its default, what the option applies to).
Nothing here imports torch, so ``--help`` stays fast."""
from vseimageencoder.model.precisions import PRECISIONS

#: What ``--precision auto`` picks (:func:`~vseimageencoder.model.inference.resolve_precision`).
AUTO_PRECISION = 'fp16 on CUDA, bf16 on CPUs with bf16 hardware, else fp32'

#: ``--fuse`` value -> the ``fuse`` argument the embedding code takes (None: decide by itself).
FUSE_CHOICES = {'auto': None, 'on': True, 'off': False}

#: Torch's own count of CPU threads, which the reading lanes share out.
TORCH_THREADS = "torch's CPU threads (one per physical core unless OMP_NUM_THREADS says otherwise)"


def add_model_path(parser, default='pretrained', default_help=None, note=''):
    """``--model-path``: a checkpoint file or the folder holding ``model_best.pth.tar``.

    ``default`` None lets the command choose (an index's recorded checkpoint), and
    ``default_help`` then says how; ``note`` follows the description."""
    parser.add_argument('--model-path', default=default,
                        help='VSE++ checkpoint, or folder holding model_best.pth.tar%s (default: %s)'
                             % (note, default_help or default))


def add_vocab_path(parser, help=None):
    """``--vocab-path`` (default None: the vocabulary beside the checkpoint); ``help`` replaces
    the description where the command uses it differently."""
    parser.add_argument('--vocab-path', default=None,
                        help=help or 'vocabulary pickle or its folder (default: <data_name>_vocab.pkl '
                                     'beside the checkpoint)')


def add_device(parser, of=None):
    """``--device`` (default: cpu); ``of`` names what runs there when that is not just "the
    model" (e.g. "both towers")."""
    parser.add_argument('--device', default='cpu',
                        help="torch device%s, e.g. 'cuda:0' (default: cpu)" % (' of ' + of if of else ''))


def add_precision(parser, what, default='fp32', default_help=None, note=''):
    """``--precision`` with the choices :data:`PRECISIONS`.

    ``what`` describes what the precision applies to; ``default`` None lets the command
    choose (what an index records), ``default_help`` saying how (default: ``default``, with
    "faithful" for fp32); ``note`` follows the default."""
    if default_help is None:
        default_help = 'fp32, faithful' if default == 'fp32' else default
    parser.add_argument('--precision', default=default, choices=PRECISIONS,
                        help='%s; auto: %s (default: %s)%s' % (what, AUTO_PRECISION, default_help, note))


def add_batch_size(parser, default, what='images per forward pass'):
    """``--batch-size N`` (an int; commands check it is at least 1), ``what`` saying what N counts."""
    parser.add_argument('--batch-size', type=int, default=default, help='%s (default: %d)' % (what, default))


def add_resize(parser, recorded=False):
    """``--resize`` with the choices :data:`~vseimageencoder.images.transform.RESIZE_MODES`
    (default: :data:`~vseimageencoder.images.transform.DEFAULT_RESIZE`; ``recorded``: None,
    for the command to take what an index records, else that default)."""
    from vseimageencoder.images.transform import DEFAULT_RESIZE, RESIZE_MODES

    parser.add_argument('--resize', default=None if recorded else DEFAULT_RESIZE, choices=RESIZE_MODES,
                        help='fast: decode JPEGs at 1/2 to 1/8 scale and resize only the crop '
                             '(close to exact: docs/speed.md); exact: the faithful '
                             'transform, full decode then resize; a CUDA --device always uses the exact '
                             'geometry, decoding JPEGs on the GPU (default: %s%s)'
                             % ('what the index records, else ' if recorded else '', DEFAULT_RESIZE))


def add_readers(parser, threads=TORCH_THREADS, training=False):
    """``--readers N`` (an int, default None; commands check it is not negative).

    As the commands that embed image files use it
    (:func:`~vseimageencoder.pipeline.embed_files.embed_files`: None is the thread budget's
    number of lanes), ``threads`` saying where the torch thread count T comes from; or, with
    ``training``, as ``train`` does (None: 2 threads reading training batches; validation
    images in lanes)."""
    from vseimageencoder.pipeline.thread_budget import MAX_LANES

    lanes = 'one per torch thread, at most %d' % MAX_LANES
    if training:
        help = ('threads reading training images ahead of the model, 0 reading them on the main '
                'thread (default: 2); validation images are embedded in N lanes as by encode '
                '--readers (unset: %s)' % lanes)
    else:
        help = ('threads that each read and transform a batch of images and run the model on it '
                'with T/N torch threads, T being %s; 0 reads on the main thread, the model using all '
                'T; with a CUDA --device, JPEGs are decoded on the GPU and N does not apply (default: '
                '%s)' % (threads, lanes))
    parser.add_argument('--readers', type=int, default=None, metavar='N', help=help)


def add_threads(parser, note=''):
    """``--threads N``: torch's CPU threads (default None: torch's own count); ``note``
    follows the default."""
    parser.add_argument('--threads', type=int, default=None, metavar='N',
                        help="torch CPU threads (default: torch's, one per physical core)%s" % note)


def add_data_flags(parser):
    """``--karpathy JSON --images ROOT`` or ``--precomp DIR``: the data a split comes from
    (one of the two required)."""
    g = parser.add_mutually_exclusive_group(required=True)
    g.add_argument('--karpathy', metavar='JSON',
                   help='Karpathy-split JSON (dataset_coco.json, dataset_flickr30k.json, ...)')
    g.add_argument('--precomp', metavar='DIR',
                   help="folder of precomputed features: {split}_ims.npy and {split}_caps.txt")
    parser.add_argument('--images', metavar='ROOT',
                        help='folder the JSON\'s images are in (filepath/filename under it)')


def add_progress(parser):
    """``--progress`` / ``--no-progress`` (dest ``progress``; default None: when stderr is a
    terminal, :func:`~vseimageencoder.cli.common.progress_enabled`)."""
    g = parser.add_mutually_exclusive_group()
    g.add_argument('--progress', dest='progress', action='store_true', default=None,
                   help='show progress on stderr (default: when stderr is a terminal)')
    g.add_argument('--no-progress', dest='progress', action='store_false')


def add_fuse(parser, help=None):
    """``--fuse {auto,on,off}`` (default: auto; :func:`fuse_choice` reads it); ``help`` says
    what auto does (default: as the commands that embed image files in bulk do)."""
    from vseimageencoder.pipeline.embed_files import FUSE_MIN_IMAGES

    parser.add_argument('--fuse', default='auto', choices=tuple(FUSE_CHOICES),
                        help=help or ('compile the CPU tower with oneDNN Graph fusion before the first '
                                      'batch (a one-off cost at start, then faster batches: see '
                                      'docs/speed.md); auto: in bf16 or fp16, for %d images or more '
                                      '(default: auto)' % FUSE_MIN_IMAGES))


def fuse_choice(args):
    """``--fuse`` as :func:`~vseimageencoder.pipeline.embed_files.embed_files` takes it (None: auto)."""
    return FUSE_CHOICES[getattr(args, 'fuse', 'auto')]
