"""A release-layout archive and a real HTTP server on 127.0.0.1 that serves it."""
import http.server
import io
import tarfile
import threading
from pathlib import Path


def write_release_archive(path: Path, members: dict) -> Path:
    """An uncompressed tar like runs.tar: {member name: bytes or a file path}."""
    with tarfile.open(str(path), 'w') as tar:
        tar.addfile(_dir_info('runs'))
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
    """Serves one file at /runs.tar. ``truncate_at`` makes it announce the full length but
    hang up after that many bytes, as a broken transfer does. Counts bytes actually sent."""

    def __init__(self, archive: Path, truncate_at=None):
        self.archive, self.truncate_at, self.bytes_sent = Path(archive), truncate_at, 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != '/runs.tar':
                    self.send_error(404)
                    return
                data = server.archive.read_bytes()
                self.send_response(200)
                self.send_header('Content-Type', 'application/x-tar')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                limit = len(data) if server.truncate_at is None else server.truncate_at
                try:
                    for i in range(0, limit, 65536):
                        chunk = data[i:min(i + 65536, limit)]
                        self.wfile.write(chunk)
                        server.bytes_sent += len(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading: what a streaming download should do
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = 'http://127.0.0.1:%d/runs.tar' % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
