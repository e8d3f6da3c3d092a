"""VSE++ image and caption embeddings (Faghri et al., "VSE++: Improving Visual-Semantic
Embeddings with Hard Negatives", BMVC 2018), for jina 0.9.x and without it.

``from vseimageencoder import VSEImageEncoder, VSETextEncoder`` gives the jina 0.9.33
executors; :mod:`vseimageencoder.encoders` holds the jina-free ``ImageEncoder`` and
``TextEncoder`` they wrap, and the model, checkpoint, vocabulary and preprocessing modules
import no jina.

Where jina 0.9 is installed, importing this package registers both executors' YAML tags
(``!VSEImageEncoder``, ``!VSETextEncoder``), so a YAML loaded afterwards gets these classes
and not the older ones of the same names that jina 0.9.33 bundles: at once if jina is
already imported, else the moment jina is, so that the jina-free modules and the command
line do not pay for importing jina (0.6 s) when they do not use it. Elsewhere (jina 3, or no
jina) nothing of jina is imported.
"""
import logging
import sys

from ._version import __version__

__all__ = ['VSEImageEncoder', 'VSETextEncoder', '__version__']

_EXECUTORS = ('VSEImageEncoder', 'VSETextEncoder')


def _jina09_installed() -> bool:
    # Asks the installed metadata, not jina itself: importing jina 3 here would be slow and
    # wrong, and a missing jina must cost nothing.
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # Python 3.7
        return False
    try:
        return version('jina').startswith('0.9.')
    except PackageNotFoundError:
        return False


def _register_yaml_tags() -> None:
    from . import executor  # noqa: F401  (defining the classes registers their tags)


class _AfterJinaImport:
    """A meta path entry that finds nothing itself: when ``jina`` is about to be imported it
    asks the finders after it for the spec and has the YAML tags registered right after
    jina's package has run; then it leaves ``sys.meta_path``. jina keeps its own loader (its
    resources are found through the loader's type): only that one call is wrapped. Entries
    are told apart by an attribute, not the class, so one left by an earlier copy of this
    module (a reload) is skipped and removed too."""

    _vse_after_jina = True

    def find_spec(self, fullname, path=None, target=None):
        if fullname != 'jina':
            return None
        for finder in list(sys.meta_path):
            find = getattr(finder, 'find_spec', None)
            if _is_hook(finder) or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        run_package = getattr(loader, 'exec_module', None)

        def exec_module(module):
            try:
                run_package(module)
            finally:
                loader.__dict__.pop('exec_module', None)
            _remove_hooks()  # jina has run: later imports find it in sys.modules
            try:
                _register_yaml_tags()
            except Exception as e:  # never break `import jina` itself
                logging.getLogger(__name__).warning(
                    'could not register the !VSEImageEncoder and !VSETextEncoder YAML tags '
                    'with jina (%s: %s); import vseimageencoder.executor to see why',
                    type(e).__name__, e)

        if run_package is None or not hasattr(loader, '__dict__'):
            # A loader this cannot wrap (no exec_module, or no instance attributes): jina
            # imports untouched, without the tags.
            _remove_hooks()
            logging.getLogger(__name__).warning(
                'cannot register the !VSEImageEncoder and !VSETextEncoder YAML tags when jina '
                'is imported (%s); import vseimageencoder.executor before loading YAMLs', type(loader).__name__)
        else:
            loader.exec_module = exec_module
        return spec


def _is_hook(finder) -> bool:
    return getattr(finder, '_vse_after_jina', False) is True


def _remove_hooks() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not _is_hook(f)]


if _jina09_installed():
    if 'jina' in sys.modules:
        _register_yaml_tags()
    else:
        _remove_hooks()  # one an earlier copy of this module left (a reload)
        sys.meta_path.insert(0, _AfterJinaImport())


def __getattr__(name):
    # Lazy where jina 0.9 is absent, so that the jina-free modules import without it; the
    # executor module then raises an ImportError saying what to install.
    if name in _EXECUTORS:
        from . import executor
        return getattr(executor, name)
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
