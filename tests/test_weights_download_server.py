"""Helper (no tests): a real HTTP server on 127.0.0.1 for the weights-download tests.

Serves one payload at ``/<repo>/resolve/main/model_objaverse.ckpt`` (the Hugging Face layout, so
``checkpoint_url(server.base_url)`` points at it), optionally via a 302 redirect that carries
``X-Linked-Etag`` / ``X-Linked-Size`` like the hub does. It can honour or ignore ``Range``, drop
the connection after N body bytes (for the next ``drops`` responses), answer every request with an
error status (``fail_status``), announce a wrong ``Content-Length`` (``declared_length``) or none
at all (``send_length=False``: the body ends when the connection closes), redirect anywhere
(``redirect_to``), serve https with a given certificate (``certfile``), and records every request.
"""
import hashlib
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        with srv.lock:
            srv.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        if srv.fail_status:
            self.send_error(srv.fail_status)
            return
        if self.path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", srv.redirect_to or self.path[len("/redirect"):])
            self.send_header("X-Linked-Etag", f'"{srv.advertised_sha256 or hashlib.sha256(srv.payload).hexdigest()}"')
            self.send_header("X-Linked-Size", str(len(srv.payload)))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if not self.path.endswith("/model_objaverse.ckpt"):
            self.send_error(404)
            return
        data = srv.payload
        start = 0
        rng = self.headers.get("Range")
        if rng and srv.support_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        if srv.declared_length is not None:
            self.send_header("Content-Length", str(srv.declared_length))
        elif srv.send_length:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.close_connection = True
        self.send_header("ETag", '"v1"')
        self.send_header("Accept-Ranges", "bytes" if srv.support_range else "none")
        self.end_headers()
        with srv.lock:
            drop = srv.drops > 0 and srv.drop_after is not None
            if drop:
                srv.drops -= 1
        try:
            if drop:
                self.wfile.write(body[: srv.drop_after])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(body)
        except OSError:  # the client hung up (e.g. it refused the announced length)
            self.close_connection = True


class WeightsServer:
    """Context manager: ``with WeightsServer(payload) as srv: srv.url`` ..."""

    def __init__(self, payload: bytes, support_range=True, drop_after=None, drops=0,
                 advertised_sha256=None, fail_status=None, declared_length=None, send_length=True,
                 redirect_to=None, certfile=None):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.scheme = "http"
        if certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.httpd.declared_length = declared_length
        self.httpd.send_length = send_length
        self.httpd.redirect_to = redirect_to
        self.httpd.daemon_threads = True
        self.httpd.payload = payload
        self.httpd.support_range = support_range
        self.httpd.drop_after = drop_after
        self.httpd.drops = drops
        self.httpd.advertised_sha256 = advertised_sha256
        self.httpd.fail_status = fail_status
        self.httpd.requests = []
        self.httpd.lock = threading.Lock()
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self):
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def url(self):
        from model_runtime.weights_download import checkpoint_url

        return checkpoint_url(self.base_url)

    @property
    def redirect_url(self):
        return self.base_url + "/redirect" + self.url[len(self.base_url):]

    @property
    def requests(self):
        return list(self.httpd.requests)

    def file_requests(self):
        return [h for p, h in self.requests if not p.startswith("/redirect/")]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
