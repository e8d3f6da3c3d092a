"""A device the machine lacks: one line naming it and what is available, exit 2
from the command line, a named error from the Python API and the jina 0.9 executors, all
raised before any checkpoint is read. The device asked for is one past the last CUDA device,
which no machine has, so these run the same with or without a GPU."""
import subprocess
import sys

import pytest
import torch

from vseimageencoder.model.inference import DeviceUnavailableError, available_devices, check_device

MISSING = 'cuda:%d' % (torch.cuda.device_count() if torch.cuda.is_available() else 0)


def test_check_device_names_the_device_and_what_is_available():
    with pytest.raises(DeviceUnavailableError) as e:
        check_device(MISSING)
    msg = str(e.value)
    assert repr(MISSING) in msg and 'available here: cpu' in msg
    assert '\n' not in msg
    assert isinstance(e.value, ValueError)


def test_check_device_refuses_a_name_that_is_no_device():
    with pytest.raises(DeviceUnavailableError, match="device='gpu0' is not a torch device name"):
        check_device('gpu0')


def test_check_device_passes_what_is_available():
    assert available_devices()[0] == 'cpu'
    for name in available_devices():
        assert check_device(name) == torch.device(name)


def test_encoders_refuse_before_reading_the_checkpoint(tmp_path):
    from vseimageencoder.encoders import ImageEncoder, TextEncoder
    for cls in (ImageEncoder, TextEncoder):
        # no checkpoint at all: the device is what is reported, not the missing file
        with pytest.raises(DeviceUnavailableError, match=MISSING):
            cls(str(tmp_path / 'nowhere'), device=MISSING)


@pytest.mark.parametrize('command', ['encode', 'search'])
def test_cli_says_one_line_and_exits_2(tmp_path, small_release, command):
    from PIL import Image
    import numpy as np
    img = tmp_path / 'a.png'
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(str(img))
    np.save(str(tmp_path / 'e.npy'), np.ones((1, 1024), np.float32) / 32)  # an index to search
    (tmp_path / 'e.files.txt').write_text(str(img) + '\n')
    args = {'encode': ['encode', '-o', str(tmp_path / 'out.npy'), str(img)],
            'search': ['search', str(tmp_path / 'e.npy'), 'a dog']}[command]
    r = subprocess.run([sys.executable, '-m', 'vseimageencoder'] + args
                       + ['--model-path', str(small_release[0]), '--device', MISSING],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=600)
    assert r.returncode == 2, r.stderr
    # (a hand-made index draws a warning that it has no record of its files: not the point)
    lines = [line for line in r.stderr.strip().splitlines() if not line.startswith('WARNING')]
    assert len(lines) == 1, r.stderr
    assert MISSING in lines[0] and 'available here: cpu' in lines[0]
    assert 'Traceback' not in r.stderr and r.stdout == ''
    if command == 'encode':
        assert not (tmp_path / 'out.npy').exists()


@pytest.mark.jina09
def test_jina09_executor_on_gpu_without_one_is_a_named_error(small_release):
    if torch.cuda.is_available():
        pytest.skip('on_gpu asks for cuda:0, which this machine has')
    from vseimageencoder.jina09.executor import VSEImageEncoder, VSETextEncoder
    for cls in (VSEImageEncoder, VSETextEncoder):
        with pytest.raises(DeviceUnavailableError, match=r"'cuda:0' is not available.*on_gpu=True"):
            cls(model_path=str(small_release[0]), metas={'on_gpu': True})
