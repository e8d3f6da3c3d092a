"""The front-door scripts: --help prints usage and exits 0; bad arguments are named; a
build whose base image is missing says how to get it, before building anything."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args, env=None, timeout=60):
    return subprocess.run([str(REPO / 'scripts' / args[0])] + list(args[1:]), cwd=str(REPO),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout, env=env)


@pytest.mark.parametrize('script', ['setup.sh', 'test.sh', 'build-image.sh'])
@pytest.mark.parametrize('flag', ['--help', '-h'])
def test_help_prints_usage_and_exits_0(script, flag):
    r = _run(script, flag)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith('usage: scripts/' + script), r.stdout
    assert r.stderr == ''


def test_setup_names_an_unknown_option():
    r = _run('setup.sh', '--frobnicate')
    assert r.returncode == 2
    assert 'unknown option --frobnicate' in r.stderr


def test_setup_refuses_a_python_that_is_not_one(tmp_path):
    r = _run('setup.sh', '--jina3', '--no-system', '--python3', str(tmp_path / 'nopython'))
    assert r.returncode == 1
    assert 'nopython is not a runnable Python 3.10+' in r.stderr
    assert not (tmp_path / 'nopython').exists()


@pytest.mark.skipif(shutil.which('podman') is None, reason='podman is not installed')
@pytest.mark.parametrize('flag,base', [([], 'python:3.9'), (['--jina3'], 'python:3.11-slim')])
def test_build_with_a_missing_base_image_says_how_to_get_it(tmp_path, flag, base):
    # An empty private store (real podman, nothing in it), so the default base is missing.
    conf = tmp_path / 'storage.conf'
    conf.write_text('[storage]\ndriver = "vfs"\nrunroot = "%s"\ngraphroot = "%s"\n'
                    % (tmp_path / 'run', tmp_path / 'graph'))
    env = dict(os.environ, BUILDER='podman', CONTAINERS_STORAGE_CONF=str(conf))
    if not flag and not (REPO / '.venv' / 'bin' / 'python').exists():
        pytest.skip('the 0.9.33 tag is computed with .venv, which is missing')
    r = _run('build-image.sh', *flag, env=env, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'base image %s is not in podman' % base in r.stderr
    assert 'podman pull %s' % base in r.stderr
    assert 'STEP' not in r.stdout + r.stderr  # refused before building
