"""A fix for jina 3.34 that must reach processes jina spawns, kept out of
:mod:`vseimageencoder.jina3` so that importing it costs no torch and no Executors.

**HTTP Deployments never exit.** A Deployment with ``protocol='http'`` puts an aiohttp load
balancer (``LoadBalancingServer``) in front of its replicas. Its ``run_server`` awaits
aiohttp's ``_run_app``, which serves until it is cancelled (it sleeps in one-hour steps), and
its ``shutdown`` only sets a flag and closes the connections to the replicas: nothing
cancels ``_run_app``. On SIGTERM jina's runtime runs ``shutdown`` and then waits for
``run_server`` to return, for ever; the pod process never sets its shutdown event, the
Deployment reports "Shutdown signal was not received for 60 seconds" (``timeout_ctrl``) and
then blocks in ``join``, and the process keeps its port. The gRPC and FastAPI servers
return from ``run_server`` when shut down, which is why only HTTP Deployments hang.

:func:`fix_http_load_balancer` makes ``run_server`` a task that ``shutdown`` cancels (aiohttp
then closes its sockets in ``_run_app``'s own clean-up). :func:`run_pod` is jina's pod entry
point with the fix applied first, for pods started with the ``spawn`` method (fresh
interpreters that do not inherit a patched class); :mod:`vseimageencoder.jina3.local`
installs both.
"""
import asyncio


def fix_http_load_balancer() -> None:
    """Make jina 3's HTTP load balancer stop serving when it is shut down (idempotent)."""
    from jina.serve.runtimes.servers.load_balancer import LoadBalancingServer

    if getattr(LoadBalancingServer, '_vse_stops_on_shutdown', False):
        return
    jina_shutdown = LoadBalancingServer.shutdown

    async def run_server(self):
        from aiohttp import web

        self._vse_serving = asyncio.ensure_future(
            web._run_app(app=self.app, host=self.host, port=self.port))
        try:
            await self._vse_serving
        except asyncio.CancelledError:
            if not self._vse_serving.cancelled():  # this coroutine itself was cancelled
                raise

    async def shutdown(self):
        serving = getattr(self, '_vse_serving', None)
        if serving is not None and not serving.done():
            serving.cancel()  # stop accepting, close the listening socket (aiohttp's clean-up)
            await asyncio.wait([serving])
        await jina_shutdown(self)

    run_server.__doc__ = LoadBalancingServer.run_server.__doc__
    shutdown.__doc__ = jina_shutdown.__doc__
    LoadBalancingServer.run_server = run_server
    LoadBalancingServer.shutdown = shutdown
    LoadBalancingServer._vse_stops_on_shutdown = True


def run_pod(*args, **kwargs):
    """jina's pod process entry point (``jina.serve.executors.run.run``), with
    :func:`fix_http_load_balancer` applied first in the pod's own process."""
    fix_http_load_balancer()
    from jina.serve.executors.run import run
    return run(*args, **kwargs)
