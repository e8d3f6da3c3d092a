"""The text tower: parity with a step-by-step GRU on files written as the releases were
(Python 2.7, legacy torch, GPU storages, __main__.Vocabulary), batching, tokens, errors."""
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.py27_pickle import (vocab_words, write_hostile_py27_vocab, write_py27_release_checkpoint,
                               write_py27_vocab)
from tests.support.vsepp_release import reference_text_embed, reference_word_ids, write_release_checkpoint
from vseimageencoder.release.checkpoint import NotVSECheckpointError
from vseimageencoder.encoders import TextEncoder
from vseimageencoder.release.vocab import (NotAVocabularyError, UnsafeVocabularyError, VocabularyNotFoundError,
                                   tokenize)

VOCAB_SIZE = 44
CAPTIONS = [
    'A man riding a horse on the beach.',
    'two women playing with a red ball in the snow',
    'Café crème, jalapeño and piñata!',            # non-ASCII words
    'a zebra grazing near a lighthouse',            # unknown words
    '',                                             # start and end only
    'dog',
]


def _release(folder: Path, num_layers=1, use_abs=False, module='__main__', seed=0):
    """A py27-style checkpoint and its f30k vocabulary in ``folder``; (release, words)."""
    folder.mkdir(parents=True, exist_ok=True)
    rel = write_py27_release_checkpoint(folder / 'model_best.pth.tar', 'resnet18', embed_size=32,
                                        word_dim=8, num_layers=num_layers, vocab_size=VOCAB_SIZE,
                                        use_abs=use_abs, seed=seed)
    words = vocab_words(VOCAB_SIZE - 4)
    write_py27_vocab(folder / 'f30k_vocab.pkl', words, module=module)
    return rel, words


@pytest.fixture(scope='module')
def release_1layer(tmp_path_factory):
    folder = tmp_path_factory.mktemp('text1')
    rel, words = _release(folder)
    return folder, rel, words


@pytest.fixture(scope='module')
def encoder(release_1layer):
    return TextEncoder(str(release_1layer[0]))


@pytest.mark.parametrize('num_layers,use_abs,module', [(1, False, '__main__'), (2, False, '__main__'),
                                                       (2, True, 'vocab')])
def test_parity_with_stepwise_gru(tmp_path, num_layers, use_abs, module):
    rel, words = _release(tmp_path / 'm', num_layers, use_abs, module, seed=5)
    enc = TextEncoder(str(tmp_path / 'm'))
    out = enc.encode(CAPTIONS)
    assert out.shape == (len(CAPTIONS), 32) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    if use_abs:
        assert (out >= 0).all()
    for caption, row in zip(CAPTIONS, out):
        ids = reference_word_ids(caption, words)
        assert enc.word_ids(caption) == ids
        np.testing.assert_allclose(row, reference_text_embed(rel.text_sd, ids, use_abs), atol=2e-6)


def test_same_row_alone_or_in_any_batch(encoder):
    batch = encoder.encode(CAPTIONS)
    for i, caption in enumerate(CAPTIONS):
        np.testing.assert_allclose(encoder.encode([caption])[0], batch[i], atol=1e-6)
    # Reordered, and padded next to a much longer caption.
    long_caption = ' '.join(['a dog on the beach'] * 12)
    shuffled = encoder.encode([long_caption] + CAPTIONS[::-1])
    np.testing.assert_allclose(shuffled[1:], batch[::-1], atol=1e-6)
    np.testing.assert_allclose(encoder.encode(CAPTIONS, batch_size=2), batch, atol=1e-6)


def test_unknown_non_ascii_and_empty(encoder, release_1layer):
    _, _, words = release_1layer
    table = {w: i + 4 for i, w in enumerate(words)}
    ids = encoder.word_ids('Café zebra')
    assert ids == [1, table['caf\u00e9'], 3, 2]
    assert encoder.word_ids('') == [1, 2]
    assert encoder.encode(['']).shape == (1, 32)


def test_numpy_string_arrays_accepted(encoder):
    ref = encoder.encode(CAPTIONS[:3])
    for arr in (np.array(CAPTIONS[:3]), np.array(CAPTIONS[:3], dtype=object)):
        np.testing.assert_allclose(encoder.encode(arr), ref, atol=1e-6)
    assert encoder.encode([]).shape == (0, 32)


