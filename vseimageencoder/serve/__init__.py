"""``vseimageencoder serve``: a search page and a JSON API over an index. Importing this package
imports neither torch nor the web stack.
"""
from vseimageencoder.serve.errors import BadRequest, NotFound, RequestError, TooLarge, Unavailable
from vseimageencoder.serve.service import DEFAULT_K, MAX_CAPTION_CHARS, MAX_K, Hit, SearchService

__all__ = ['BadRequest', 'DEFAULT_K', 'Hit', 'MAX_CAPTION_CHARS', 'MAX_K', 'NotFound',
           'RequestError', 'SearchService', 'TooLarge', 'Unavailable', 'create_app']


def create_app(*args, **kwargs):
    """:func:`vseimageencoder.serve.app.create_app` (imports Starlette when called)."""
    from vseimageencoder.serve.app import create_app as _create
    return _create(*args, **kwargs)
