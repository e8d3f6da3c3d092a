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

stdout carries only the results: jina's own logging (from this process and from the pods
it forks) goes to stderr. A query image that cannot be read, or a workspace that holds no
index of the kind a query searches, is an error (exit status 2) and creates nothing.
"""
import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import List, Sequence, Tuple

HERE = Path(__file__).resolve().parent
logger = logging.getLogger('cross_modal')

#: What each query searches: the indexer file that ``index-*`` leaves in the workspace.
INDEX_OF_QUERY = {
    'query-by-caption': ('image_vecidx.bin', 'index-images'),
    'query-by-image': ('caption_vecidx.bin', 'index-captions'),
}

FLOWS = {
    'index-images': 'flow-index-images.yml',
    'query-by-caption': 'flow-query-by-caption.yml',
    'index-captions': 'flow-index-captions.yml',
    'query-by-image': 'flow-query-by-image.yml',
}


class NotIndexedError(FileNotFoundError):
    """A query names a workspace that holds no index of what it searches."""


def _require_index(workspace, query: str) -> None:
    marker, command = INDEX_OF_QUERY[query]
    if not (Path(workspace) / marker).is_file():
        what = 'images' if query == 'query-by-caption' else 'captions'
        raise NotIndexedError('workspace %s holds no index of %s (no %s): run %s with '
                              '--workspace %s first' % (workspace, what, marker, command, workspace))


@contextlib.contextmanager
def jina_output_to_stderr():
    """jina 0.9.33 writes its log lines to stdout, in this process and in every pod it forks
    (which inherit the file descriptor): point descriptor 1 at stderr while Flows run, so
    that stdout carries only the results."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _prepare(workspace, model_path, vocab_path, create=True):
    """Environment for the YAMLs, jina kept offline, and this folder as the working
    directory (the Flow YAMLs name their pods' YAMLs relative to it). Only indexing
    creates the workspace."""
    import vseimageencoder  # noqa: F401  registers !VSEImageEncoder / !VSETextEncoder
    from vseimageencoder.jina09.offline import disable_phone_home

    from vseimageencoder.encoders import DEFAULT_SEARCH_DIRS
    from vseimageencoder.release.checkpoint import resolve_checkpoint_path

    disable_phone_home()
    # Resolved here as the encoders would (working directory, then the checkout), since the
    # pods start in this folder.
    checkpoint = resolve_checkpoint_path(model_path, DEFAULT_SEARCH_DIRS).resolve()
    os.environ['VSE_MODEL_PATH'] = str(checkpoint)
    os.environ['VSE_VOCAB_PATH'] = str(Path(vocab_path).resolve() if vocab_path else checkpoint.parent)
    os.environ['VSE_WORKSPACE'] = str(Path(workspace).resolve())
    if create:
        Path(workspace).mkdir(parents=True, exist_ok=True)
    os.chdir(str(HERE))


def _flow(name):
    from jina.flow import Flow
    return Flow.load_config(str(HERE / FLOWS[name]))


def _image_docs(paths: Sequence[Path], skip_unreadable=True):
    """One Document per readable image: the VSE++ evaluation transform as its blob, the file
    as its uri. Unreadable files are named and left out, or (``skip_unreadable=False``, for
    queries) raise :class:`~vseimageencoder.images.read.ImageReadError` or
    :class:`FileNotFoundError` naming the file."""
    from jina import Document
    from vseimageencoder.images.read import ImageReadError
    from vseimageencoder.images.transform import transform

    docs = []
    for p in paths:
        try:
            docs.append(Document(blob=transform(p), uri=str(p), mime_type='image/jpeg'))
        except (ImageReadError, FileNotFoundError) as e:
            if not skip_unreadable:
                raise
            logger.warning('skipped: %s', e)
    return docs


def index_images(paths: Sequence, workspace, model_path='pretrained', vocab_path=None) -> int:
    """Index image files (folders expand to their images). Returns the number indexed."""
    from vseimageencoder.images.folders import expand_paths

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
    """For each caption, the ``k`` nearest indexed images as ``(cosine, path)``, best first.
    Raises :class:`NotIndexedError` when no images were indexed in ``workspace``."""
    from jina import Document

    _require_index(workspace, 'query-by-caption')
    _prepare(workspace, model_path, vocab_path, create=False)
    return _search('query-by-caption', [Document(text=c) for c in captions], k)


def search_by_images(paths: Sequence, workspace, k=5, model_path='pretrained',
                     vocab_path=None) -> List[List[Tuple[float, str]]]:
    """For each image, the ``k`` nearest indexed captions as ``(cosine, caption)``, best first.
    Raises :class:`NotIndexedError` when no captions were indexed in ``workspace``, and
    ImageReadError / FileNotFoundError naming a query image that cannot be read."""
    paths = [Path(p).resolve() for p in paths]  # before _prepare changes the directory
    docs = _image_docs(paths, skip_unreadable=False)
    _require_index(workspace, 'query-by-image')
    _prepare(workspace, model_path, vocab_path, create=False)
    return _search('query-by-image', docs, k)


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
    # jina configures the root logger its own way: this script's lines get a handler of their own.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter('%(levelname)s %(message)s'))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        with jina_output_to_stderr():
            results = _run(args)
    except (FileNotFoundError, ValueError) as e:
        # a missing query image or index (NotIndexedError), an unreadable image
        # (ImageReadError), a checkpoint or vocabulary at fault: all name the thing at fault
        logger.error('%s', e)
        return 2
    sys.stdout.write(results)  # the real stdout, once the Flows are closed
    sys.stdout.flush()
    return 0


def _run(args) -> str:
    """Run the command; return what goes to stdout (the query results)."""
    common = dict(workspace=args.workspace, model_path=args.model_path, vocab_path=args.vocab_path)
    # Paths are taken relative to where the command was started, before the Flows change it.
    inputs = [str(Path(i).resolve()) if Path(i).exists() else i for i in args.inputs]
    if args.command == 'index-images':
        logger.info('indexed %d images', index_images(inputs, **common))
        return ''
    if args.command == 'index-captions':
        lines = [l for i in inputs for l in Path(i).read_text(encoding='utf-8').splitlines() if l.strip()]
        logger.info('indexed %d captions', index_captions(lines, **common))
        return ''
    if args.command == 'query-by-caption':
        queries, found = args.inputs, search_by_captions(args.inputs, k=args.k, **common)
    else:
        queries, found = inputs, search_by_images(inputs, k=args.k, **common)
    out = []
    for query, hits in zip(queries, found):
        out.append('# %s' % query)
        out.extend('%.4f\t%s' % hit for hit in hits)
    return ''.join(line + '\n' for line in out)


if __name__ == '__main__':
    sys.exit(main())
