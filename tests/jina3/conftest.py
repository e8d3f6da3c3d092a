"""Fixtures of the jina 3 tests (every module here is marked jina3). Where jina 3 is not
installed tests/conftest.py does not collect this folder, and nothing here is defined (the
modules import jina 3 and docarray at module level)."""
from importlib.metadata import PackageNotFoundError, version
from types import SimpleNamespace


def _jina3_installed() -> bool:
    try:
        return version('jina').startswith('3.')
    except PackageNotFoundError:
        return False


if not _jina3_installed():
    collect_ignore_glob = ['*']
else:
    import numpy as np
    import pytest

    from tests.jina3.plugin import setup_once

    setup_once()  # done already where tests/conftest.py loaded the plugin; in case it did not

    WORDS = 36  # + the 4 special tokens = the checkpoint's vocab_size (40)

    @pytest.fixture(scope='session')
    def release(tmp_path_factory):
        """A resnet18 VSE++ checkpoint with both towers in the release layout, and its
        vocabulary beside it as VSE++ pickled it (f30k_vocab.pkl)."""
        from tests.support.py27_pickle import vocab_words, write_py27_vocab
        from tests.support.vsepp_release import release_text_state_dict, write_release_checkpoint

        folder = tmp_path_factory.mktemp('release')
        ckpt = folder / 'model_best.pth.tar'
        backbone, fc = write_release_checkpoint(ckpt, 'resnet18', embed_size=256, seed=5,
                                                vocab_size=WORDS + 4, word_dim=16)
        words = vocab_words(WORDS)
        write_py27_vocab(folder / 'f30k_vocab.pkl', words)
        return SimpleNamespace(folder=folder, checkpoint=ckpt, backbone=backbone, fc=fc,
                               text_sd=release_text_state_dict(ckpt), words=words)

    @pytest.fixture(scope='session')
    def pixels():
        """Six uint8 RGB images of three sizes."""
        rng = np.random.RandomState(7)
        return [rng.randint(0, 256, (h, w, 3), dtype=np.uint8)
                for h, w in ((64, 80), (90, 60), (64, 80), (120, 120), (50, 70), (90, 60))]
