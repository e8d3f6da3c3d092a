"""Captions per second of the text tower, next to the image tower's images per second.

    .venv/bin/python benchmarks/text_bench.py                       # about 2-4 min on 2 cores
    .venv/bin/python benchmarks/text_bench.py --batches 1 32 --image-model resnet152

A checkpoint with random weights at the releases' text sizes (word_dim 300, one GRU layer
of 1024; a vocabulary of 8,481 words, of the order of the Flickr30K one) and its vocabulary
are written to a temporary folder. Captions are generated from the vocabulary with Flickr30K-like lengths (8-20
words). Rows:
- "plain": the straightforward way VSE++'s own code ran it: torch.load, nn.Embedding and
  nn.GRU with their random init then load_state_dict, captions sorted by length, packed,
  unpacked and the last step gathered; tokenising included.
- "TextEncoder": this package, tokenising and padding included, fp32.
- the image tower (ImageEncoder, fp32) on already transformed 224 x 224 batches, for scale.
Each figure is the best of ``--repeats`` timed passes after one warm-up, in one process.
Prints a markdown table and the machine line.
"""
import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

VOCAB_SIZE, WORD_DIM, EMBED, F30K_WORDS = 8481, 300, 1024, 8477


def _captions(words, n, seed=0):
    import random
    rng = random.Random(seed)
    return [' '.join(rng.choice(words) for _ in range(rng.randint(8, 20))) + ' .' for _ in range(n)]


def _plain(ckpt, vocab_table):
    import torch
    from nltk.tokenize import word_tokenize
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    sd = torch.load(ckpt, map_location='cpu', weights_only=False)['model'][1]
    embed = torch.nn.Embedding(VOCAB_SIZE, WORD_DIM)
    rnn = torch.nn.GRU(WORD_DIM, EMBED, 1, batch_first=True)
    embed.load_state_dict({'weight': sd['embed.weight']})
    rnn.load_state_dict({k[4:]: v for k, v in sd.items() if k.startswith('rnn.')})

    def run(captions):
        ids = [[1] + [vocab_table.get(t, 3) for t in word_tokenize(c.lower(), preserve_line=True)] + [2]
               for c in captions]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        lengths = [len(ids[i]) for i in order]
        x = torch.zeros(len(ids), lengths[0], dtype=torch.long)
        for row, i in enumerate(order):
            x[row, :len(ids[i])] = torch.tensor(ids[i])
        with torch.no_grad():
            out, _ = rnn(pack_padded_sequence(embed(x), lengths, batch_first=True))
            padded, _ = pad_packed_sequence(out, batch_first=True)
            idx = (torch.tensor(lengths) - 1).view(-1, 1, 1).expand(len(ids), 1, EMBED)
            last = torch.nn.functional.normalize(padded.gather(1, idx).squeeze(1), dim=1)
        result = torch.empty_like(last)
        result[torch.tensor(order)] = last
        return result
    return run


def _best(fn, arg, repeats):
    fn(arg)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--batches', type=int, nargs='+', default=[1, 32, 128])
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--image-model', default='resnet152', help='backbone for the image rows')
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from tests.support.py27_pickle import vocab_words, write_py27_vocab
    from tests.support.vsepp_release import write_release_checkpoint
    from vseimageencoder.encoders import ImageEncoder, TextEncoder

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / 'model_best.pth.tar'
        write_release_checkpoint(ckpt, args.image_model, embed_size=EMBED, vocab_size=VOCAB_SIZE,
                                 word_dim=WORD_DIM, seed=1, legacy=False)
        words = vocab_words(F30K_WORDS)
        write_py27_vocab(Path(tmp) / 'f30k_vocab.pkl', words)
        table = {w: i for i, w in enumerate(['<pad>', '<start>', '<end>', '<unk>'] + words)}
        plain = _plain(str(ckpt), table)
        text = TextEncoder(tmp)
        image = ImageEncoder(tmp)
        rows = []
        for n, b in enumerate(args.batches, 1):
            print('text_bench: [%d/%d] batch %d (%.0f s so far)' % (n, len(args.batches), b,
                                                                   time.perf_counter() - started),
                  file=sys.stderr, flush=True)
            caps = _captions(words[10:], b, seed=b)
            a = plain(caps).numpy()
            o = text.encode(caps)
            cos = float((a * o).sum(1).min())
            t_plain = _best(plain, caps, args.repeats)
            t_ours = _best(text.encode, caps, args.repeats)
            imgs = np.random.RandomState(b).randn(b, 3, 224, 224).astype(np.float32)
            t_img = _best(image.encode, imgs, max(1, args.repeats - 1))
            rows.append((b, b / t_plain, b / t_ours, t_plain / t_ours, cos, b / t_img))

    cpu = 'unknown CPU'
    try:
        cpu = next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration):
        pass
    print('Machine: %s, %d threads, torch %s, Python %s' % (cpu, torch.get_num_threads(), torch.__version__,
                                                          platform.python_version()))
    print()
    print('| batch | plain captions/s | TextEncoder captions/s (x plain) | min cosine to plain | '
          '%s ImageEncoder images/s |' % args.image_model)
    print('|---|---|---|---|---|')
    for b, cp, co, ratio, cos, ip in rows:
        print('| %d | %.1f | %.1f (%.2fx) | %.6f | %.2f |' % (b, cp, co, ratio, cos, ip))
    print('text_bench: done in %.0f s' % (time.perf_counter() - started), file=sys.stderr)


if __name__ == '__main__':
    main()
