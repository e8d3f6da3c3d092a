"""Training pairs per second: the package's loop against a plain fp32 loop of the same model,
in the same run; and how fast VSE++'s retrieval protocol ranks COCO 5K.

    .venv/bin/python benchmarks/train_bench.py                         # all three parts
    .venv/bin/python benchmarks/train_bench.py --parts precomp --threads 1
    .venv/bin/python benchmarks/train_bench.py --parts images --cnn-type resnet152 --image-batch 16

Parts:

- ``precomp``: the ``*_precomp`` model at the paper's sizes (4096-d features, embed 1024,
  word_dim 300, one GRU layer, batch 128, hardest negatives, Adam, clip 2). "plain" is the
  loop VSE++'s code ran: each batch's captions tokenised as they are loaded, sorted by
  length, packed, the GRU output unpacked and the last step gathered, float32. "package" is
  ``vseimageencoder.training.loop.Trainer.step`` on its batches (captions tokenised once,
  packed without sorting, ``--precision`` autocast).
- ``images``: a full-image model (``--cnn-type``, fine-tuned, ``--image-batch`` 224 x 224
  crops); plain: float32, contiguous NCHW; package: fp32 and bf16 autocast (channels-last).
  Image decoding is left out of both (random pixels): this measures the model's step.
- ``rank``: 5,000 x 25,000 scores of random 1024-d unit vectors ranked both ways by
  :func:`vseimageencoder.training.metrics.retrieval_ranks` against VSE++'s per-query
  argsort loop (timed on the first ``--plain-queries`` queries of each direction and scaled
  up linearly; the ranks of those queries are checked equal).

Each step figure is the best of ``--repeats`` rounds of ``--steps`` steps after a warm-up
step, plain and package alternating, so both see the same machine load. Prints markdown
tables and the machine line.
"""
import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'examples'))


def cpu_line(threads) -> str:
    import torch
    name = 'unknown CPU'
    flags = set()
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name') and name == 'unknown CPU':
                name = line.split(':', 1)[1].strip()
            if line.startswith('flags') and not flags:
                flags = set(line.split(':', 1)[1].split())
    except OSError:
        name = platform.processor() or name
    hw = [f for f in ('amx_bf16', 'avx512_bf16', 'avx512f') if f in flags]
    import os
    return '%s (%s), %d torch threads, torch %s; load average %.1f on %d cores' % (
        name, ', '.join(hw) or 'no bf16 hardware', threads or torch.get_num_threads(), torch.__version__,
        os.getloadavg()[0], os.cpu_count())


# --------------------------------------------------------------------------- plain VSE++ loop

def plain_modules(img_dim, vocab_size, word_dim, embed, cnn_type=None):
    import torch
    from torch import nn

    from vseimageencoder.model.image import build_backbone

    class Image(nn.Module):
        def __init__(self):
            super().__init__()
            self.cnn, width = build_backbone(cnn_type) if cnn_type else (None, img_dim)
            self.fc = nn.Linear(width, embed)

        def forward(self, x):
            if self.cnn is not None:
                x = nn.functional.normalize(self.cnn(x), dim=1)
            return nn.functional.normalize(self.fc(x), dim=1)

    class Text(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab_size, word_dim)
            self.rnn = nn.GRU(word_dim, embed, 1, batch_first=True)

        def forward(self, ids, lengths):
            from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
            packed = pack_padded_sequence(self.embed(ids), lengths, batch_first=True)
            out, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True)
            idx = (torch.tensor(lengths) - 1).view(-1, 1, 1).expand(out.size(0), 1, out.size(2))
            return nn.functional.normalize(out.gather(1, idx).squeeze(1), dim=1)

    torch.manual_seed(0)
    return Image(), Text()


def plain_step(image, text, optimizer, params, x, captions, vocab):
    """One VSE++ step as its code did it: tokenise, sort by length, pad, forward, loss, clip."""
    import torch

    from vseimageencoder.training.loss import contrastive_loss
    order = sorted(range(len(captions)), key=lambda i: -len(vocab.ids(captions[i])))
    x = x[order]
    seqs = [vocab.ids(captions[i]) for i in order]  # tokenised again, as its loader did
    lengths = [len(s) for s in seqs]
    ids = torch.zeros(len(seqs), max(lengths), dtype=torch.int64)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
    loss = contrastive_loss(image(x), text(ids, lengths))
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 2.0)
    optimizer.step()


