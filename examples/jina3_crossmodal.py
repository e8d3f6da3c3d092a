"""Cross-modal retrieval with the jina 3 Executors: index images, query with captions.

One Flow on 127.0.0.1 over gRPC holds both encoders (one checkpoint holds both towers),
one after the other on /encode: images (as file paths) and captions go in one request of
CrossModalDoc documents, and each encoder embeds its own kind. The ranking is plain numpy
(embeddings are unit-norm, so cosine = dot product).

    .venv-jina3/bin/python examples/jina3_crossmodal.py --model pretrained \\
        --images photos/ --query "a dog playing in the snow" --top-k 3

Writes the top-k per caption as JSON to stdout (or to --out); everything else, this
script's log lines and jina's (from this process and the Executors it starts), goes to
stderr, so `> hits.json` captures the results alone.
"""
import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger('jina3_crossmodal')


@contextlib.contextmanager
def output_to_stderr():
    """jina 3 prints its logs to stdout, in this process and in the Executor processes it
    starts (which inherit the file descriptor): point descriptor 1 at stderr meanwhile."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


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
    logging.basicConfig(level=logging.INFO, format='%(message)s', stream=sys.stderr)
    with output_to_stderr():
        text = _run(ap, args)
    if args.out:
        args.out.write_text(text)
        logger.info('wrote %s', args.out)
    else:
        sys.stdout.write(text + '\n')
        sys.stdout.flush()
    return 0


def _run(ap, args) -> str:
    """Index the images, embed the queries, rank; return the results as JSON text."""
    from vseimageencoder.jina3.local import keep_jina_local
    keep_jina_local()  # before the Flow starts: no telemetry, no public-IP lookups

    import numpy as np
    from docarray import DocList
    from jina import Flow

    from vseimageencoder.jina3 import CrossModalDoc
    from vseimageencoder.images.folders import expand_paths

    here = Path(__file__).resolve().parent.parent / 'vseimageencoder' / 'jina3'
    paths = [str(p.resolve()) for p in expand_paths(args.images)]
    if not paths:
        ap.error('no image files in %s' % ' '.join(args.images))
    model = str(Path(args.model).resolve())
    vocab = str(Path(args.vocab).resolve()) if args.vocab else None
    # The image Executor reads files only under its file_root: the folder that holds them all.
    file_root = os.path.commonpath([os.path.dirname(p) for p in paths])
    # The Flow starts before this process does any torch work (forked replicas of a process
    # that ran torch can hang).
    flow = (Flow(host='127.0.0.1')
            .add(name='image', uses=str(here / 'image.yml'),
                 uses_with={'model_path': model, 'file_root': file_root},
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
    return json.dumps(results, indent=2)


if __name__ == '__main__':
    sys.exit(main())