def test_non_str_item_named(encoder):
    with pytest.raises(TypeError, match=r'caption 1 of the batch is a bytes'):
        encoder.encode(['fine', b'bytes'])
    with pytest.raises(TypeError, match=r'caption 2 .* int'):
        encoder.encode(np.array(['a', 'b', 3], dtype=object))
    with pytest.raises(TypeError, match='one str'):
        encoder.encode('a single caption')
    with pytest.raises(ValueError, match=r'shape \(2, 2\)'):
        encoder.encode(np.array([['a', 'b'], ['c', 'd']]))


def test_tokenizer_inner_sentence_periods(encoder):
    # punkt would split both sentences; the period of the first is split off too when the
    # vocabulary does not hold 'beach.'.
    assert tokenize('A dog on the beach. Two women', encoder.vocab) == \
        ['a', 'dog', 'on', 'the', 'beach', '.', 'two', 'women']
    # Without a vocabulary only the Treebank rules apply (final period only).
    assert tokenize('A dog on the beach. Two women') == ['a', 'dog', 'on', 'the', 'beach.', 'two', 'women']


# --------------------------------------------------------------------------- errors

def test_missing_vocabulary_lists_paths_and_command(tmp_path):
    write_py27_release_checkpoint(tmp_path / 'model_best.pth.tar', vocab_size=VOCAB_SIZE)
    with pytest.raises(VocabularyNotFoundError) as e:
        TextEncoder(str(tmp_path))
    msg = str(e.value)
    assert str(tmp_path / 'f30k_vocab.pkl') in msg and 'vseimageencoder download' in msg
    with pytest.raises(VocabularyNotFoundError) as e:
        TextEncoder(str(tmp_path), vocab_path='nowhere/v.pkl')
    assert os.path.join(os.getcwd(), 'nowhere', 'v.pkl') in str(e.value)


def test_vocab_path_relative_and_folder(tmp_path, release_1layer, monkeypatch):
    folder = release_1layer[0]
    monkeypatch.chdir(folder.parent)
    enc = TextEncoder(str(folder), vocab_path=folder.name)  # a folder, relative to the cwd
    assert enc.vocab_path == folder / 'f30k_vocab.pkl'
    enc = TextEncoder(str(folder), vocab_path=os.path.join(folder.name, 'f30k_vocab.pkl'))
    assert enc.vocab_path.name == 'f30k_vocab.pkl'


@pytest.mark.parametrize('content', [b'', b'not a pickle at all', pickle.dumps([1, 2, 3], 2),
                                     pickle.dumps({'word2idx': {'a': 0}}, 2)])
def test_not_a_vocabulary(tmp_path, release_1layer, content):
    bad = tmp_path / 'f30k_vocab.pkl'
    bad.write_bytes(content)
    with pytest.raises(NotAVocabularyError, match=str(bad)):
        TextEncoder(str(release_1layer[0]), vocab_path=str(bad))


@pytest.mark.parametrize('kind', ['top', 'nested', 'posix'])
def test_hostile_vocabulary_refused_without_running(tmp_path, release_1layer, kind):
    marker = tmp_path / 'pwned'
    bad = write_hostile_py27_vocab(tmp_path / 'f30k_vocab.pkl', marker, kind)
    with pytest.raises(UnsafeVocabularyError, match=str(bad)):
        TextEncoder(str(release_1layer[0]), vocab_path=str(bad))
    assert not marker.exists()


def test_vocabulary_differing_from_its_download_record(tmp_path, release_1layer):
    import json
    from vseimageencoder.release.vocab import VocabularyError
    from vseimageencoder.release.weights import record_path, sha256_of
    vocab = write_py27_vocab(tmp_path / 'f30k_vocab.pkl', vocab_words(VOCAB_SIZE - 4))
    record_path(vocab).write_text(json.dumps({'vocab': 'f30k', 'size': vocab.stat().st_size,
                                              'sha256': sha256_of(vocab)}))
    assert len(TextEncoder(str(release_1layer[0]), vocab_path=str(vocab)).vocab) == VOCAB_SIZE
    write_py27_vocab(vocab, vocab_words(VOCAB_SIZE - 4)[::-1])  # same size, other order
    with pytest.raises(VocabularyError, match='does not match its download record'):
        TextEncoder(str(release_1layer[0]), vocab_path=str(vocab))


def test_vocabulary_size_mismatch(tmp_path, release_1layer):
    small = write_py27_vocab(tmp_path / 'f30k_vocab.pkl', vocab_words(10))
    with pytest.raises(NotAVocabularyError) as e:
        TextEncoder(str(release_1layer[0]), vocab_path=str(small))
    assert '14 words' in str(e.value) and '%d rows' % VOCAB_SIZE in str(e.value)


