"""Cross-modal search with jina 0.9.33 Flows: find images by caption, captions by image.

    # images in, then captions as queries
    python examples/cross_modal/cross_modal.py index-images photos/ --workspace ws
    python examples/cross_modal/cross_modal.py query-by-caption "a dog runs on a beach" --workspace ws -k 5
    # captions in (one per line), then an image as the query
    python examples/cross_modal/cross_modal.py index-captions captions.txt --workspace ws
    python examples/cross_modal/cross_modal.py query-by-image photos/dog.jpg --workspace ws -k 5

The Flows are the YAML files beside this script: the VSE++ image or text encoder of this
package, then jina's own NumpyIndexer (cosine) and BinaryPbIndexer. Query results print as
``cosine<TAB>image path`` (or caption) lines, best first, one block per query.
``--model-path`` is the folder of ``model_best.pth.tar`` and its vocabulary, as
``vseimageencoder download`` writes it (default: ``pretrained``).
"""
import argparse
import logging
import os
import sys
from pathlib import Path
from typing import List, Sequence, Tuple

HERE = Path(__file__).resolve().parent
logger = logging.getLogger('cross_modal')

FLOWS = {
    'index-images': 'flow-index-images.yml',
    'query-by-caption': 'flow-query-by-caption.yml',
    'index-captions': 'flow-index-captions.yml',
    'query-by-image': 'flow-query-by-image.yml',
}


def _prepare(workspace, model_path, vocab_path):
    """Environment for the YAMLs, jina kept offline, and this folder as the working
    directory (the Flow YAMLs name their pods' YAMLs relative to it)."""
    import vseimageencoder  # noqa: F401  registers !VSEImageEncoder / !VSETextEncoder
    from vseimageencoder._jina09 import disable_phone_home

    from vseimageencoder.encoders import DEFAULT_SEARCH_DIRS
    from vseimageencoder.checkpoint import resolve_checkpoint_path

    disable_phone_home()
    # Resolved here as the encoders would (working directory, then the checkout), since the
    # pods start in this folder.
    checkpoint = resolve_checkpoint_path(model_path, DEFAULT_SEARCH_DIRS).resolve()
    os.environ['VSE_MODEL_PATH'] = str(checkpoint)
    os.environ['VSE_VOCAB_PATH'] = str(Path(vocab_path).resolve() if vocab_path else checkpoint.parent)
    os.environ['VSE_WORKSPACE'] = str(Path(workspace).resolve())
    Path(workspace).mkdir(parents=True, exist_ok=True)
    os.chdir(str(HERE))


def _flow(name):
    from jina.flow import Flow
    return Flow.load_config(str(HERE / FLOWS[name]))


def _image_docs(paths: Sequence[Path]):
    """One Document per readable image: the VSE++ evaluation transform as its blob, the file
    as its uri. Unreadable files are named and left out."""
    from jina import Document
    from vseimageencoder.preprocess import ImageReadError, transform

    docs = []
    for p in paths:
        try:
            docs.append(Document(blob=transform(p), uri=str(p), mime_type='image/jpeg'))
        except ImageReadError as e:
            logger.warning('skipped: %s', e)
    return docs


def index_images(paths: Sequence, workspace, model_path='pretrained', vocab_path=None) -> int:
    """Index image files (folders expand to their images). Returns the number indexed."""
    from vseimageencoder.preprocess import expand_paths

    _prepare(workspace, model_path, vocab_path)
    files = [p.resolve() for p in expand_paths(paths)]
    with _flow('index-images') as f:
        docs = _image_docs(files)
        f.index(docs)
    return len(docs)


def index_captions(captions: Sequence[str], workspace, model_path='pretrained', vocab_path=None) -> int:
    """Index captions as text Documents. Returns the number indexed."""
    from jina import Document

    _prepare(workspace, model_path, vocab_path)
    with _flow('index-captions') as f:
        f.index([Document(text=c) for c in captions])
    return len(captions)


def _search(flow_name, docs, k) -> List[List[Tuple[float, str]]]:
    results = {}

    def on_done(resp):
        for d in resp.docs:
            # NumpyIndexer's cosine score is a distance, 1 - cosine.
            results[d.id] = [(1.0 - m.score.value, m.uri or m.text) for m in d.matches]

    with _flow(flow_name) as f:
        f.search(docs, on_done=on_done, top_k=k)
    return [results.get(d.id, []) for d in docs]


def search_by_captions(captions: Sequence[str], workspace, k=5, model_path='pretrained',
                       vocab_path=None) -> List[List[Tuple[float, str]]]:
    """For each caption, the ``k`` nearest indexed images as ``(cosine, path)``, best first."""
    from jina import Document

    _prepare(workspace, model_path, vocab_path)
    return _search('query-by-caption', [Document(text=c) for c in captions], k)


def search_by_images(paths: Sequence, workspace, k=5, model_path='pretrained',
                     vocab_path=None) -> List[List[Tuple[float, str]]]:
    """For each image, the ``k`` nearest indexed captions as ``(cosine, caption)``, best first."""
    _prepare(workspace, model_path, vocab_path)
    return _search('query-by-image', _image_docs([Path(p) for p in paths]), k)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('command', choices=sorted(FLOWS))
    p.add_argument('inputs', nargs='+', help='images or folders (index-images, query-by-image), '
                                            'a text file of captions (index-captions), or captions')
    p.add_argument('--workspace', default='cross_modal_workspace', help='where the indexes live')
    p.add_argument('--model-path', default='pretrained', help='checkpoint file or its folder')
    p.add_argument('--vocab-path', default=None, help='vocabulary file (default: beside the checkpoint)')
    p.add_argument('-k', type=int, default=5, help='results per query (default: 5)')
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
    common = dict(workspace=args.workspace, model_path=args.model_path, vocab_path=args.vocab_path)
    # Paths are taken relative to where the command was started, before the Flows change it.
    inputs = [str(Path(i).resolve()) if Path(i).exists() else i for i in args.inputs]
    if args.command == 'index-images':
        logger.info('indexed %d images', index_images(inputs, **common))
        return 0
    if args.command == 'index-captions':
        lines = [l for i in inputs for l in Path(i).read_text(encoding='utf-8').splitlines() if l.strip()]
        logger.info('indexed %d captions', index_captions(lines, **common))
        return 0
    if args.command == 'query-by-caption':
        queries, found = args.inputs, search_by_captions(args.inputs, k=args.k, **common)
    else:
        queries, found = inputs, search_by_images(inputs, k=args.k, **common)
    out = []
    for query, hits in zip(queries, found):
        out.append('# %s' % query)
        out.extend('%.4f\t%s' % hit for hit in hits)
    sys.stdout.write(''.join(line + '\n' for line in out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
