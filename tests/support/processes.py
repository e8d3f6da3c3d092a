"""Finding and stopping the processes a test started (Linux /proc; no jina), for both the
jina 0.9 and the jina 3 suites: jina forks or spawns its pods, gateways and load balancers,
and none may outlive the test that started them."""
import os
import signal
import subprocess
from typing import List


def descendants(pid: int) -> List[int]:
    """Every live process below ``pid``."""
    children = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                stat = f.read()
        except OSError:
            continue
        # the command name (field 2) may hold spaces; the parent pid follows its ')'
        ppid = int(stat.rsplit(')', 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop_process_group(proc: subprocess.Popen, grace: float = 20) -> None:
    """Ctrl-C to the process group (as a terminal would), then SIGKILL what is left."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(grace)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)
