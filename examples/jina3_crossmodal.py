"""Cross-modal retrieval with the jina 3 Executors: index images, query with captions.

One Flow on 127.0.0.1 over gRPC holds both encoders (one checkpoint holds both towers),
one after the other on /encode: images (as file paths) and captions go in one request of
CrossModalDoc documents, and each encoder embeds its own kind. The ranking is plain numpy
(embeddings are unit-norm, so cosine = dot product).

    .venv-jina3/bin/python examples/jina3_crossmodal.py --model pretrained \\
        --images photos/ --query "a dog playing in the snow" --top-k 3

Writes the top-k per caption as JSON to --out (default: stdout through logging).
"""
import argparse
import json
import logging
import sys
from pathlib import Path

logger = logging.getLogger('jina3_crossmodal')


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', default='pretrained', help='checkpoint file or folder (with its vocabulary)')
    ap.add_argument('--vocab', default=None, help='vocabulary pickle, if not beside the checkpoint')
    ap.add_argument('--images', nargs='+', required=True, help='image files or folders')
    ap.add_argument('--query', nargs='+', required=True, help='captions to search with')
    ap.add_argument('--top-k', type=int, default=5)
    ap.add_argument('--replicas', type=int, default=1, help='replicas of each encoder in the Flow')
    ap.add_argument('--out', type=Path, help='write the results here as JSON')
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')

    from vseimageencoder.jina3.local import keep_jina_local
    keep_jina_local()  # before the Flow starts: no telemetry, no public-IP lookups

    import numpy as np
    from docarray import DocList
    from jina import Flow

    from vseimageencoder.jina3 import CrossModalDoc
    from vseimageencoder.preprocess import expand_paths

    here = Path(__file__).resolve().parent.parent / 'vseimageencoder' / 'jina3'
    paths = [str(p.resolve()) for p in expand_paths(args.images)]
    if not paths:
        ap.error('no image files in %s' % ' '.join(args.images))
    model = str(Path(args.model).resolve())
    vocab = str(Path(args.vocab).resolve()) if args.vocab else None
    # The Flow starts before this process does any torch work (forked replicas of a process
    # that ran torch can hang).
    flow = (Flow(host='127.0.0.1')
            .add(name='image', uses=str(here / 'image.yml'), uses_with={'model_path': model},
                 replicas=args.replicas)
            .add(name='text', uses=str(here / 'text.yml'),
                 uses_with={'model_path': model, 'vocab_path': vocab}, replicas=args.replicas))
    images = [CrossModalDoc(url=p) for p in paths]
    captions = [CrossModalDoc(text=q) for q in args.query]
    with flow:
        out = flow.post('/encode', DocList[CrossModalDoc](images + captions),
                        return_type=DocList[CrossModalDoc])
    # Requests may come back in any order: documents are matched by id.
    by_id = {d.id: d.embedding for d in out}
    index = np.stack([by_id[d.id] for d in images])           # (N, D), rows unit-norm
    queries = np.stack([by_id[d.id] for d in captions])       # (Q, D)
    scores = queries @ index.T
    results = []
    for q, row in zip(args.query, scores):
        top = np.argsort(-row, kind='stable')[:args.top_k]
        results.append({'query': q, 'hits': [{'image': images[i].url, 'score': float(row[i])}
                                             for i in top]})
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.write_text(text)
    else:
        logger.info('%s', text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
