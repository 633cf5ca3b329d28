"""A git server over HTTPS on 127.0.0.1 (git's own `git http-backend` behind a tiny CGI bridge), like GitHub's:
anyone may fetch, pushing needs `Authorization: Basic base64(x-access-token:TOKEN)`. A request without credentials
that needs them gets GitHub's challenge, `401` with `WWW-Authenticate: Basic`: only then does git ask its credential
helper.

Its certificate is self-signed; point git at it with `GIT_SSL_CAINFO`.
"""

import base64
import shutil
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command; (cert, key)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def available() -> bool:
    return shutil.which("openssl") is not None and Path(HTTP_BACKEND).exists()


class GitHttpsServer:
    """Serves the bare repositories under `root` (`root/OWNER/NAME`) at https://127.0.0.1:PORT/OWNER/NAME."""

    def __init__(self, root: Path, *, token: str, cert: Path, key: Path, private: bool = False):
        """`private`: fetching needs the token too, as for a private GitHub repository."""
        self.root, self.token, self.private = root, token, private
        self.pushes: list[dict] = []
        """One entry per receive-pack request that came with credentials: path and whether its token was right
        (never the header)."""
        self.challenges: list[str] = []
        """The path of each request answered with a 401 challenge because it came without credentials."""
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> str:
        owner = self

        class Handler(_Handler):
            server_of = owner

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.socket = self._context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def authorized(self, header: str | None) -> bool:
        expected = "Basic " + base64.b64encode(f"x-access-token:{self.token}".encode()).decode()
        return header == expected


class _Handler(BaseHTTPRequestHandler):
    server_of: GitHttpsServer

    def do_GET(self):
        self._cgi("GET")

    def do_POST(self):
        self._cgi("POST")

    def _cgi(self, method: str) -> None:
        url = urlparse(self.path)
        pushing = "git-receive-pack" in url.path or "service=git-receive-pack" in url.query
        header = self.headers.get("Authorization")
        authorized = self.server_of.authorized(header)
        if pushing and header is not None:
            self.server_of.pushes.append({"path": url.path, "authorized": authorized})
        if pushing or self.server_of.private:
            if not authorized:
                if header is None:
                    self.server_of.challenges.append(url.path)
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = self._body()
        env = {
            "GIT_PROJECT_ROOT": str(self.server_of.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": method,
            "PATH_INFO": url.path,
            "QUERY_STRING": url.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "PATH": "/usr/bin:/bin",
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        if pushing:
            env["REMOTE_USER"] = "x-access-token"
        done = subprocess.run([HTTP_BACKEND], input=body, env=env, capture_output=True, check=False)
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        headers = [line.split(":", 1) for line in head.decode().split("\r\n") if ":" in line]
        status = next((int(v.strip().split()[0]) for k, v in headers if k.lower() == "status"), 200)
        self.send_response(status)
        for name, value in headers:
            if name.lower() != "status":
                self.send_header(name, value.strip())
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def log_message(self, *_args) -> None:
        pass


class StallingServer:
    """A host that accepts TCP connections on 127.0.0.1 and then never says a word (not even TLS's first): what a
    tarpit, or a port that an attacker's URL names, does to a clone."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._connections: list[socket.socket] = []
        self._accepted = 0
        self._lock = threading.Lock()
        self._stopped = False
        self.url = f"https://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def accepted(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return self._accepted

    def stop(self) -> None:
        """Close every connection (a git still waiting then fails at once) and the listener."""
        with self._lock:
            self._stopped = True
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._stopped:
                    connection.close()
                    return
                self._connections.append(connection)
                self._accepted += 1
