"""Start jina 3 Deployments, Flows and `jina executor` processes for tests and benchmarks,
and make sure nothing of them outlives the block.

jina 3.34's HTTP load balancer (the gateway of an HTTP Deployment with replicas) ignores
the shutdown request: the Deployment waits timeout_ctrl seconds and then for ever for it,
and the process keeps its port. It is ended here by its own PID before the Deployment
closes; every process started below this one during the block is ended by PID afterwards.
"""
import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager

from tests.processes import descendants, stop_process_group  # noqa: F401  (re-exported for the tests)


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


@contextmanager
def started(orchestrator):
    """``with started(Deployment(...)) as d:`` -- enter, and on the way out end the HTTP load
    balancer and any process the block left behind, by PID."""
    before = set(descendants(os.getpid()))
    orchestrator.__enter__()
    try:
        yield orchestrator
    finally:
        lb = getattr(orchestrator, 'gateway_pod', None)
        worker = getattr(lb, 'worker', None) if lb is not None else None
        if worker is not None and getattr(orchestrator, '_gateway_load_balancer', False) and worker.pid:
            _kill([worker.pid])
            # Its shutdown signal can no longer come; the pod's own wait is timeout_ctrl of
            # the gateway's arguments (60 s), not of the Deployment's.
            lb._timeout_ctrl = 1
        orchestrator.__exit__(None, None, None)
        # multiprocessing's resource tracker is shared by the whole process: leave it.
        _kill(p for p in descendants(os.getpid()) if p not in before and not _is_resource_tracker(p))


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
