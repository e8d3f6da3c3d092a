"""The web app (Starlette): the page, its assets and the JSON API over a :class:`SearchService`."""
import asyncio
import logging
from importlib import resources
from typing import Dict, List, Optional, Tuple

from vseimageencoder.serve.errors import BadRequest, RequestError, TooLarge
from vseimageencoder.serve.service import DEFAULT_K, MAX_CAPTION_CHARS, MAX_K, Hit, SearchService, parse_id, parse_k
from vseimageencoder.serve.thumbnails import DEFAULT_CACHE_BYTES, LARGE_SIZE, THUMBNAIL_SIZE, RenditionCache
from vseimageencoder.serve.uploads import DEFAULT_MAX_UPLOAD_BYTES, upload_pixels

logger = logging.getLogger(__name__)

#: URL name -> (package file, content type): the page and everything it loads.
ASSETS: Dict[str, Tuple[str, str]] = {
    '/': ('index.html', 'text/html; charset=utf-8'),
    '/static/app.js': ('app.js', 'text/javascript; charset=utf-8'),
    '/static/style.css': ('style.css', 'text/css; charset=utf-8'),
}
#: What a multipart envelope may add to the photo inside it (boundaries, part headers).
MULTIPART_SLACK = 64 * 1024
#: A declared body this many times over the limit is refused without reading it; a smaller
#: one is read and discarded, so the client gets to read the 413 instead of a reset.
DRAIN_FACTOR = 4

_SECURITY_HEADERS = {
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    # The page loads nothing from anywhere but this server.
    'Content-Security-Policy': "default-src 'self'; img-src 'self' blob:; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'",
}


def _asset(name: str) -> bytes:
    return resources.files(__package__).joinpath('static', name).read_bytes()


