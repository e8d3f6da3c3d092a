"""The thread budget (readers against the tower's threads) and the lanes that follow it."""
import os
import threading

import numpy as np
import pytest
import torch

from vseimageencoder.pipeline.batch_threads import chunk_size, embed_in_lanes
from vseimageencoder.pipeline.thread_budget import MAX_LANES, ThreadBudget, thread_budget, torch_threads


@pytest.mark.parametrize('cores, readers, expected', [
    (2, None, ThreadBudget(1, 2, True)),    # this machine: two lanes of one torch thread
    (1, None, ThreadBudget(1, 1, True)),
    (4, None, ThreadBudget(1, 4, True)),
    (16, None, ThreadBudget(2, MAX_LANES, True)),   # lanes capped, the rest to the tower
    (2, 1, ThreadBudget(2, 1, True)),       # one lane gets both cores
    (8, 3, ThreadBudget(2, 3, True)),       # cores // lanes
    (2, 5, ThreadBudget(1, 5, True)),       # more lanes than cores: never 0 torch threads
    (2, 0, ThreadBudget(2, 0, False)),      # read on the calling thread: all cores to the tower
    (6, 0, ThreadBudget(6, 0, False)),
])
def test_lanes_budget(cores, readers, expected):
    got = thread_budget(cores, readers)
    assert got == expected
    if got.readers_run_tower and got.reader_threads <= cores:
        assert got.torch_threads * got.reader_threads <= cores  # never oversubscribed


@pytest.mark.parametrize('cores, readers, expected', [
    (2, None, ThreadBudget(1, 1, False)),   # feeding readers: the tower gets what they leave
    (8, None, ThreadBudget(4, 4, False)),
    (8, 2, ThreadBudget(6, 2, False)),
    (2, 2, ThreadBudget(1, 2, False)),
    (1, None, ThreadBudget(1, 1, False)),
])
def test_feeding_budget(cores, readers, expected):
    assert thread_budget(cores, readers, readers_run_tower=False) == expected


@pytest.mark.parametrize('cores, readers, word', [(0, None, 'cores'), (-1, 1, 'cores'), (1.5, 1, 'cores'),
                                                  (2, -1, 'readers'), (2, 0.5, 'readers')])
def test_budget_refuses_bad_counts(cores, readers, word):
    with pytest.raises(ValueError, match=word):
        thread_budget(cores, readers)


def test_default_cores_from_affinity():
    b = thread_budget()
    assert b.reader_threads == min(len(os.sched_getaffinity(0)), MAX_LANES)


def test_torch_threads_restores():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(KeyError):
        with torch_threads(1):
            raise KeyError('x')
    assert torch.get_num_threads() == before


def test_chunk_size():
    assert chunk_size(100, 8, 2) == 8
    assert chunk_size(8, 8, 2) == 4   # both lanes busy on a short input
    assert chunk_size(3, 8, 2) == 2
    assert chunk_size(1, 8, 4) == 1
    assert chunk_size(0, 8, 2) == 8
    assert chunk_size(24, 8, 2) == 6  # 4 batches, 2 per lane, rather than 3 with a lone tail
    assert chunk_size(1000, 32, 8) == 32
    assert chunk_size(17, 4, 1) == 4


def _tasks():
    return len(os.listdir('/proc/self/task'))


@pytest.mark.skipif(not os.path.isdir('/proc/self/task'), reason='counts threads through /proc')
def test_lanes_start_no_openmp_teams_of_their_own():
    """OpenMP's thread count is per thread: without the lane setting its own, each lane's
    first convolution starts a team as large as the machine on top of the other lanes."""
    conv = torch.nn.Conv2d(3, 8, 3).eval()
    with torch.inference_mode():
        conv(torch.zeros(1, 3, 32, 32))  # the calling thread's own team exists before counting
    before = _tasks()
    seen = []

    def model(x):
        with torch.inference_mode():
            y = conv(x[:, :, :64, :64])
        seen.append(_tasks())
        return y.mean(dim=(2, 3))

    rows = []
    lanes = 2
    done, skipped = embed_in_lanes(model, list(range(12)), lambda p: np.full((3, 224, 224), p, np.float32),
                                   lambda r, pos: rows.append(pos), 2, lanes, 1)
    assert (done, skipped) == (12, 0)
    assert max(seen) - before <= lanes, (before, seen)


def test_lanes_keep_order_and_report_unreadable_in_order():
    class Bad(ValueError):
        pass

    def load(p):
        if p % 5 == 3:
            raise Bad('bad %d' % p)
        # later items are quicker, so lanes finish out of order
        threading.Event().wait(0.002 * (30 - p) / 30)
        return np.full((3, 224, 224), p, np.float32)

    written, bad, progress = [], [], []

    def write(rows, positions):
        assert rows.dtype == np.float32 and rows.shape == (len(positions), 3)
        assert np.array_equal(rows[:, 0], np.asarray(positions, np.float32))  # rows match positions
        written.extend(positions)

    done, skipped = embed_in_lanes(lambda x: x.mean(dim=(2, 3)), list(range(30)), load, write, 4, 3, 1,
                                   (Bad,), lambda pos, e: bad.append(pos), lambda d, s: progress.append((d, s)))
    expected_bad = [p for p in range(30) if p % 5 == 3]
    assert bad == expected_bad and skipped == len(expected_bad)
    assert written == [p for p in range(30) if p not in expected_bad] and done == len(written)
    assert progress[-1] == (done, skipped) and progress == sorted(progress)


def test_lanes_raise_other_errors():
    def load(p):
        if p == 7:
            raise RuntimeError('disk on fire')
        return np.zeros((3, 224, 224), np.float32)

    with pytest.raises(RuntimeError, match='disk on fire'):
        embed_in_lanes(lambda x: x.mean(dim=(2, 3)), list(range(20)), load, lambda r, p: None, 2, 2, 1)


def test_lanes_embed_as_the_main_thread_does(tmp_path, small_release):
    """The default (lanes) and reading on the main thread give the same rows (a skipped file
    makes the two group images into different batches: float32 rounding apart)."""
    from tests.support.photos import write_photo
    from vseimageencoder.pipeline.embed_files import embed_files
    from vseimageencoder.release.checkpoint import load_tower
    from vseimageencoder.model.inference import InferenceTower

    paths = [write_photo(tmp_path / ('%d.jpg' % i), 320 + 40 * i, 240, seed=i) for i in range(7)]
    paths.insert(3, tmp_path / 'broken.jpg')
    paths[3].write_bytes(b'\xff\xd8\xff\xe0 not a jpeg')
    tower, _ = load_tower(str(small_release[0]))
    model = InferenceTower(tower)
    runs = {}
    for readers in (0, None):
        rows, pos, bad = [], [], []
        embed_files(model, paths, lambda r, p: (rows.append(r), pos.extend(p)), 3, 'fast', readers,
                    lambda i, e: bad.append(i))
        assert bad == [3] and pos == [0, 1, 2, 4, 5, 6, 7]
        runs[readers] = np.concatenate(rows)
    np.testing.assert_allclose(runs[None], runs[0], rtol=0, atol=1e-6)
