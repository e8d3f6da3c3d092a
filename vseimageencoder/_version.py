"""The package version, read from manifest.yml, the one place that holds it."""
import re
from pathlib import Path


def _read_version() -> str:
    try:  # installed: the metadata setup.py wrote from manifest.yml
        from importlib.metadata import version, PackageNotFoundError
    except ImportError:  # Python 3.7
        version, PackageNotFoundError = None, Exception
    manifest = Path(__file__).resolve().parent.parent / 'manifest.yml'
    if manifest.is_file():  # a source checkout: the manifest itself
        return version_from_manifest(manifest.read_text(encoding='utf-8'))
    if version is not None:
        try:
            return version('vseimageencoder')
        except PackageNotFoundError:
            pass
    return '0+unknown'


def version_from_manifest(text: str) -> str:
    m = re.search(r'^version:\s*["\']?([0-9][^"\'\s#]*)', text, re.M)
    if not m:
        raise ValueError('manifest.yml has no top-level version: field')
    return m.group(1)


__version__ = _read_version()
