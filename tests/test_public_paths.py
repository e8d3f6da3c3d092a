"""Every path a user, a YAML file, a Dockerfile or the docs name still imports or runs."""
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: (module, attributes) the README and docs/ tell users to import, jina-free.
CORE_PATHS = [
    ('vseimageencoder', ['__version__']),
    ('vseimageencoder.encoders', ['ImageEncoder', 'TextEncoder', 'check_precision']),
    ('vseimageencoder.index', ['open_index', 'update_index', 'Index', 'Writer', 'checkpoint_provenance',
                               'load_pair', 'escape', 'unescape', 'ProvenanceMismatchError']),
    ('vseimageencoder.serve', ['SearchService', 'create_app']),
    ('vseimageencoder.training', ['train', 'default_options', 'evaluate_embeddings', 'build_vocabulary']),
    ('vseimageencoder.cli', ['main']),
]


@pytest.mark.parametrize('module,names', CORE_PATHS, ids=[m for m, _ in CORE_PATHS])
def test_core_paths_import(module, names):
    m = importlib.import_module(module)
    missing = [n for n in names if not hasattr(m, n)]
    assert not missing, '%s lacks %s' % (module, missing)


def test_command_line_entry_points():
    for argv in (['-m', 'vseimageencoder', '--help'], ['-m', 'vseimageencoder', '--version']):
        r = subprocess.run([sys.executable] + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=120, cwd=str(REPO))
        assert r.returncode == 0, r.stderr
    setup = (REPO / 'setup.py').read_text(encoding='utf-8')
    assert "'vseimageencoder = vseimageencoder.cli:main'" in setup


def test_files_the_yamls_and_dockerfiles_name_exist():
    for yml in ('config.yml', 'text.yml'):
        for path in re.findall(r'^\s*-\s*(vseimageencoder/\S+\.py)\s*$', (REPO / yml).read_text(), re.M):
            assert (REPO / path).is_file(), '%s names %s' % (yml, path)
    for dockerfile in ('Dockerfile', 'Dockerfile.jina3'):
        text = (REPO / dockerfile).read_text()
        for path in re.findall(r'COPY (vseimageencoder/\S+)', text):
            assert (REPO / path).exists(), '%s copies %s' % (dockerfile, path)
        for module in re.findall(r'"-m", "([\w.]+)"', text):
            assert (REPO / (module.replace('.', '/') + '.py')).is_file(), '%s runs %s' % (dockerfile, module)
    for yml in (REPO / 'vseimageencoder' / 'jina3').glob('*.yml'):
        for module in re.findall(r'^\s*-\s*(vseimageencoder[\w.]*)\s*$', yml.read_text(), re.M):
            assert (REPO / module.replace('.', '/')).is_dir() or \
                (REPO / (module.replace('.', '/') + '.py')).is_file(), '%s names %s' % (yml.name, module)


@pytest.mark.jina09
def test_jina09_paths():
    from vseimageencoder import VSEImageEncoder, VSETextEncoder
    import vseimageencoder.executor as shim
    assert shim.VSEImageEncoder is VSEImageEncoder and shim.VSETextEncoder is VSETextEncoder
    for module in ('vseimageencoder.jina09_cli', 'vseimageencoder.jina09.cli'):
        r = subprocess.run([sys.executable, '-m', module, '--version'], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, timeout=300, cwd=str(REPO))
        assert r.returncode == 0 and '0.9.33' in r.stdout, (module, r.stdout[-2000:])


@pytest.mark.jina3
def test_jina3_paths():
    from vseimageencoder.jina3 import (ImageDoc, TextDoc, VSEImageEncoder, VSEMatchMerger, VSESearcher,  # noqa: F401
                                       VSETextEncoder)
