"""jina 0.9.33's own hub validation of manifest.yml, and the image tag it computes."""
import os
import subprocess
import sys

import pytest

from vseimageencoder import __version__

pytestmark = pytest.mark.jina09

TAG = 'jinahub/pod.encoder.vseimageencoder:0.0.6-0.9.33'


def test_hub_dry_run_tag(repo_root):
    from jina.docker.hubio import HubIO
    from jina.parsers.hub import set_hub_build_parser

    args = set_hub_build_parser().parse_args([str(repo_root), '--dry-run'])
    hub = HubIO(args)
    summary = hub.dry_run()
    assert summary['is_build_success'], summary
    assert hub.tag == TAG
    assert hub.tag.split(':')[1].startswith(__version__ + '-')


def test_hub_cli_dry_run_has_no_warnings(repo_root):
    env = dict(os.environ, PYTHONPATH=str(repo_root))
    out = subprocess.run([sys.executable, '-m', 'tests.support.jina09_offline', 'hub', 'build', str(repo_root),
                          '--dry-run'], cwd=str(repo_root), env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    assert out.returncode == 0, out.stdout
    assert 'completeness check' in out.stdout
    assert 'missing' not in out.stdout, out.stdout
    assert 'is not a valid' not in out.stdout
