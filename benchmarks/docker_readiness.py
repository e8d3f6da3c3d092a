"""How often a `Flow().add(uses='docker://IMAGE')` Flow hangs, per `timeout_ctrl` setting.

    .venv/bin/python benchmarks/docker_readiness.py                    # 10 runs each of 5000, 60000 ms
    .venv/bin/python benchmarks/docker_readiness.py --runs 20 --timeout-ctrl 5000 60000

Needs root, podman and the pod image in the tests' podman store (built by
tests/integration/test_container.py, which also makes the base images). Each run starts
podman's Docker API on a private socket (loopback subnet, so nothing is dialled off this
machine), opens the Flow in a fresh process, indexes four 64x64 images and closes it. A run
that has not returned after --per-run seconds counts as hung; its processes and container
are killed. The settings are interleaved run by run, so drift on the machine hits both.
Prints a markdown table: runs served, runs hung, median seconds until the Flow was ready.

Why it matters: jina 0.9.33 polls a docker:// pod with STATUS requests every timeout_ctrl
ms over a one-peer control socket, each from a new connection. Polls that time out while the
container is still loading stay queued; the pod answers them all once it serves, and an
answer to a poller that has gone blocks the pod's event loop for good.
"""
import argparse
import logging
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import containers as ctr  # noqa: E402
from tests.integration.fresh_process import run_in_fresh_process  # noqa: E402

log = logging.getLogger('docker_readiness')


def _tag():
    r = subprocess.run([sys.executable, str(ROOT / 'scripts' / 'image_tag.py')], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, universal_newlines=True, check=True)
    return r.stdout.strip().splitlines()[-1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--runs', type=int, default=10, help='runs per setting (default 10)')
    ap.add_argument('--timeout-ctrl', type=int, nargs='+', default=[5000, 60000],
                    help='timeout_ctrl values in ms to compare (default: 5000, jina\'s default, and 60000)')
    ap.add_argument('--per-run', type=float, default=120, help='seconds before a run counts as hung')
    ap.add_argument('--tag', default=None, help='image tag (default: computed from manifest.yml)')
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')

    missing = ctr.missing_tools()
    if missing or os.geteuid() != 0:
        sys.exit('docker_readiness: needs root and %s' % ', '.join(missing or ['root']))
    tag = args.tag or _tag()
    if not ctr.image_exists(tag):
        sys.exit('docker_readiness: no image %s in %s; build it first by running '
                 '.venv/bin/python -m pytest tests/integration/test_container.py' % (tag, ctr.ROOT))
    ctr.docker_py_path()
    ctr.remove_containers_of(tag)  # jina names its container after the pod: leftovers clash

    import numpy as np
    images = np.random.RandomState(77).randn(4, 3, 64, 64).astype(np.float32)
    results = {t: {'served': 0, 'hung': 0, 'ready_s': []} for t in args.timeout_ctrl}
    for i in range(args.runs):
        for t in args.timeout_ctrl:
            try:
                with ctr.docker_api():
                    got, ready_s = run_in_fresh_process(ctr.flow_with_docker_uses, tag, images, t,
                                                           timeout=args.per_run)
                if len(got) != len(images):
                    raise AssertionError('%d of %d embeddings came back' % (len(got), len(images)))
                results[t]['served'] += 1
                results[t]['ready_s'].append(ready_s)
                log.info('run %d, timeout_ctrl=%d: served (ready after %.1f s)', i + 1, t, ready_s)
            except TimeoutError:
                results[t]['hung'] += 1
                log.info('run %d, timeout_ctrl=%d: hung', i + 1, t)
            finally:
                ctr.remove_containers_of(tag)

    lines = ['| timeout_ctrl (ms) | runs | served | hung | median s to ready |', '|---|---|---|---|---|']
    for t, r in results.items():
        ready = '%.1f' % statistics.median(r['ready_s']) if r['ready_s'] else '-'
        lines.append('| %d | %d | %d | %d | %s |' % (t, args.runs, r['served'], r['hung'], ready))
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
