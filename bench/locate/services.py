"""The services of the localization benchmark's chain, one process each (standard library).

  services.py svc-b --port P --downstream HOST:PORT --control FILE --scratch DIR
  services.py svc-c --port P --db HOST:PORT --control FILE --data FILE [--data-mb N]
  services.py db    --host H --port P --control FILE

None of them propagates trace context: svc-b calls svc-c with the same path and query it
received (the query is the business key the harness matches spans by), but no headers.

Fault switches come from one JSON control file (never from the traced ports, which would
make extra spans): {"svc-b": {...}, "svc-c": {...}, "db": {...}}, re-read when its mtime
changes. Keys (defaults in DEFAULTS):
  svc-b.cpu_ms          CPU burnt per request (thread CPU time)
  svc-b.extra_cpu_ms    more CPU on every `extra_every`-th request   (fault slow_app)
  svc-b.extra_every     1 = every request
  svc-b.fsync_rounds    write+fdatasync rounds per request            (fault block_io, own)
  svc-b.fsync_kib       KiB written per round
  svc-b.fresh_conn      1 = a new connection to svc-c per call        (fault syn_loss)
  svc-c.cpu_ms          CPU burnt per request
  svc-c.read_mb         MiB of the data file read through the page cache per request
  svc-c.alloc_mb        MiB of anonymous memory allocated and touched per request
  svc-c.serial_busy_ms  >0: one request at a time, and the single worker is busy this
                        long (off CPU) before it reads each request   (faults queue, accept_queue)
  svc-c.accept_backlog  >0: the listen backlog (listen() again), and the single worker
                        also accepts: connections wait in the kernel's accept queue, and
                        SYNs beyond it are dropped                    (fault accept_queue)
  db.delay_ms           delay before each answer                       (fault slow_downstream)
"""
import argparse
import hashlib
import http.client
import http.server
import json
import mmap
import os
import queue
import select
import socket
import socketserver
import sys
import threading
import time

DEFAULTS = {
    "svc-b": {"cpu_ms": 2.0, "extra_cpu_ms": 0.0, "extra_every": 1, "fsync_rounds": 1, "fsync_kib": 4,
              "fresh_conn": 0},
    "svc-c": {"cpu_ms": 3.0, "read_mb": 4, "alloc_mb": 0, "fail_status": 0, "serial_busy_ms": 0.0,
              "accept_backlog": 0},
    "db": {"delay_ms": 1.0},
}


class Control:
    """The service's section of the control file, reloaded when the file changes."""

    def __init__(self, path, section):
        self.path, self.section = path, section
        self.mtime = None
        self.values = dict(DEFAULTS[section])
        self.lock = threading.Lock()

    def get(self):
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError:
            return self.values
        if mtime != self.mtime:
            with self.lock:
                try:
                    with open(self.path) as f:
                        data = json.load(f)
                    v = dict(DEFAULTS[self.section])
                    v.update(data.get(self.section, {}))
                    self.values, self.mtime = v, mtime
                except (OSError, ValueError):
                    pass  # a half-written file: keep the last good values
        return self.values


BURN_BUF = bytes(64 * 1024)


