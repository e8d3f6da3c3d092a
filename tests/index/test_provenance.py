"""vseimageencoder.index.provenance: the one check that a checkpoint belongs to an index."""
import pytest

from vseimageencoder.index import ProvenanceMismatchError, provenance
from vseimageencoder.release.weights import sha256_of


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / 'model_best.pth.tar'
    path.write_bytes(b'not a real checkpoint: only its digest is read')
    return path


def test_the_recorded_checkpoint_is_accepted_and_another_refused(checkpoint, tmp_path):
    rec = provenance.record(checkpoint, 'fast', 'fp32')
    assert rec['sha256'] == sha256_of(checkpoint)
    assert provenance.check_checkpoint('ix', rec, checkpoint, remedy='r', required=True) == rec['sha256']
    other = tmp_path / 'other.pth.tar'
    other.write_bytes(b'another')
    with pytest.raises(ProvenanceMismatchError, match=r'ix was embedded with .*%s.*: use the same one' % rec['sha256']):
        provenance.check_checkpoint('ix', rec, other, remedy='use the same one')


def test_nothing_recorded_is_accepted_only_where_not_required(checkpoint):
    assert provenance.check_checkpoint('e.npy', None, checkpoint, remedy='r') == sha256_of(checkpoint)
    assert provenance.check_checkpoint('e.npy', {}, checkpoint, remedy='r') == sha256_of(checkpoint)
    with pytest.raises(ProvenanceMismatchError, match='sha256 None'):
        provenance.check_checkpoint('ix', {'resize': 'fast'}, checkpoint, remedy='r', required=True)


def test_width_and_default_model_path(checkpoint):
    provenance.check_width('ix', 64, checkpoint, 64)
    with pytest.raises(ProvenanceMismatchError, match='holds 64-d embeddings, but .* gives 32-d ones: again'):
        provenance.check_width('ix', 64, checkpoint, 32, remedy='again')
    rec = provenance.record(checkpoint, 'fast', 'fp32')
    assert provenance.default_model_path(rec) == str(checkpoint)
    checkpoint.unlink()
    assert provenance.default_model_path(rec) == 'pretrained'
    assert provenance.default_model_path(None) == 'pretrained'
