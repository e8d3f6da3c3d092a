"""Keep a jina 3 process from reaching beyond this machine.

jina 3 sends telemetry, looks up its public IP at every Deployment/Flow start
(api.ipify.org, ident.me, checkip.amazonaws.com) and, when it writes Kubernetes or
docker-compose manifests, asks Docker Hub and its hub API for image tags. Call
:func:`keep_jina_local` before jina is imported (for the environment variables, which child
processes inherit) in the process that starts Deployments/Flows or exports manifests.
"""
import os

#: The gateway image named in exported manifests instead of asking jina's hub API.
GATEWAY_IMAGE = 'jinaai/jina:3.34.0-py311-standard'


def keep_jina_local(gateway_image: str = GATEWAY_IMAGE) -> None:
    os.environ.setdefault('JINA_OPTOUT_TELEMETRY', '1')
    os.environ.setdefault('JINA_HIDE_SURVEY', '1')
    os.environ.setdefault('JINA_GATEWAY_IMAGE', gateway_image)
    os.environ.setdefault('JINA_HUB_NO_IMAGE_REBUILD', '1')

    import jina
    import jina.helper
    import jina.orchestrate.deployments.config.docker_compose as compose
    import jina.orchestrate.deployments.config.helper as config_helper
    import jina.orchestrate.deployments.config.k8s as k8s
    import jina.orchestrate.orchestrator as orchestrator

    for mod in (jina.helper, orchestrator):
        mod.get_public_ip = lambda *a, **k: None
        # A UDP connect towards 10.255.255.255 (no packet is sent, but it is not loopback).
        mod.get_internal_ip = lambda *a, **k: '127.0.0.1'
    for mod in (config_helper, k8s, compose):
        # Docker Hub has jinaai/jina:<version> for every release.
        mod.get_base_executor_version = lambda: jina.__version__
