"""Keeps jina 3 on 127.0.0.1 (see ../../shared notes: telemetry, public-IP and registry lookups).

:func:`environment` gives the variables every jina 3 process of the tests gets (child
processes inherit them); :func:`disable_phone_home` replaces, in the calling process, the
lookups jina makes when a Deployment/Flow starts or exports manifests. The netguard
sitecustomize (on PYTHONPATH) refuses and records anything that slips through.
"""
import os
from pathlib import Path

NETGUARD_DIR = Path(__file__).resolve().parent / 'netguard'
GATEWAY_IMAGE = 'jinaai/jina:3.34.0-py311-standard'


def environment(home: Path, guard_log: Path) -> dict:
    repo = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join([str(NETGUARD_DIR), repo] + ([os.environ['PYTHONPATH']]
                                                      if os.environ.get('PYTHONPATH') else []))
    return {
        'JINA_OPTOUT_TELEMETRY': '1',
        'JINA_HIDE_SURVEY': '1',
        # The manifests name this gateway image instead of asking the hub API for one.
        'JINA_GATEWAY_IMAGE': GATEWAY_IMAGE,
        'JINA_HUB_NO_IMAGE_REBUILD': '1',
        # jina writes ~/.cache/jina at import and keeps lock files there.
        'HOME': str(home),
        # Replicas and gateways in fresh interpreters: the test process runs torch, and a
        # forked child that uses torch again can deadlock in OpenMP.
        'JINA_MP_START_METHOD': 'spawn',
        'PYTHONPATH': path,
        'VSE_NETGUARD': '1',
        'VSE_NETGUARD_LOG': str(guard_log),
    }


def disable_phone_home() -> None:
    from vseimageencoder.jina3.local import keep_jina_local
    keep_jina_local(GATEWAY_IMAGE)