def burn(ms):
    """Spends `ms` of this thread's CPU time hashing: hashlib lets go of the GIL for
    buffers this large, so other handler threads of the process keep running (on-CPU
    work as in a multi-threaded server, not a queue for the interpreter lock)."""
    end = time.thread_time() + ms / 1000.0
    while time.thread_time() < end:
        hashlib.sha256(BURN_BUF).digest()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *a):
        pass

    def handle_one_request(self):
        busy = self.server.serial_busy_ms()
        if not busy:
            return super().handle_one_request()
        # A single busy worker: wait for the next request without holding the worker (an
        # idle keep-alive connection must not block the others), then queue for it. The
        # request waits in this socket, unread, while the worker is busy elsewhere. Nobody
        # pipelines here, so nothing waits in rfile's buffer when the socket is empty.
        select.select([self.connection], [], [])
        try:
            eof = self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            eof = True
        if eof:  # the caller closed: nothing to serve, and no reason to be busy
            self.close_connection = True
            return
        with self.server.single:
            time.sleep(busy / 1000.0)
            return super().handle_one_request()

    def do_GET(self):
        try:
            status, body = self.server.work(self.path)
        except Exception as e:  # noqa: BLE001 — answer 502 and keep serving
            status, body = 502, ("error: %s\n" % e).encode()
        # Head and body in one write (two would meet Nagle + delayed ACK: +40 ms a hop).
        reason = {200: "OK", 502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "Error")
        self.wfile.write(("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
                          % (status, reason, len(body))).encode() + body)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True
    single = threading.Lock()

    def serial_busy_ms(self):
        return 0.0

    def accept_backlog(self):
        return 0

    def service_actions(self):
        # Between accepts (serve_forever's loop): follow the control's backlog.
        want = self.accept_backlog() or self.request_queue_size
        if want != getattr(self, "_backlog", self.request_queue_size):
            self.socket.listen(want)  # Linux resizes a listening socket's queue in place
            self._backlog = want

    def process_request(self, request, client_address):
        if not self.accept_backlog():
            return super().process_request(request, client_address)
        # The single worker accepts too: the next connection waits in the accept queue
        # until this one is served.
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 — a broken peer must not stop the accept loop
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
        self.service_actions()


class Pool:
    """Keep-alive connections shared by the handler threads (a new one when all are busy),
    so a call is a request on an established connection, not a connect."""

    def __init__(self, factory):
        self.factory = factory
        self.free = queue.LifoQueue()

    def call(self, fn):
        for attempt in range(2):
            try:
                conn = self.free.get_nowait()
            except queue.Empty:
                conn = self.factory()
            try:
                out = fn(conn)
            except (OSError, http.client.HTTPException, EOFError):
                try:
                    conn.close()
                except OSError:
                    pass
                if attempt == 1:
                    raise
                continue
            self.free.put(conn)
            return out


# ---- svc-b ---------------------------------------------------------------------------

