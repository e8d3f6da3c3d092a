"""Start jina 3 Deployments, Flows and `jina executor` processes for tests and benchmarks,
and make sure nothing of them outlives the block.

jina 3.34's HTTP load balancer (the gateway of every HTTP Deployment) never stopped on its
own: the Deployment waited 60 s and then for ever. vseimageencoder.jina3.local's
fix_http_shutdown (installed by keep_jina_local, which the test plugin calls) fixes that;
:func:`started` checks it: a block whose load balancer still runs ``exit_within`` seconds
into the exit fails, after the balancer has been ended by PID so that the run goes on. Every process started
below this one during the block is ended by PID afterwards.
"""
import os
import signal
import socket
import subprocess
import threading
import time
from contextlib import contextmanager

from tests.support.processes import descendants, stop_process_group  # noqa: F401  (re-exported for the tests)


def _kill(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _is_resource_tracker(pid: int) -> bool:
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return b'resource_tracker' in f.read()
    except OSError:
        return True


def _rescue_load_balancer(orchestrator) -> bool:
    """End an HTTP Deployment's load balancer by PID and tell its pod it has shut down, so
    that the Deployment's exit can go on; whether there was one to end."""
    lb = getattr(orchestrator, 'gateway_pod', None)
    worker = getattr(lb, 'worker', None) if lb is not None else None
    if worker is None or not getattr(orchestrator, '_gateway_load_balancer', False) or not worker.pid:
        return False
    if not worker.is_alive():  # it stopped; the rest of the exit is only slow
        return False
    _kill([worker.pid])
    lb.is_shutdown.set()
    return True


@contextmanager
def started(orchestrator, exit_within: float = 45.0):
    """``with started(Deployment(...)) as d:`` -- enter; on the way out, an HTTP Deployment's
    load balancer must have ended within ``exit_within`` seconds (else it is ended by PID and
    AssertionError; the rest of an exit may be slow on a loaded machine), then end any process
    the block left behind, by PID."""
    before = set(descendants(os.getpid()))
    orchestrator.__enter__()
    failed = False
    try:
        yield orchestrator
    except BaseException:
        failed = True
        raise
    finally:
        stuck = []
        watchdog = threading.Timer(exit_within, lambda: stuck.append(_rescue_load_balancer(orchestrator)))
        watchdog.daemon = True
        watchdog.start()
        t0 = time.monotonic()
        try:
            orchestrator.__exit__(None, None, None)
        finally:
            watchdog.cancel()
            # multiprocessing's resource tracker is shared by the whole process: leave it.
            _kill(p for p in descendants(os.getpid()) if p not in before and not _is_resource_tracker(p))
        if stuck and stuck[0] and not failed:
            raise AssertionError('the HTTP load balancer of the %s was still running %.0f s into its exit '
                                 '(ended by PID; the exit took %.0f s)'
                                 % (type(orchestrator).__name__, exit_within, time.monotonic() - t0))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_grpc_ready(port: int, timeout: float, proc: subprocess.Popen = None) -> float:
    """Seconds until the gRPC health check on 127.0.0.1:port answers SERVING (what jina 3's
    executor serves; a Client's is_flow_ready asks a gateway-only method)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError('the executor process exited with %s before it was ready' % proc.returncode)
        try:
            with grpc.insecure_channel('127.0.0.1:%d' % port) as ch:
                r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return time.monotonic() - t0
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    raise TimeoutError('nothing served gRPC health on 127.0.0.1:%d within %.0f s' % (port, timeout))
