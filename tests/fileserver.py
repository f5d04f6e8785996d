"""A local HTTP server on 127.0.0.1 serving files from memory, for the download tests, and the
published checksums swapped for those of the test files.

``FileServer({"name": b"bytes"})`` starts :class:`http.server.ThreadingHTTPServer`
on a free port in a thread; ``server.url`` is its folder URL; ``server.requests``
lists the paths asked for (so a test can prove the network was not used).
``server.truncate["name"] = n`` announces the whole file but sends only its
first ``n`` bytes, then closes the connection (a transfer cut short);
``server.stall["name"] = n`` sends ``n`` bytes, then holds the connection open
until the server stops (a download still under way, for Ctrl-C);
``server.garbage.add("name")`` answers with bytes that are not HTTP.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import socket
import threading

from npalexnet.data import cifar_pickle, fashionmnist
from npalexnet.data.download import Remote, RemoteFile


class FileServer:
    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.truncate: dict[str, int] = {}
        self.stall: dict[str, int] = {}
        self.garbage: set[str] = set()
        self.stalled = threading.Event()    # set once a stalled transfer has sent its bytes
        self.stopping = threading.Event()
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append(name)
                body = server.files.get(name)
                if name in server.garbage:
                    self.wfile.write(b"SSH-2.0-not-a-web-server\r\n\r\n")
                    self.close_connection = True
                    return
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if name in server.stall:
                    self.wfile.write(body[: server.stall[name]])
                    self.wfile.flush()
                    server.stalled.set()
                    server.stopping.wait(timeout=120)
                    return
                self.wfile.write(body[: server.truncate.get(name, len(body))])
                self.close_connection = True

            def log_message(self, *args):   # keep the test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port_url() -> str:
    """The URL of a port on 127.0.0.1 that nothing listens on (a refused connection)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def publish_cifar10(monkeypatch, md5_hex: str) -> None:
    """Make ``md5_hex`` the published checksum of the CIFAR-10 archive (a test archive's own)."""
    archive = RemoteFile(cifar_pickle.ARCHIVE.name, md5_hex)
    monkeypatch.setattr(cifar_pickle, "ARCHIVE", archive)
    monkeypatch.setattr(cifar_pickle, "REMOTE", Remote("CIFAR-10", cifar_pickle.REMOTE.url, (archive,)))


def publish_fashionmnist(monkeypatch, files: dict[str, bytes]) -> dict[str, bytes]:
    """gzip ``files`` (unpacked idx files by name) and make their MD5s the published ones.

    Returns the files to serve, by their published names (``*.gz``).
    """
    served = {f"{name}.gz": gzip.compress(data, mtime=0) for name, data in files.items()}
    remote = fashionmnist.REMOTE
    published = tuple(RemoteFile(f.name, md5(served[f.name])) for f in remote.files)
    monkeypatch.setattr(fashionmnist, "REMOTE", Remote(remote.dataset, remote.url, published))
    for attr, file in zip(("TRAIN_IMAGES", "TRAIN_LABELS", "TEST_IMAGES", "TEST_LABELS"), published):
        monkeypatch.setattr(fashionmnist, attr, file)
    return served
