"""The version lives in manifest.yml alone (vseimageencoder/_version.py reads it); jina 0.9's
hub tag that carries it: tests/jina09/test_hub.py."""
from vseimageencoder import __version__


def test_version_has_one_home(repo_root):
    from vseimageencoder._version import version_from_manifest
    assert version_from_manifest((repo_root / 'manifest.yml').read_text()) == __version__ == '0.0.6'
    for name in ('setup.py', 'Dockerfile', 'config.yml'):
        path = repo_root / name
        if path.exists():
            assert '0.0.6' not in path.read_text(), '%s repeats the version' % name
