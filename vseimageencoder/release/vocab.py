"""VSE++ vocabularies (safely unpickled) and captions turned into word ids (no jina, no torch)."""
import io
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

SPECIAL_TOKENS = ('<pad>', '<start>', '<end>', '<unk>')


class VocabularyError(ValueError):
    """A vocabulary could not be used; the message names the file and the fault."""


class VocabularyNotFoundError(VocabularyError, FileNotFoundError):
    """No vocabulary file at any of the paths tried."""


class UnsafeVocabularyError(VocabularyError):
    """The file's pickle names something other than the Vocabulary class and plain data."""


class NotAVocabularyError(VocabularyError):
    """The file is not a VSE++ vocabulary (not a pickle, or a pickle of something else)."""


class VocabularyLimitError(VocabularyError):
    """The file is larger, nests deeper or holds more words than any VSE++ vocabulary;
    refused before it is unpickled (or before its words are used)."""


#: The released vocabularies hold about 8,500 (f30k) and 11,400 (coco) words in pickles
#: under 1 MB; these bounds leave wide headroom (and match checkpoint.MAX_VOCAB_SIZE).
MAX_VOCAB_WORDS = 200_000
MAX_VOCAB_FILE_BYTES = 32 << 20
MAX_VOCAB_PICKLE_OPS = 4_000_000


@dataclass(frozen=True)
class Vocabulary:
    """A VSE++ vocabulary: ``word2idx`` maps words to ids (``<pad>``=0, ``<start>``=1,
    ``<end>``=2, ``<unk>``=3); ids run from 0 to ``len - 1``."""

    word2idx: Mapping[str, int]
    source: str = ''

    def __len__(self) -> int:
        return len(self.word2idx)

    def __call__(self, word: str) -> int:
        return self.word2idx.get(word, self.word2idx['<unk>'])

    def __contains__(self, word: str) -> bool:
        return word in self.word2idx

    def ids(self, caption: str) -> List[int]:
        """``<start>``, the ids of the caption's tokens, ``<end>``."""
        return [self.word2idx['<start>']] + [self(t) for t in tokenize(caption, self)] + \
            [self.word2idx['<end>']]


# --------------------------------------------------------------------------- tokenizing

def _word_tokenizer():
    # NLTKWordTokenizer is the Treebank tokenizer word_tokenize applies to each sentence;
    # older nltk only has TreebankWordTokenizer, which word_tokenize used then.
    try:
        from nltk.tokenize import NLTKWordTokenizer
        return NLTKWordTokenizer()
    except ImportError:
        from nltk.tokenize import TreebankWordTokenizer
        return TreebankWordTokenizer()


_TOKENIZER = None


def tokenize(caption: str, vocab: Optional[Vocabulary] = None) -> List[str]:
    """The caption's tokens as VSE++ made them: ``word_tokenize(caption.lower())``.

    nltk's ``word_tokenize`` first splits sentences with the punkt model, which is a
    download; here the Treebank word tokenizer runs on the whole caption instead, so
    nothing is fetched. The two agree on one-sentence captions (the usual case). Where a
    caption holds several sentences, punkt would split the period that ends an inner
    sentence off its word; the Treebank tokenizer splits only the final one. To come
    closer, a non-final token ending in ``.`` is split as ``word`` ``.`` when ``vocab`` is
    given and does not hold the token itself (the vocabulary was built from punkt's
    output, so the abbreviations it keeps whole, such as ``mr.``, are in it).
    """
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = _word_tokenizer()
    tokens = _TOKENIZER.tokenize(caption.lower())
    if vocab is None or len(tokens) < 2:
        return tokens
    out: List[str] = []
    last = len(tokens) - 1
    for i, tok in enumerate(tokens):
        if i < last and len(tok) > 1 and tok.endswith('.') and tok not in vocab \
                and not tok.endswith('..'):
            out.extend((tok[:-1], '.'))
        else:
            out.append(tok)
    return out


def check_texts(data) -> List[str]:
    """A batch of captions as a list of str: a list/tuple of str or a 1-d numpy array of
    str (or object holding str). Raises TypeError naming the first item that is not."""
    import numpy as np

    if isinstance(data, str):
        raise TypeError('expected a batch of captions (a list or 1-d array of str), got one str; '
                        'wrap it in a list')
    if isinstance(data, np.ndarray):
        if data.ndim != 1:
            raise ValueError('the caption batch has shape %s; expected a 1-d array of str'
                             % (data.shape,))
        items = data.tolist()
    else:
        try:
            items = list(data)
        except TypeError:
            raise TypeError('expected a batch of captions (a list or 1-d array of str), got %s'
                            % type(data).__name__) from None
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise TypeError('caption %d of the batch is a %s (%r), not a str'
                            % (i, type(item).__name__, _short(item)))
    return items


