"""Vocabulary building as VSE++ built its own, and the file read back by the package's loader
and by a stand-in for VSE++'s own ``vocab.Vocabulary`` class."""
import pickle
import sys
import types

from vseimageencoder.training.vocabulary import build_vocabulary, vocabulary_pickle, write_vocabulary
from vseimageencoder.release.vocab import SPECIAL_TOKENS, read_vocabulary


CAPTIONS = ['A red circle.', 'a RED square', 'the red circle, left', 'a red circle at the top',
            'A dog', 'red dog circle']


def test_threshold_special_tokens_and_tokenisation():
    v = build_vocabulary(CAPTIONS, threshold=4)
    assert [w for w, _ in sorted(v.word2idx.items(), key=lambda kv: kv[1])] == \
        list(SPECIAL_TOKENS) + ['a', 'red', 'circle']
    # lower-cased, punctuation split off by the Treebank tokenizer, counted: '.' and ',' once each
    v2 = build_vocabulary(CAPTIONS, threshold=1)
    assert {'.', ',', 'square', 'dog', 'the', 'left', 'at', 'top'} <= set(v2.word2idx)
    assert 'RED' not in v2.word2idx and 'circle.' not in v2.word2idx
    assert sorted(v2.word2idx.values()) == list(range(len(v2)))
    assert v.ids('a blue circle') == [1, 4, 3, 6, 2]  # <start> a <unk> circle <end>


def test_written_file_reads_back(tmp_path):
    v = build_vocabulary(CAPTIONS * 3, threshold=4)
    path = write_vocabulary(v, tmp_path / 'shapes_vocab.pkl')
    back = read_vocabulary(path)
    assert dict(back.word2idx) == dict(v.word2idx)
    assert not list(tmp_path.glob('.*part'))


def test_file_is_what_vsepp_vocab_py_loads(monkeypatch):
    v = build_vocabulary(CAPTIONS * 2, threshold=2)

    class Vocabulary(object):  # VSE++'s vocab.py class: attributes only
        pass
    module = types.ModuleType('vocab')
    module.Vocabulary = Vocabulary
    Vocabulary.__module__ = 'vocab'
    monkeypatch.setitem(sys.modules, 'vocab', module)
    obj = pickle.loads(vocabulary_pickle(v))
    assert isinstance(obj, Vocabulary)
    assert obj.word2idx == dict(v.word2idx) and obj.idx == len(v)
    assert all(obj.idx2word[i] == w for w, i in v.word2idx.items())