def bench_steps(fns, steps, repeats):
    """Best seconds per step of each function, alternating rounds."""
    best = {name: float('inf') for name in fns}
    for name, fn in fns.items():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(steps):
                fn()
            best[name] = min(best[name], (time.perf_counter() - t) / steps)
    return best


def trainer_for(tmp, data, **kw):
    from vseimageencoder.training.loop import Trainer, default_options
    return Trainer(default_options(out=str(tmp / ('run_%d' % time.monotonic_ns())), epochs=1,
                                   val_step=10 ** 9, **dict(data, **kw)))


def part_precomp(a, tmp):
    import numpy as np
    import torch

    from shapes_dataset import captions_for, random_scene
    import random
    rng = random.Random(0)
    n = 2000
    folder = tmp / 'pre'
    folder.mkdir()
    caps = [c for _ in range(n) for c in captions_for(random_scene(rng), rng)]
    for split, rows in (('train', n), ('dev', 10)):
        np.save(str(folder / ('%s_ims.npy' % split)), np.random.RandomState(1).rand(rows, 4096).astype(np.float32))
        (folder / ('%s_caps.txt' % split)).write_text('\n'.join(caps[:5 * rows]) + '\n')
    rows = []
    ours = {}
    for precision in a.precisions:
        tr = trainer_for(tmp, {'precomp': str(folder)}, precision=precision, batch_size=a.batch)
        batches = [tr.batches.load(p) for p in tr.batches.order(0)[:a.steps + 1]]
        ours[precision] = (tr, batches)
    tr0 = ours[a.precisions[0]][0]
    image, text = plain_modules(4096, len(tr0.vocab), 300, 1024)
    params = list(image.parameters()) + list(text.parameters())
    opt = torch.optim.Adam(params, 2e-4)
    feats = torch.from_numpy(np.array(tr0.train_split.features))
    order = tr0.batches.order(0)
    plain_batches = [(feats[p // 5], [tr0.train_split.captions[int(j)] for j in p]) for p in order[:a.steps + 1]]
    it = {'plain': iter(range(10 ** 9))}

    def plain():
        x, c = plain_batches[next(it['plain']) % len(plain_batches)]
        plain_step(image, text, opt, params, x, c, tr0.vocab)
    fns = {'plain fp32': plain}
    for precision, (tr, batches) in ours.items():
        counter = iter(range(10 ** 9))
        fns['package %s' % precision] = (lambda tr=tr, b=batches, c=counter: tr.step(b[next(c) % len(b)]))
    best = bench_steps(fns, a.steps, a.repeats)
    base = a.batch / best['plain fp32']
    for name, sec in best.items():
        rows.append((name, a.batch / sec, (a.batch / sec) / base))
    return rows


def part_images(a, tmp):
    import torch
    from PIL import Image

    from vseimageencoder.training.loop import default_options  # noqa: F401
    folder = tmp / 'img'
    (folder / 'imgs').mkdir(parents=True)
    import json
    entries = []
    for i in range(4):
        Image.new('RGB', (32, 32), (i * 40, 80, 120)).save(str(folder / 'imgs' / ('%d.png' % i)))
        for split in ('train', 'dev'):
            entries.append({'filename': '%d.png' % i, 'filepath': 'imgs', 'split': split,
                            'sentences': [{'raw': 'a red circle %d' % k} for k in range(5)]})
    (folder / 'd.json').write_text(json.dumps({'images': entries}))
    b = a.image_batch
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, 3, 224, 224, generator=g)
    ids = torch.randint(4, 10, (b, 12), generator=g)
    lengths = torch.full((b,), 12, dtype=torch.int64)
    fns = {}
    image, text = plain_modules(None, 10, 300, 1024, a.cnn_type)
    image.train()
    params = list(image.parameters()) + list(text.parameters())
    opt = torch.optim.Adam(params, 2e-4)

    def plain():
        from vseimageencoder.training.loss import contrastive_loss
        loss = contrastive_loss(image(x), text(ids, lengths.tolist()))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 2.0)
        opt.step()
    fns['plain fp32'] = plain
    for precision in a.precisions:
        tr = trainer_for(tmp, {'karpathy': str(folder / 'd.json'), 'images': str(folder)},
                         cnn_type=a.cnn_type, finetune=True, precision=precision, batch_size=b,
                         vocab_threshold=1)
        tr._train_mode(True)
        fns['package %s' % precision] = (lambda tr=tr: tr.step((x, ids, lengths)))
    best = bench_steps(fns, a.image_steps, a.repeats)
    base = b / best['plain fp32']
    return [(name, b / sec, (b / sec) / base) for name, sec in best.items()]


def part_rank(a):
    import numpy as np

    from vseimageencoder.training.metrics import retrieval_ranks
    rng = np.random.RandomState(0)
    n, d = a.rank_images, 1024
    im = rng.randn(n, d).astype(np.float32)
    im /= np.linalg.norm(im, axis=1, keepdims=True)
    cap = (np.repeat(im, 5, axis=0) + 0.05 * rng.randn(5 * n, d)).astype(np.float32)
    cap /= np.linalg.norm(cap, axis=1, keepdims=True)
    t = time.perf_counter()
    r1, r2 = retrieval_ranks(im, cap)
    ours = time.perf_counter() - t
    q = min(a.plain_queries, n)
    t = time.perf_counter()
    plain_i2t = []
    for i in range(q):  # VSE++'s evaluation.i2t
        inds = np.argsort(im[i] @ cap.T)[::-1]
        plain_i2t.append(min(np.where(inds == j)[0][0] for j in range(5 * i, 5 * i + 5)))
    plain_t2i = []
    for j in range(5 * q):  # VSE++'s evaluation.t2i, one caption at a time
        inds = np.argsort(cap[j] @ im.T)[::-1]
        plain_t2i.append(np.where(inds == j // 5)[0][0])
    plain = (time.perf_counter() - t) * n / q
    assert list(r1[:q]) == plain_i2t and list(r2[:5 * q]) == plain_t2i
    return n, ours, plain


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--parts', default='precomp,images,rank')
    p.add_argument('--precisions', default='fp32,bf16')
    p.add_argument('--batch', type=int, default=128, help='precomp batch (default: 128)')
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--repeats', type=int, default=2)
    p.add_argument('--cnn-type', default='resnet50')
    p.add_argument('--image-batch', type=int, default=16)
    p.add_argument('--image-steps', type=int, default=2)
    p.add_argument('--rank-images', type=int, default=5000)
    p.add_argument('--plain-queries', type=int, default=500)
    p.add_argument('--threads', type=int, default=None)
    a = p.parse_args(argv)
    a.precisions = a.precisions.split(',')
    import logging

    import torch
    logging.basicConfig(level=logging.WARNING)
    if a.threads:
        torch.set_num_threads(a.threads)
    parts = a.parts.split(',')
    with tempfile.TemporaryDirectory(prefix='train_bench.') as tmp:
        tmp = Path(tmp)
        if 'precomp' in parts:
            print('\nPrecomputed-feature training (4096-d, embed 1024, word_dim 300, batch %d):\n' % a.batch)
            print('| loop | pairs/s | vs plain fp32 |\n|---|---|---|')
            for name, rate, ratio in part_precomp(a, tmp):
                print('| %s | %.0f | %.2fx |' % (name, rate, ratio))
        if 'images' in parts:
            print('\nFull-image training, %s fine-tuned, 224 x 224, batch %d:\n' % (a.cnn_type, a.image_batch))
            print('| loop | pairs/s | vs plain fp32 |\n|---|---|---|')
            for name, rate, ratio in part_images(a, tmp):
                print('| %s | %.1f | %.2fx |' % (name, rate, ratio))
    if 'rank' in parts:
        n, ours, plain = part_rank(a)
        print('\nRanking %d images x %d captions (1024-d), both directions: package %.1f s; '
              'VSE++\'s per-query argsort loop %.0f s (scaled from %d image and %d caption queries); '
              '%.0fx\n' % (n, 5 * n, ours, plain, min(a.plain_queries, n), 5 * min(a.plain_queries, n),
                           plain / ours))
    print('\n' + cpu_line(a.threads))
    return 0


if __name__ == '__main__':
    sys.exit(main())
