"""VSESearcher (vseimageencoder.jina3.searcher): in this process, in a real Deployment with
shards=2 and replicas=2 (matches merged by score equal one shard's), after both encoders in
a Flow, and in the Kubernetes export."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from docarray import DocList

from tests.support.jina3_serving import started
from tests.jina3.test_executors import CAPTIONS
from vseimageencoder.index import ProvenanceMismatchError, open_index
from vseimageencoder.jina3 import CrossModalDoc, ImageDoc, SearchDoc, VSESearcher

pytestmark = pytest.mark.jina3

REPO = Path(__file__).resolve().parents[2]
JINA3 = REPO / 'vseimageencoder' / 'jina3'
SEARCHER_YML, MERGER_YML = str(JINA3 / 'searcher.yml'), str(JINA3 / 'merger.yml')
IMAGE_YML, TEXT_YML = str(JINA3 / 'image.yml'), str(JINA3 / 'text.yml')
DIM = 256  # the release fixture's embed_size


def unit_rows(n, seed):
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def docs_of(rows, prefix='photo'):
    return DocList[SearchDoc]([SearchDoc(url='%s-%03d.jpg' % (prefix, i), embedding=r) for i, r in enumerate(rows)])


def top_k(rows, urls, queries, k):
    s = queries @ rows.T
    return [[(urls[j], float(s[q, j])) for j in np.argsort(-s[q], kind='stable')[:k]] for q in range(len(queries))]


def matches_of(doc):
    return [(m.url, m.score) for m in doc.matches]


def assert_same_matches(got, want):
    assert [u for u, _ in got] == [u for u, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


def test_in_process_index_search_and_refusals(release, tmp_path):
    rows, queries = unit_rows(30, 1), unit_rows(4, 2)
    s = VSESearcher(index_dir=str(tmp_path / 'ix'), model_path=str(release.checkpoint))
    s.index(docs=docs_of(rows[:20]), parameters={})
    s.index(docs=docs_of(rows[20:], prefix='more'), parameters={})
    urls = ['photo-%03d.jpg' % i for i in range(20)] + ['more-%03d.jpg' % i for i in range(10)]
    out = s.search(docs=DocList[SearchDoc]([SearchDoc(embedding=q) for q in queries]), parameters={'k': 5.0})
    for d, want in zip(out, top_k(rows, urls, queries, 5)):
        assert_same_matches(matches_of(d), want)
    assert open_index(tmp_path / 'ix').provenance['sha256'] == s.provenance['sha256']

    # One bad document fails the request, named, and nothing of it is written.
    commit = open_index(tmp_path / 'ix').commit
    bad = docs_of(unit_rows(3, 3), prefix='bad')
    bad[2].embedding = None
    with pytest.raises(ValueError, match=r'SearchDoc #2 \(id .*\) has no embedding'):
        s.index(docs=bad, parameters={})
    nourl = docs_of(unit_rows(2, 4), prefix='x')
    nourl[1].url = None
    with pytest.raises(ValueError, match='#1 .* has no url'):
        s.index(docs=nourl, parameters={})
    assert open_index(tmp_path / 'ix').commit == commit and len(open_index(tmp_path / 'ix')) == 30
    for k in (2.5, 0, 'five'):
        with pytest.raises(ValueError, match="k parameter must be a positive integer"):
            s.search(docs=DocList[SearchDoc]([SearchDoc(embedding=queries[0])]), parameters={'k': k})
    with pytest.raises(ValueError, match='512-d embedding; the index holds 256-d'):
        s.search(docs=DocList[SearchDoc]([SearchDoc(embedding=np.ones(512, np.float32))]), parameters={})

    # Indexing a url again replaces its row.
    s.index(docs=DocList[SearchDoc]([SearchDoc(url='photo-000.jpg', embedding=queries[0])]), parameters={})
    ix = open_index(tmp_path / 'ix')
    assert len(ix) == 30
    assert ix.search(queries[:1], 1)[0][0][1] == 'photo-000.jpg'

    # Another checkpoint over the same folder is refused at start, naming both.
    from tests.support.vsepp_release import write_release_checkpoint
    other = tmp_path / 'other' / 'model_best.pth.tar'
    write_release_checkpoint(other, 'resnet18', embed_size=DIM, seed=9, vocab_size=40, word_dim=16)
    with pytest.raises(ProvenanceMismatchError, match='sha256'):
        VSESearcher(index_dir=str(tmp_path / 'ix'), model_path=str(other))


def test_deployment_two_shards_two_replicas_equals_one_shard(release, tmp_path):
    from jina import Deployment

    rows, queries = unit_rows(40, 5), unit_rows(6, 6)
    urls = ['photo-%03d.jpg' % i for i in range(40)]
    d = Deployment(uses=SEARCHER_YML, shards=2, replicas=2, uses_after=MERGER_YML, protocol='grpc',
                   host='127.0.0.1', timeout_ctrl=5,
                   uses_with={'index_dir': str(tmp_path / 'sharded'), 'model_path': str(release.checkpoint)})
    with started(d):
        d.post('/index', docs_of(rows), request_size=5, return_type=DocList[SearchDoc])
        out = d.post('/search', DocList[SearchDoc]([SearchDoc(embedding=q) for q in queries]),
                     parameters={'k': 7}, return_type=DocList[SearchDoc])
        default_k = d.post('/search', DocList[SearchDoc]([SearchDoc(embedding=queries[0])]),
                           return_type=DocList[SearchDoc])
    shards = [open_index(tmp_path / 'sharded' / ('shard-%d' % i)) for i in (0, 1)]
    # The index was split: each shard holds part of it, together all of it, once.
    assert all(len(s) > 0 for s in shards) and sum(len(s) for s in shards) == 40
    assert sorted(f for s in shards for f in (s.file(i) for i in s.ids())) == urls

    # One shard holding every row, for comparison.
    one = VSESearcher(index_dir=str(tmp_path / 'one'), model_path=str(release.checkpoint))
    one.index(docs=docs_of(rows), parameters={})
    single = one.search(docs=DocList[SearchDoc]([SearchDoc(embedding=q) for q in queries]), parameters={'k': 7})
    by_id = {doc.id: doc for doc in out}
    assert len(out) == len(queries)
    for q, s1, want in zip(out, single, top_k(rows, urls, queries, 7)):
        assert len(q.matches) == 7
        assert_same_matches(matches_of(by_id[q.id]), matches_of(s1))
        assert_same_matches(matches_of(by_id[q.id]), want)
    assert len(default_k[0].matches) == 10  # the searcher's k when the request gives none


def test_flow_of_both_encoders_then_searcher(release, pixels, tmp_path):
    """Images indexed and captions searched through one Flow: each document is embedded by its
    own encoder on the way to the searcher; scores are the cosines of those embeddings."""
    from jina import Flow

    from vseimageencoder.encoders import ImageEncoder, TextEncoder
    from vseimageencoder.images.transform import transform

    with_model = {'model_path': str(release.folder)}
    flow = (Flow(protocol='grpc', host='127.0.0.1', timeout_ctrl=5)
            .add(name='text', uses=TEXT_YML, uses_with=with_model)
            .add(name='image', uses=IMAGE_YML, uses_with=with_model)
            .add(name='search', uses=SEARCHER_YML,
                 uses_with=dict(with_model, index_dir=str(tmp_path / 'flow'))))
    images = DocList[CrossModalDoc]([CrossModalDoc(tensor=p, url='img-%d.png' % i) for i, p in enumerate(pixels)])
    with started(flow) as f:
        f.post('/index', images, return_type=DocList[CrossModalDoc])
        out = f.post('/search', DocList[CrossModalDoc]([CrossModalDoc(text=c) for c in CAPTIONS[:3]] +
                                                      [CrossModalDoc(tensor=pixels[3])]),
                     parameters={'k': 3}, return_type=DocList[SearchDoc])
    img = ImageEncoder(release.checkpoint).encode(np.stack([transform(p) for p in pixels]))
    txt = TextEncoder(release.checkpoint).encode(CAPTIONS[:3])
    urls = ['img-%d.png' % i for i in range(len(pixels))]
    queries = np.concatenate([txt, img[3:4]])
    assert [d.text for d in out[:3]] == CAPTIONS[:3]
    for d, want in zip(out, top_k(img, urls, queries, 3)):
        assert len(d.matches) == 3
        np.testing.assert_allclose([m.score for m in d.matches], [s for _, s in want], atol=1e-4)
        assert {m.url for m in d.matches} <= set(urls)
    # An indexed image searched by its own pixels finds itself first, cosine 1.
    assert out[3].matches[0].url == 'img-3.png' and out[3].matches[0].score > 0.9999


def test_kubernetes_export_shows_the_shards(tmp_path):
    from jina import Deployment

    tag = 'vseimageencoder-jina3:test'
    d = Deployment(name='vse-search', uses='docker://' + tag, shards=2, replicas=2, port=8080,
                   uses_after='docker://' + tag,
                   uses_with={'model_path': 'pretrained', 'index_dir': '/data/index'})
    d.to_kubernetes_yaml(str(tmp_path / 'k8s'), k8s_namespace='vse')
    docs = [doc for f in sorted((tmp_path / 'k8s').rglob('*.yml')) for doc in yaml.safe_load_all(f.read_text()) if doc]
    deployments = {doc['metadata']['name']: doc for doc in docs if doc['kind'] == 'Deployment'}
    shard_names = sorted(n for n in deployments if n.startswith('vse-search-') and 'head' not in n)
    assert shard_names == ['vse-search-0', 'vse-search-1'], sorted(deployments)
    for n in shard_names:
        spec = deployments[n]['spec']
        assert spec['replicas'] == 2
        c = spec['template']['spec']['containers'][0]
        args = c['args'] if isinstance(c['args'], list) else str(c['args']).split()
        assert args[0] == 'executor' and json.loads(args[args.index('--uses-with') + 1])['index_dir'] == '/data/index'
        assert args[args.index('--shard-id') + 1] == n[-1] if '--shard-id' in args else True
    head = [n for n in deployments if 'head' in n]
    assert head, sorted(deployments)
    head_containers = deployments[head[0]]['spec']['template']['spec']['containers']
    assert any(c['image'] == tag for c in head_containers)  # the merger runs beside the head
