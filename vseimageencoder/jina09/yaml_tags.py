"""The ``!VSEImageEncoder`` and ``!VSETextEncoder`` YAML tags, registered when jina 0.9 is
imported and not before, so that the jina-free parts never pay for importing jina."""
import logging
import sys

from vseimageencoder.jina09.offline import jina09_installed


def _register_yaml_tags() -> None:
    from vseimageencoder.jina09 import executor  # noqa: F401  (defining the classes registers their tags)


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
                    'with jina (%s: %s); import vseimageencoder.jina09.executor to see why',
                    type(e).__name__, e)

        if run_package is None or not hasattr(loader, '__dict__'):
            # A loader this cannot wrap (no exec_module, or no instance attributes): jina
            # imports untouched, without the tags.
            _remove_hooks()
            logging.getLogger(__name__).warning(
                'cannot register the !VSEImageEncoder and !VSETextEncoder YAML tags when jina '
                'is imported (%s); import vseimageencoder.jina09.executor before loading YAMLs', type(loader).__name__)
        else:
            loader.exec_module = exec_module
        return spec


def _is_hook(finder) -> bool:
    return getattr(finder, '_vse_after_jina', False) is True


def _remove_hooks() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not _is_hook(f)]


def install() -> None:
    """Register the YAML tags now if jina 0.9 is imported, or the moment it is; nothing where
    jina 0.9 is not installed."""
    if not jina09_installed():
        return
    if 'jina' in sys.modules:
        _register_yaml_tags()
    else:
        _remove_hooks()  # one an earlier copy of this module left (a reload)
        sys.meta_path.insert(0, _AfterJinaImport())