def create_app(service: SearchService, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               max_pixels: Optional[int] = None, max_k: int = MAX_K,
               cache_bytes: int = DEFAULT_CACHE_BYTES):
    """A Starlette app serving ``service``.

    Every parameter is checked by the service's own functions, so each error names its
    fault; every response to a bad request is JSON ``{"error": MESSAGE, "status": CODE}``.
    Files are reached only by id through the index and the page's assets are a fixed table
    read from the package, so no request path ever becomes a file path; no docs pages that
    would load scripts from a CDN are served.

    :param max_upload_bytes: largest photo accepted by ``POST /api/search`` (413 above).
    :param max_pixels: most pixels an uploaded photo may declare (413 above, nothing decoded;
        None: the package's reading limit,
        :data:`vseimageencoder.images.read.MAX_IMAGE_PIXELS`).
    :param max_k: most results one query may ask for (400 above).
    :param cache_bytes: memory for thumbnails and larger views.
    """
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    assets = {path: (_asset(name), ctype) for path, (name, ctype) in ASSETS.items()}
    renditions = RenditionCache(service.file, cache_bytes)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({'error': message, 'status': status}, status_code=status,
                            headers=_SECURITY_HEADERS)

    def answer(query, hits: List[Hit]) -> JSONResponse:
        return JSONResponse({'query': query, 'results': [
            {'id': h.id, 'file': h.file, 'score': h.score,
             'thumbnail': '/api/thumbnail/%d' % h.id, 'image': '/api/image/%d' % h.id}
            for h in hits]}, headers=_SECURITY_HEADERS)

    async def run_query(kind: str, value, k: int) -> List[Hit]:
        return await asyncio.wrap_future(service.submit(kind, value, k))

    def k_of(request) -> int:
        return parse_k(request.query_params.get('k'), DEFAULT_K, max_k)

    async def page(request):
        body, ctype = assets[request.url.path]
        return Response(body, media_type=ctype, headers=dict(_SECURITY_HEADERS, **{
            'Cache-Control': 'no-cache'}))

    async def search_get(request):
        k = k_of(request)
        caption = request.query_params.get('q')
        hits = await run_query('caption', caption, k)
        return answer({'caption': caption.strip(), 'k': k}, hits)

    async def search_post(request):
        k = k_of(request)
        data, name = await read_upload(request)
        pixels = await run_in_threadpool(upload_pixels, data, service.resize, max_pixels)
        hits = await run_query('pixels', pixels, k)
        return answer({'image': name, 'bytes': len(data), 'k': k}, hits)

    async def similar(request):
        k = k_of(request)
        image_id = parse_id(request.path_params['image_id'])
        hits = await run_query('id', image_id, k)
        return answer({'id': image_id, 'k': k}, hits)

    def rendition(size: int):
        async def endpoint(request):
            image_id = parse_id(request.path_params['image_id'])
            data = await run_in_threadpool(renditions.get, image_id, size)
            return Response(data, media_type='image/jpeg', headers=dict(_SECURITY_HEADERS, **{
                'Cache-Control': 'private, max-age=3600'}))
        return endpoint

    async def healthz(request):
        return JSONResponse(dict(service.stats(), status='ok', max_k=max_k,
                                 max_caption_chars=MAX_CAPTION_CHARS,
                                 max_upload_bytes=max_upload_bytes,
                                 renditions={'cached': renditions.hits, 'made': renditions.misses}))

    async def read_upload(request) -> Tuple[bytes, str]:
        """The uploaded photo: the multipart field ``image``, or the whole body."""
        limit = max_upload_bytes
        ctype = request.headers.get('content-type', '')
        multipart = ctype.startswith('multipart/form-data')
        allowed = limit + (MULTIPART_SLACK if multipart else 0)
        declared = request.headers.get('content-length')
        too_large = TooLarge('the upload is larger than this server accepts (%d bytes, %.0f MB)'
                             % (limit, limit / 2 ** 20))
        if declared and declared.isdigit() and int(declared) > DRAIN_FACTOR * allowed:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > DRAIN_FACTOR * allowed:
                raise too_large
            if size <= allowed:
                chunks.append(chunk)
        if size > allowed:
            raise too_large
        body = b''.join(chunks)
        if not multipart:
            return body, 'request body'

        async def replay():
            return {'type': 'http.request', 'body': body, 'more_body': False}

        try:
            form = await Request(request.scope, replay).form(max_files=1, max_fields=8)
        except HTTPException as e:  # malformed multipart, too many parts
            raise BadRequest('the multipart upload cannot be parsed: %s' % e.detail) from None
        try:
            field = form.get('image')
            if field is None:
                raise BadRequest('the multipart upload has no field "image" (fields sent: %s)'
                                 % (', '.join(sorted(form.keys())) or 'none'))
            if isinstance(field, str):
                raise BadRequest('the multipart field "image" is text, not a file')
            data = await field.read()
            if len(data) > limit:
                raise too_large
            return data, field.filename or 'image'
        finally:
            await form.close()

    async def on_request_error(request, exc: RequestError):
        if exc.status >= 500:
            logger.warning('%s %s: %s', request.method, request.url.path, exc.message)
        return error(exc.status, exc.message)

    async def on_http_error(request, exc):
        messages = {404: 'no such page or resource: %s' % request.url.path[:200],
                    405: '%s is not allowed on %s' % (request.method, request.url.path[:200])}
        return error(exc.status_code, messages.get(exc.status_code, str(exc.detail)))

    async def on_unexpected(request, exc):
        logger.exception('%s %s failed', request.method, request.url.path)
        return error(500, 'the server failed on this request (%s); see its log'
                     % type(exc).__name__)

    routes = [Route(path, page, methods=['GET', 'HEAD']) for path in assets]
    routes += [
        Route('/api/search', search_get, methods=['GET']),
        Route('/api/search', search_post, methods=['POST']),
        Route('/api/similar/{image_id}', similar, methods=['GET']),
        Route('/api/thumbnail/{image_id}', rendition(THUMBNAIL_SIZE), methods=['GET', 'HEAD']),
        Route('/api/image/{image_id}', rendition(LARGE_SIZE), methods=['GET', 'HEAD']),
        Route('/healthz', healthz, methods=['GET']),
    ]
    app = Starlette(routes=routes, exception_handlers={
        RequestError: on_request_error, HTTPException: on_http_error, Exception: on_unexpected})
    app.state.service = service
    app.state.renditions = renditions
    return app
