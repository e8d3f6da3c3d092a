"""The serve package's request checks (no model, no web server); its batching worker:
test_batcher.py."""
import pytest

from vseimageencoder.serve.errors import BadRequest, NotFound
from vseimageencoder.serve.service import check_caption, parse_id, parse_k


@pytest.mark.parametrize('raw,k', [(None, 20), ('1', 1), ('7', 7), (' 12 ', 12), ('500', 500)])
def test_k_accepted(raw, k):
    assert parse_k(raw) == k


@pytest.mark.parametrize('raw,message', [
    ('0', 'k must be at least 1, got 0'), ('-1', "got '-1'"), ('', "got ''"), ('abc', "got 'abc'"),
    ('2.5', "got '2.5'"), ('1e3', "got '1e3'"), ('\u0661', "got '\u0661'"),  # an Arabic-Indic one
    ('501', "k=501 is above this server's limit of 500"), ('9' * 40, 'limit of 500'),
])
def test_k_refused_naming_the_value(raw, message):
    with pytest.raises(BadRequest) as e:
        parse_k(raw)
    assert message in e.value.message and e.value.status == 400


def test_caption_checks():
    assert check_caption('  a dog  ') == 'a dog'
    for raw, message in ((None, 'no caption'), ('', 'empty'), (' \t\n', 'empty'),
                         ('x' * 1001, '1001 characters long; at most 1000')):
        with pytest.raises(BadRequest) as e:
            check_caption(raw)
        assert message in e.value.message


@pytest.mark.parametrize('raw', ['-1', '1.0', '0x1', '..', '', ' 1', '\uff11', '9' * 19])
def test_ids_that_are_not_plain_integers_are_not_found(raw):
    with pytest.raises(NotFound):
        parse_id(raw)
    assert parse_id('42') == 42
