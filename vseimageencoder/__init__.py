"""VSE++ image and caption embeddings (Faghri et al., BMVC 2018), with and without jina; where
jina 0.9 is installed, importing this package registers the executors' YAML tags.
"""
from vseimageencoder._version import __version__
from vseimageencoder.jina09.yaml_tags import install as _install_yaml_tags

__all__ = ['VSEImageEncoder', 'VSETextEncoder', '__version__']

_EXECUTORS = ('VSEImageEncoder', 'VSETextEncoder')

_install_yaml_tags()


def __getattr__(name):
    # Lazy where jina 0.9 is absent, so that the jina-free modules import without it; the
    # executor module then raises an ImportError saying what to install.
    if name in _EXECUTORS:
        from vseimageencoder.jina09 import executor
        return getattr(executor, name)
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