def _short(obj, n: int = 60) -> str:
    r = repr(obj)
    return r if len(r) <= n else r[:n] + '...'


# --------------------------------------------------------------------------- loading

class _PickledVocabulary:
    """Stands in for VSE++'s ``Vocabulary`` while unpickling: it only receives state."""

    def __setstate__(self, state):
        self.__dict__['_state'] = state


def _safe_reconstructor(cls, base, state):
    # Protocol 0/1 pickles of new-style objects go through copy_reg._reconstructor.
    if cls is not _PickledVocabulary or base is not object or state is not None:
        raise pickle.UnpicklingError('copy_reg._reconstructor called with %r' % ((cls, base, state),))
    return _PickledVocabulary()


class _VocabularyUnpickler(pickle.Unpickler):
    #: Where VSE++ saved its class from: vocab.py run as a script, or imported as a module.
    ALLOWED_CLASS_MODULES = ('__main__', 'vocab')

    def find_class(self, module, name):
        if name == 'Vocabulary' and module in self.ALLOWED_CLASS_MODULES:
            return _PickledVocabulary
        if (module, name) in (('copy_reg', '_reconstructor'), ('copyreg', '_reconstructor')):
            return _safe_reconstructor
        if (module, name) in (('__builtin__', 'object'), ('builtins', 'object')):
            return object
        raise pickle.UnpicklingError('global %s.%s is not allowed' % (module, name))

    def persistent_load(self, pid):
        raise pickle.UnpicklingError('persistent ids are not allowed')


def read_vocabulary(path: PathLike) -> Vocabulary:
    """Unpickle a VSE++ vocabulary file safely and check it.

    The releases ship ``vocab/<data_name>_vocab.pkl`` files: Python 2.7 pickles of the
    ``Vocabulary`` object of VSE++'s ``vocab.py`` (saved from a script run as ``__main__``),
    holding ``word2idx``, ``idx2word`` and ``idx``.

    When a download record (``<file>.json``, written by ``vseimageencoder download``) lies
    beside the file, its size and sha256 are checked first (:class:`VocabularyError` when
    they differ). Raises :class:`UnsafeVocabularyError` when the pickle names anything but
    the ``Vocabulary`` class (under ``__main__`` or ``vocab``) and plain containers, before
    any of it runs; :class:`NotAVocabularyError` when the file is not a vocabulary pickle or
    its contents are inconsistent; all name the file.
    """
    from vseimageencoder.release.weights import WeightsError, verify_record

    path = Path(path)
    if path.is_file():
        try:
            verify_record(path)
        except WeightsError as e:
            raise VocabularyError(str(e)) from None
    from vseimageencoder.files.regular import FileTooLargeError, open_regular
    from vseimageencoder.release.pickle_scan import PickleRefusedError, PickleTooDeepError, PickleTooLargeError, scan_pickle

    try:
        with open_regular(path, MAX_VOCAB_FILE_BYTES) as f:
            data = f.read(MAX_VOCAB_FILE_BYTES + 1)
    except FileNotFoundError:
        raise VocabularyNotFoundError('vocabulary file %s does not exist' % path) from None
    except FileTooLargeError as e:
        raise VocabularyLimitError('refused to load %s (released vocabularies are under 1 MB)'
                                   % e) from None
    except OSError as e:
        raise NotAVocabularyError('cannot read vocabulary file %s: %s' % (path, e)) from None
    if not data:
        raise NotAVocabularyError('vocabulary file %s is empty' % path)
    if not data.startswith(b'\x80') and data[:1] not in (b'(', b'c', b'}', b']', b'i'):
        raise NotAVocabularyError('%s is not a VSE++ vocabulary: not a pickle (starts with %r)'
                                  % (path, data[:8]))
    try:
        scan_pickle(data, max_ops=MAX_VOCAB_PICKLE_OPS)
    except PickleTooDeepError as e:
        raise UnsafeVocabularyError('refused to load %s: %s; unpickling it could crash the process'
                                    % (path, e.reason)) from None
    except PickleTooLargeError as e:
        raise VocabularyLimitError('refused to load %s: its pickle is too large (%s)'
                                   % (path, e.reason)) from None
    except PickleRefusedError as e:
        raise NotAVocabularyError('%s is not a VSE++ vocabulary: %s' % (path, e.reason)) from None
    try:
        # Python 2 byte strings (attribute names, special tokens) are decoded as UTF-8.
        obj = _VocabularyUnpickler(io.BytesIO(data), encoding='utf-8').load()
    except pickle.UnpicklingError as e:
        if 'is not allowed' in str(e) or 'called with' in str(e):
            raise UnsafeVocabularyError('refused to load %s: its pickle names objects other than '
                                        'the VSE++ Vocabulary and plain data, which could run code '
                                        '(%s)' % (path, e)) from None
        raise NotAVocabularyError('%s is not a VSE++ vocabulary: %s' % (path, e)) from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            UnicodeDecodeError, MemoryError, RecursionError) as e:
        raise NotAVocabularyError('%s is not a readable VSE++ vocabulary (%s: %s)'
                                  % (path, type(e).__name__, str(e)[:200])) from None
    return _from_state(obj, path)


