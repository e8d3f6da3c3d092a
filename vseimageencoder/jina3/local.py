"""Keeping a jina 3 process from reaching beyond this machine (telemetry, public-IP lookups,
hub queries), and letting HTTP Deployments exit.
"""
import os

#: The gateway image named in exported manifests instead of asking jina's hub API.
GATEWAY_IMAGE = 'jinaai/jina:3.34.0-py311-standard'


def keep_jina_local(gateway_image: str = GATEWAY_IMAGE) -> None:
    """Switch off jina 3's telemetry, its public-IP lookup at every Deployment/Flow start and
    its Docker Hub / hub API queries when writing Kubernetes or docker-compose manifests, and
    install :func:`fix_http_shutdown`. Call it before jina is imported (child processes
    inherit the environment variables), in the process that starts Deployments/Flows or
    exports manifests."""
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
    fix_http_shutdown()


def fix_http_shutdown() -> None:
    """Make ``Deployment(protocol='http')`` (and its ``with`` block) end promptly: the HTTP
    load balancer of jina 3.34 otherwise never stops (:mod:`vseimageencoder._jina3_fixes`
    says why), the Deployment waits 60 s
    (``timeout_ctrl``) and then for ever, and the balancer keeps its port.

    Patches the balancer in this process (pods started by ``fork`` inherit it) and jina's
    pod entry point, so that pods started by ``spawn`` (``JINA_MP_START_METHOD=spawn``)
    apply it in their own interpreter. Call it in the process that starts Deployments,
    before they start; :func:`keep_jina_local` does.
    """
    import jina.orchestrate.pods as pods

    from vseimageencoder._jina3_fixes import fix_http_load_balancer, run_pod

    fix_http_load_balancer()
    pods.run = run_pod
