"""Release-layout archives and a real HTTP server on 127.0.0.1 that serves them."""
import http.server
import io
import tarfile
import threading
from pathlib import Path
from typing import Dict, Optional, Union


def write_release_archive(path: Path, members: dict) -> Path:
    """An uncompressed tar like runs.tar or vocab.tar: {member name: bytes or a file path}.

    Each top-level folder (``runs``, ``vocab``) gets a directory entry first, as tar does.
    """
    with tarfile.open(str(path), 'w') as tar:
        for folder in dict.fromkeys(n.split('/', 1)[0] for n in members if '/' in n):
            tar.addfile(_dir_info(folder))
        for name, content in members.items():
            data = Path(content).read_bytes() if isinstance(content, Path) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _dir_info(name):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info


class ArchiveServer:
    """Serves archive files over HTTP on 127.0.0.1, as the authors' site serves runs.tar and
    vocab.tar.

    ``archives`` is one file (served at /runs.tar) or {URL path: file}, e.g.
    ``{'/runs.tar': runs, '/vocab.tar': vocab}``; anything else is a 404. ``truncate_at``
    makes a path announce its full length but hang up after that many bytes, as a broken
    transfer does: an int applies to every path, a dict to the paths it names. Bytes
    actually sent are counted per path in ``sent`` and in all in ``bytes_sent``.
    """

    def __init__(self, archives: Union[Path, str, Dict[str, Path]],
                 truncate_at: Union[None, int, Dict[str, int]] = None):
        if not isinstance(archives, dict):
            archives = {'/runs.tar': archives}
        self.archives = {p: Path(a) for p, a in archives.items()}
        self.truncate_at = truncate_at
        self.sent: Dict[str, int] = {p: 0 for p in self.archives}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                archive = server.archives.get(self.path)
                if archive is None:
                    self.send_error(404)
                    return
                data = archive.read_bytes()
                self.send_response(200)
                self.send_header('Content-Type', 'application/x-tar')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                cut = server._cut(self.path)
                limit = len(data) if cut is None else cut
                try:
                    for i in range(0, limit, 65536):
                        chunk = data[i:min(i + 65536, limit)]
                        self.wfile.write(chunk)
                        server.sent[self.path] += len(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading: what a streaming download should do
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.base = 'http://127.0.0.1:%d' % self.httpd.server_address[1]
        #: The URL of the first archive (runs.tar when given one file).
        self.url = self.url_for(next(iter(self.archives)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url_for(self, path: str) -> str:
        return self.base + path

    @property
    def bytes_sent(self) -> int:
        return sum(self.sent.values())

    def _cut(self, path: str) -> Optional[int]:
        if isinstance(self.truncate_at, dict):
            return self.truncate_at.get(path)
        return self.truncate_at

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