def _from_state(obj, path: Path) -> Vocabulary:
    state = obj.__dict__.get('_state') if isinstance(obj, _PickledVocabulary) else None
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
        state = state[0]  # (dict, slots) form
    if not isinstance(state, dict) or 'word2idx' not in state:
        what = type(obj).__name__ if not isinstance(obj, _PickledVocabulary) else 'a Vocabulary without word2idx'
        raise NotAVocabularyError('%s is not a VSE++ vocabulary: expected a pickled Vocabulary with '
                                  'word2idx, found %s' % (path, what))
    w2i = state['word2idx']
    if not isinstance(w2i, dict) or not w2i:
        raise NotAVocabularyError('%s: word2idx is %s, expected a non-empty dict'
                                  % (path, type(w2i).__name__))
    if len(w2i) > MAX_VOCAB_WORDS:
        raise VocabularyLimitError('%s holds %d words, beyond any VSE++ vocabulary (limit %d, '
                                   'vseimageencoder.release.vocab.MAX_VOCAB_WORDS)'
                                   % (path, len(w2i), MAX_VOCAB_WORDS))
    word2idx: Dict[str, int] = {}
    for word, idx in w2i.items():
        if isinstance(word, bytes):
            word = word.decode('utf-8')
        if not isinstance(word, str) or isinstance(idx, bool) or not isinstance(idx, int):
            raise NotAVocabularyError('%s: word2idx maps %r to %r; expected str -> int'
                                      % (path, _short(word), _short(idx)))
        word2idx[word] = idx
    for expected, token in enumerate(SPECIAL_TOKENS):
        if word2idx.get(token) != expected:
            raise NotAVocabularyError('%s: %s has id %r, expected %d as in VSE++ vocabularies'
                                      % (path, token, word2idx.get(token), expected))
    ids = sorted(word2idx.values())
    if ids != list(range(len(ids))):
        raise NotAVocabularyError('%s: word ids are not 0..%d without gaps or repeats'
                                  % (path, len(ids) - 1))
    return Vocabulary(word2idx, str(path))


def resolve_vocabulary_path(vocab_path: Optional[PathLike], checkpoint: Path, data_name: str,
                            search_dirs: Sequence[PathLike] = ()) -> Path:
    """The vocabulary file for a checkpoint.

    ``vocab_path=None``: ``<data_name>_vocab.pkl`` beside the checkpoint (where
    ``vseimageencoder download`` puts it). A folder: that file inside it. A relative path is
    tried against the working directory, then ``search_dirs``. Raises
    :class:`VocabularyNotFoundError` listing every path tried and the download command.
    """
    from vseimageencoder.release.weights import vocab_download_command, vocab_file_name

    try:
        name = vocab_file_name(data_name)
    except ValueError as e:  # data_name comes out of the checkpoint: it may be anything
        raise NotAVocabularyError('%s: no vocabulary file name for its data_name (%s)'
                                  % (checkpoint, e)) from None
    if vocab_path is None:
        candidates = [checkpoint.parent / name]
    else:
        raw = Path(os.path.expanduser(os.fspath(vocab_path)))
        bases = [raw] if raw.is_absolute() else [Path.cwd() / raw] + [Path(d) / raw for d in search_dirs]
        candidates = [b / name if b.is_dir() else b for b in bases]
    tried: List[str] = []
    for c in candidates:
        if str(c) not in tried:
            tried.append(str(c))
        if c.is_file():
            return c
    command = vocab_download_command(data_name, checkpoint.parent)
    hint = ('get it with: %s' % command if command else
            'no released model was trained with data_name %r; name the vocabulary file with '
            'vocab_path' % data_name)
    raise VocabularyNotFoundError('no VSE++ vocabulary for %s (data_name %r); tried: %s; %s'
                                  % (checkpoint, data_name, ', '.join(tried), hint))
