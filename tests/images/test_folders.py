"""vseimageencoder.images.folders: the one folder walk (encode and index both use it)."""
import os

import pytest
from PIL import Image

from vseimageencoder.images import folders


def test_walk_skips_what_the_reader_refuses(tmp_path):
    for name in ('a.ppm', 'b.psd', 'c.txt', 'd.pgm'):
        (tmp_path / name).write_bytes(b'P6\n1 1\n255\n\x00\x00\x00')
    Image.new('RGB', (4, 4)).save(str(tmp_path / 'e.png'))
    assert [os.path.basename(f) for _, f in folders.walk([tmp_path])] == ['e.png']


def test_walk_order_and_missing(tmp_path):
    (tmp_path / 'a').mkdir()
    (tmp_path / 'a-b').mkdir()
    for rel in ('a-b/x.png', 'a/y.png', 'a/B.JPG', 'z.gif'):
        (tmp_path / rel).write_bytes(b'')
    got = [os.path.relpath(f, str(tmp_path)) for _, f in folders.walk([tmp_path])]
    # A folder's files stay together (path components), whatever sorts below '/'.
    assert got == ['a/B.JPG', 'a/y.png', 'a-b/x.png', 'z.gif']
    gone = str(tmp_path / 'gone.png')
    assert list(folders.walk([gone])) == [(gone, None)]
    with pytest.raises(FileNotFoundError, match='gone.png'):
        list(folders.expand_paths([gone]))


def test_dangling_link_is_walked_but_not_expanded(tmp_path):
    link = tmp_path / 'l.jpg'
    os.symlink(str(tmp_path / 'nowhere.jpg'), str(link))
    assert list(folders.walk([str(link)])) == [(str(link), str(link))]
    with pytest.raises(FileNotFoundError):
        list(folders.expand_paths([link]))


def test_encode_and_index_walk_the_same_files(tmp_path):
    # Both commands list files through walk(): same files, same order.
    from vseimageencoder.index.update import scan_paths
    for rel in ('b/2.png', 'b/1.jpg', 'a.webp', 'skip.ppm'):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_bytes(b'x')
    expanded = [str(p) for p in folders.expand_paths([tmp_path])]
    found, roots, missing = scan_paths([tmp_path], lambda p, why: None)
    assert [f.path for f in found] == expanded and roots == [str(tmp_path)] and missing == []
