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
    ('vseimageencoder.training', ['contrastive_loss']),
    ('vseimageencoder.images.folders', ['expand_paths', 'walk']),
    ('vseimageencoder.images.transform', ['transform', 'transform_batch']),
    # The original paths of the image functions, kept by a re-export.
    ('vseimageencoder.preprocess', ['expand_paths', 'transform', 'transform_batch', 'read_image',
                                    'check_image_batch', 'ImageReadError', 'DEFAULT_RESIZE']),
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


def _found(pattern, text, where):
    found = re.findall(pattern, text, re.M)
    assert found, '%s: nothing matches %s (has its form changed?)' % (where, pattern)
    return found


def test_files_the_yamls_manifest_and_dockerfiles_name_exist():
    for yml, tag in (('config.yml', '!VSEImageEncoder'), ('text.yml', '!VSETextEncoder')):
        text = (REPO / yml).read_text()
        assert text.startswith(tag + '\n'), '%s no longer starts with %s' % (yml, tag)
        for path in _found(r'^\s*-\s*(vseimageencoder/\S+\.py)\s*$', text, yml):
            assert (REPO / path).is_file(), '%s names %s' % (yml, path)
    manifest = (REPO / 'manifest.yml').read_text()
    assert _found(r'^version:\s*["\']?(\d[^"\'\s]*)', manifest, 'manifest.yml') == [
        importlib.import_module('vseimageencoder').__version__]
    for dockerfile in ('Dockerfile', 'Dockerfile.jina3'):
        text = (REPO / dockerfile).read_text()
        for path in _found(r'COPY (vseimageencoder\S*)', text, dockerfile):
            assert (REPO / path).exists(), '%s copies %s' % (dockerfile, path)
        for module in re.findall(r'"-m", "([\w.]+)"', text):
            assert (REPO / (module.replace('.', '/') + '.py')).is_file(), '%s runs %s' % (dockerfile, module)
    ymls = sorted((REPO / 'vseimageencoder' / 'jina3').glob('*.yml'))
    assert {y.name for y in ymls} >= {'image.yml', 'text.yml'}
    for yml in ymls:
        for module in _found(r'^\s*-\s*(vseimageencoder[\w.]*)\s*$', yml.read_text(), yml.name):
            assert (REPO / module.replace('.', '/')).is_dir() or \
                (REPO / (module.replace('.', '/') + '.py')).is_file(), '%s names %s' % (yml.name, module)


@pytest.mark.jina09
def test_jina09_paths():
    from vseimageencoder import VSEImageEncoder, VSETextEncoder
    from vseimageencoder._jina09 import disable_phone_home
    from vseimageencoder.jina09.offline import disable_phone_home as offline_switch
    assert disable_phone_home is offline_switch
    import vseimageencoder.executor as shim
    assert shim.VSEImageEncoder is VSEImageEncoder and shim.VSETextEncoder is VSETextEncoder
    for module in ('vseimageencoder.jina09_cli', 'vseimageencoder.jina09.cli'):
        r = subprocess.run([sys.executable, '-m', module, '--version'], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, timeout=300, cwd=str(REPO))
        assert r.returncode == 0 and '0.9.33' in r.stdout, (module, r.stdout[-2000:])


@pytest.mark.jina3
def test_jina3_paths():
    from vseimageencoder.jina3 import (CrossModalDoc, ImageDoc, SearchDoc, TextDoc, VSEImageEncoder,  # noqa: F401
                                       VSEMatchMerger, VSESearcher, VSETextEncoder)
    from vseimageencoder.jina3.local import fix_http_shutdown, keep_jina_local  # noqa: F401