def test_image_only_checkpoint(tmp_path):
    write_release_checkpoint(tmp_path / 'model_best.pth.tar', 'resnet18', embed_size=32, text=False)
    with pytest.raises(NotVSECheckpointError, match='no VSE\\+\\+ text encoder'):
        TextEncoder(str(tmp_path))


def test_text_options_disagreeing_with_weights(tmp_path):
    import torch
    write_release_checkpoint(tmp_path / 'model_best.pth.tar', 'resnet18', embed_size=32, vocab_size=40)
    ck = torch.load(str(tmp_path / 'model_best.pth.tar'), weights_only=False)
    ck['opt'].vocab_size = 41
    torch.save(ck, str(tmp_path / 'model_best.pth.tar'))
    with pytest.raises(NotVSECheckpointError, match='vocab_size=41, but the text weights say 40'):
        TextEncoder(str(tmp_path))


def test_precomp_checkpoint_text_half_loads(tmp_path):
    write_release_checkpoint(tmp_path / 'model_best.pth.tar', precomp=True, embed_size=32, vocab_size=VOCAB_SIZE)
    write_py27_vocab(tmp_path / 'f30k_precomp_vocab.pkl', vocab_words(VOCAB_SIZE - 4))
    enc = TextEncoder(str(tmp_path))
    assert enc.vocab_path.name == 'f30k_precomp_vocab.pkl'
    assert enc.encode(['a dog']).shape == (1, 32)


# --------------------------------------------------------------------------- jina 0.9 executor

@pytest.mark.jina09
def test_executor_encodes_like_the_core(release_1layer, encoder):
    from jina.executors.encoders.frameworks import BaseTorchEncoder
    from vseimageencoder import VSETextEncoder

    ex = VSETextEncoder(model_path=str(release_1layer[0]), metas={'batch_size': 2})
    assert isinstance(ex, BaseTorchEncoder)
    out = ex.encode(np.array(CAPTIONS))
    np.testing.assert_allclose(out, encoder.encode(CAPTIONS), atol=1e-6)
    assert ex.encode(np.array([], dtype=str)).shape == (0, 32)


@pytest.mark.jina09
def test_executor_deprecated_path(release_1layer, caplog):
    from vseimageencoder import VSETextEncoder
    ex = VSETextEncoder(path=str(release_1layer[0]))
    assert ex.model_path == str(release_1layer[0])
    assert ex.encode(['a dog']).shape == (1, 32)


@pytest.mark.jina09
def test_import_registers_both_yaml_tags(release_1layer, repo_root):
    """In a new interpreter: `import vseimageencoder` alone, then YAMLs naming both tags."""
    code = (
        'import sys; sys.path.insert(0, %r)\n'
        'import vseimageencoder\n'
        'from jina.executors import BaseExecutor\n'
        'img = BaseExecutor.load_config("!VSEImageEncoder\\nwith: {model_path: %s}")\n'
        'txt = BaseExecutor.load_config("!VSETextEncoder\\nwith: {model_path: %s}")\n'
        'print("RESULT", type(img).__module__, type(txt).__module__, txt.encode(["a dog"]).shape)\n'
        % (str(repo_root), release_1layer[0], release_1layer[0]))
    r = subprocess.run([sys.executable, '-c', code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=120, cwd=str(repo_root))
    assert r.returncode == 0, r.stderr[-3000:]
    result = [l for l in r.stdout.splitlines() if l.startswith('RESULT ')]  # jina logs to stdout
    assert result and result[-1].split()[1:3] == ['vseimageencoder.jina09.executor', 'vseimageencoder.jina09.executor']
    assert result[-1].endswith('(1, 32)')


def test_a_precomputed_feature_model_is_refused_where_pixels_are_embedded(tmp_path):
    # encode, index, search --image and serve all ask the core this one question.
    from vseimageencoder.encoders import ImageEncoder
    path = tmp_path / 'precomp' / 'model_best.pth.tar'
    write_release_checkpoint(path, precomp=True, embed_size=16, img_dim=32)
    core = ImageEncoder(str(path))
    with pytest.raises(ValueError, match=r'precomputed-feature model \(f30k_precomp\); indexing image files needs'):
        core.require_backbone('indexing image files')
    write_release_checkpoint(tmp_path / 'cnn' / 'model_best.pth.tar', 'resnet18', embed_size=16)
    ImageEncoder(str(tmp_path / 'cnn')).require_backbone('indexing image files')  # no error
