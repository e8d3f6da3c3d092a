"""A fix for jina 3.34's HTTP Deployments, which never exit, kept out of
:mod:`vseimageencoder.jina3` so that the processes jina spawns can import it cheaply.
"""
import asyncio


def fix_http_load_balancer() -> None:
    """Make jina 3's HTTP load balancer stop serving when it is shut down (idempotent).

    jina 3.34's ``LoadBalancingServer.run_server`` awaits aiohttp's ``_run_app``, which serves
    until cancelled, and its ``shutdown`` cancels nothing: on SIGTERM jina waits for
    ``run_server`` for ever, the Deployment blocks in ``join`` and keeps its port (gRPC and
    FastAPI servers return, so only HTTP hangs). Here ``run_server`` becomes a task that
    ``shutdown`` cancels; aiohttp then closes its sockets in ``_run_app``'s clean-up.
    """
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
    :func:`fix_http_load_balancer` applied first in the pod's own process (pods started with
    ``spawn`` are fresh interpreters that do not inherit the patched class)."""
    fix_http_load_balancer()
    from jina.serve.executors.run import run
    return run(*args, **kwargs)