def run_svc_b(a):
    ctl = Control(a.control, "svc-b")
    host, port = a.downstream.rsplit(":", 1)
    pool = Pool(lambda: http.client.HTTPConnection(host, int(port), timeout=60))
    scratch = os.path.join(a.scratch, "svc-b-fsync.bin")
    fd = os.open(scratch, os.O_RDWR | os.O_CREAT, 0o644)
    os.posix_fallocate(fd, 0, 4 << 20)  # overwritten in place: fdatasync waits for data only
    os.fsync(fd)
    chunk = os.urandom(64 * 1024)
    counter = [0]
    lock = threading.Lock()

    def get(conn, path):
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()

    def work(path):
        c = ctl.get()
        with lock:
            counter[0] += 1
            n = counter[0]
        ms = float(c["cpu_ms"])
        if c["extra_cpu_ms"] and n % max(1, int(c["extra_every"])) == 0:
            ms += float(c["extra_cpu_ms"])
        burn(ms)
        kib = int(c["fsync_kib"])
        data = (chunk * (1 + kib // 64))[:kib * 1024]
        for i in range(int(c["fsync_rounds"])):
            os.pwrite(fd, data, ((n * 7 + i) % 64) * 64 * 1024)
            os.fdatasync(fd)
        if c["fresh_conn"]:
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            try:
                status, body = get(conn, path)
            finally:
                conn.close()
        else:
            status, body = pool.call(lambda conn: get(conn, path))
        return (200 if status == 200 else 502), b"b:" + body

    srv = Server(("127.0.0.1", a.port), Handler)
    srv.work = work
    print("svc-b listening on 127.0.0.1:%d" % a.port, flush=True)
    srv.serve_forever()


# ---- svc-c ---------------------------------------------------------------------------

class DbConn:
    """One connection to db. Blocking reads by default (the thread blocks in recvfrom);
    with poll=True the socket has a timeout, and CPython then waits in poll() before each
    recv, as libpq and the MySQL client do."""

    def __init__(self, host, port, poll=False):
        self.sock = socket.create_connection((host, port), timeout=60)
        if not poll:
            self.sock.settimeout(None)
        self.rf = self.sock.makefile("rb")

    def query(self, line):
        self.sock.sendall(line.encode() + b"\n")
        reply = self.rf.readline()
        if not reply:
            raise EOFError("db closed the connection")
        return reply

    def close(self):
        self.rf.close()
        self.sock.close()


def run_svc_c(a):
    ctl = Control(a.control, "svc-c")
    dbh, dbp = a.db.rsplit(":", 1)
    pool = Pool(lambda: DbConn(dbh, int(dbp), poll=a.db_poll))
    local = threading.local()
    # The data file is written from inside the container, so its page cache is charged to
    # the container's memory cgroup (what the memory fault squeezes).
    if not os.path.exists(a.data) or os.path.getsize(a.data) != a.data_mb << 20:
        with open(a.data + ".tmp", "wb") as f:
            for _ in range(a.data_mb):
                f.write(os.urandom(1 << 20))
            f.flush()
            os.fsync(f.fileno())
        os.replace(a.data + ".tmp", a.data)

    def work(path):
        c = ctl.get()
        burn(float(c["cpu_ms"]))
        alloc = None
        if c["alloc_mb"]:
            # Anonymous scratch memory, touched page by page (each page charged to the
            # memory cgroup) and unmapped after the request: a bounded footprint per request.
            size = int(c["alloc_mb"]) << 20
            alloc = mmap.mmap(-1, size)
            for off in range(0, size, 4096):
                alloc[off] = 1
        # Read into a small per-thread buffer: anonymous memory stays flat however many
        # requests run at once (what the memory fault squeezes is the page cache).
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = memoryview(bytearray(64 * 1024))
        left = int(float(c["read_mb"]) * (1 << 20))
        with open(a.data, "rb", buffering=0) as f:
            while left > 0:
                n = f.readinto(buf[:min(left, len(buf))])
                if not n:
                    f.seek(0)
                    continue
                left -= n
        if alloc is not None:
            alloc.close()
        if c["fail_status"]:
            # A failing release: the answer is an HTTP error, the db is not asked.
            return int(c["fail_status"]), b"c: unavailable\n"
        key = path.split("?", 1)[1] if "?" in path else path
        reply = pool.call(lambda conn: conn.query("Q " + key))
        return 200, b"c:" + reply

    srv = Server(("0.0.0.0", a.port), Handler)
    srv.work = work
    srv.serial_busy_ms = lambda: float(ctl.get()["serial_busy_ms"])
    srv.accept_backlog = lambda: int(ctl.get()["accept_backlog"])
    print("svc-c listening on 0.0.0.0:%d" % a.port, flush=True)
    srv.serve_forever()


# ---- db ------------------------------------------------------------------------------

def run_db(a):
    ctl = Control(a.control, "db")

    class LineHandler(socketserver.StreamRequestHandler):
        def handle(self):
            while True:
                line = self.rfile.readline()
                if not line:
                    return
                d = float(ctl.get()["delay_ms"])
                if d > 0:
                    time.sleep(d / 1000.0)
                self.wfile.write(b"OK " + str(len(line)).encode() + b"\n")
                self.wfile.flush()

    class TcpServer(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 256

    srv = TcpServer((a.host, a.port), LineHandler)
    print("db listening on %s:%d" % (a.host, a.port), flush=True)
    srv.serve_forever()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=["svc-b", "svc-c", "db"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--control", required=True)
    ap.add_argument("--downstream")
    ap.add_argument("--db")
    ap.add_argument("--scratch", default="/var/tmp")
    ap.add_argument("--data")
    ap.add_argument("--data-mb", type=int, default=8)
    ap.add_argument("--db-poll", action="store_true", help="svc-c waits for db in poll() before recv")
    a = ap.parse_args()
    {"svc-b": run_svc_b, "svc-c": run_svc_c, "db": run_db}[a.role](a)


if __name__ == "__main__":
    sys.exit(main())
