"""Building a vocabulary from training captions as VSE++ built its own, and saving it in
the release's file form (what :func:`vseimageencoder.release.vocab.read_vocabulary` reads)."""
import os
import pickle
from collections import Counter
from pathlib import Path
from typing import Iterable, Union

from vseimageencoder.files.atomic import write_atomically
from vseimageencoder.release.vocab import SPECIAL_TOKENS, Vocabulary, tokenize

#: VSE++ kept the words seen at least this many times in the training captions.
DEFAULT_THRESHOLD = 4


def build_vocabulary(captions: Iterable[str], threshold: int = DEFAULT_THRESHOLD) -> Vocabulary:
    """``<pad>``=0, ``<start>``=1, ``<end>``=2, ``<unk>``=3, then every token of the captions
    (VSE++'s tokenisation: :func:`vseimageencoder.release.vocab.tokenize`) seen at least
    ``threshold`` times, in order of first appearance (deterministic for given captions)."""
    if threshold < 1:
        raise ValueError('threshold must be at least 1, got %d' % threshold)
    counts = Counter()
    order = {}
    for caption in captions:
        for tok in tokenize(caption):
            counts[tok] += 1
            order.setdefault(tok, len(order))
    word2idx = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for tok in sorted(order, key=order.get):
        if counts[tok] >= threshold and tok not in word2idx:
            word2idx[tok] = len(word2idx)
    return Vocabulary(word2idx)


def vocabulary_pickle(vocab: Vocabulary) -> bytes:
    """A protocol-2 pickle of a ``vocab.Vocabulary`` instance with VSE++'s attributes
    (``word2idx``, ``idx2word``, ``idx``), as VSE++'s ``vocab.py`` loads it.

    Python's pickler writes a class only if it can import it; VSE++'s class is not ours to
    import, so the object's opcodes are written here around a pickle of its state.
    """
    state = {'word2idx': dict(vocab.word2idx),
             'idx2word': {i: w for w, i in vocab.word2idx.items()},
             'idx': len(vocab)}
    body = pickle.dumps(state, protocol=2)
    assert body[:2] == b'\x80\x02' and body[-1:] == b'.'
    # PROTO 2; GLOBAL vocab.Vocabulary; EMPTY_TUPLE; NEWOBJ; <state>; BUILD; STOP. The state
    # pickle's memo indices are kept: nothing before it is memoised.
    return b'\x80\x02' + b'cvocab\nVocabulary\n' + b')\x81' + body[2:-1] + b'b.'


def write_vocabulary(vocab: Vocabulary, path: Union[str, os.PathLike]) -> Path:
    """Write ``vocab`` to ``path`` atomically (a temporary file renamed into place)."""
    data = vocabulary_pickle(vocab)
    return write_atomically(path, lambda tmp: Path(tmp).write_bytes(data))
