"""`isotrace top` in a real terminal (tmux) against a daemon seeing real traffic from two
named services (Python http.server, OTEL_SERVICE_NAME): the rows, their numbers and the
keys (filter, sort, reverse, help, resize to 80 and back, q and Ctrl-C restoring the
terminal); `--once --json` parses and agrees with the screen and, once traffic stops,
with the exact request and error counts the test sent. `isotrace trace` prints the tree
of a trace the test sent."""
import http.client
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

TAG = "%06x" % random.getrandbits(24)
ALPHA = "e2e-top-alpha-" + TAG
BETA = "e2e-top-beta-" + TAG
PREFIX = "e2e-top-"
errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)
        print("  MISMATCH: " + msg, flush=True)


class Traffic:
    """Steady request streams, one thread per service; counts what was answered."""

    def __init__(self):
        self.stop = threading.Event()
        self.sent = {}  # (service, status) -> n
        self.lock = threading.Lock()
        self.threads = []

    def run(self, service, port, rate, plan):
        def loop():
            i = 0
            period = 1.0 / rate
            nxt = time.time()
            while not self.stop.is_set():
                method, path = plan[i % len(plan)]
                i += 1
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    c.request(method, path)
                    r = c.getresponse()
                    r.read()
                    c.close()
                    with self.lock:
                        self.sent[(service, r.status)] = self.sent.get((service, r.status), 0) + 1
                except OSError as e:
                    print("traffic error %s: %s" % (service, e), flush=True)
                nxt += period
                time.sleep(max(0.0, nxt - time.time()))
        t = threading.Thread(target=loop, daemon=True)
        t.start()
        self.threads.append(t)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(10)

    def total(self, service, pred=lambda s: True):
        with self.lock:
            return sum(n for (svc, st), n in self.sent.items() if svc == service and pred(st))


class Tmux:
    def __init__(self, procs, width, height):
        self.sock = "isotrace-e2e-%d" % os.getpid()
        self.tmux("new-session", "-d", "-s", "top", "-x", str(width), "-y", str(height),
                  "env -i PATH=/usr/bin:/bin TERM=screen HOME=%s bash --norc --noprofile" % procs.tmp)
        self.tmux("set-option", "-t", "top", "status", "off")

    def tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True,
                              timeout=10).stdout

    def keys(self, *keys):
        self.tmux("send-keys", "-t", "top", *keys)

    def typed(self, text):
        self.tmux("send-keys", "-t", "top", "-l", text)

    def screen(self):
        return self.tmux("capture-pane", "-p", "-t", "top")

    def wait(self, pred, what, timeout=15):
        deadline = time.time() + timeout
        s = ""
        while time.time() < deadline:
            s = self.screen()
            if pred(s):
                return s
            time.sleep(0.2)
        h.fail("tmux: timed out waiting for %s; screen:\n%s" % (what, s))

    def close(self):
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True, timeout=10)


def table_lines(screen):
    """Our rows of the table, in screen order (not the selected row's detail line)."""
    return [l.split() for l in screen.splitlines()
            if l.split() and l.split()[0].startswith(PREFIX) and "total=" not in l]


def rows(screen):
    return {cells[0]: cells for cells in table_lines(screen)}


def order(screen):
    return [cells[0] for cells in table_lines(screen)]


def header(screen):
    for line in screen.splitlines():
        if line.startswith("SERVICE"):
            return line.rstrip()
    return None


def top_json(sock, *extra):
    out = subprocess.run([h.ISOTRACE, "top", "--socket", sock, "--json", "--window", "3",
                          "--filter", "svc:" + TAG, *extra], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        h.fail("isotrace top --json exited %d: %s" % (out.returncode, out.stderr))
    try:
        return json.loads(out.stdout)
    except ValueError as e:
        h.fail("isotrace top --json is not JSON (%s): %s" % (e, out.stdout[:500]))


def main():
    if shutil.which("tmux") is None:
        h.skip("tmux not installed (scripts/install-deps.sh)")
    if not os.access(h.ISOTRACE, os.X_OK):
        h.fail("isotrace not built at " + h.ISOTRACE)
    with h.Procs() as procs:
        sock = os.path.join(procs.tmp, "api.sock")
        daemon = h.start_daemon(procs, "--api-socket", sock, "--prometheus-listen", "",
                                "--summary-interval", "0")
        deadline = time.time() + 10
        while not os.path.exists(sock) and time.time() < deadline:
            time.sleep(0.1)
        if not os.path.exists(sock):
            h.fail("no API socket at %s:\n%s" % (sock, procs.log(daemon)))
        check(os.stat(sock).st_mode & 0o777 == 0o600, "API socket mode is %o, not 600" % (os.stat(sock).st_mode & 0o777))

        root = os.path.join(procs.tmp, "www")
        os.makedirs(root)
        with open(os.path.join(root, "index.html"), "w") as f:
            f.write("hello\n")
        ports = {}
        for svc in (ALPHA, BETA):
            ports[svc] = h.free_port()
            procs.start([sys.executable, "-m", "http.server", str(ports[svc]), "--bind", "127.0.0.1",
                         "--directory", root], svc, env=dict(os.environ, OTEL_SERVICE_NAME=svc))
        for svc in (ALPHA, BETA):
            if not h.wait_port(ports[svc]):
                h.fail(svc + " did not start")

        traffic = Traffic()
        traffic.run(ALPHA, ports[ALPHA], 40, [("GET", "/index.html")])
        # beta: 200, 404 and 501 (http.server does not implement PUT): errors are the 5xx.
        traffic.run(BETA, ports[BETA], 10, [("GET", "/index.html"), ("GET", "/missing"), ("PUT", "/x"),
                                            ("GET", "/index.html")])
        time.sleep(4)  # a full 3 s window of traffic

        tm = Tmux(procs, 120, 40)
        try:
            # The quotes keep the typed command line from matching what the wait looks for.
            cmd = "%s top --socket %s --window 3; echo \"TOP\"-EXITED $?" % (h.ISOTRACE, sock)
            tm.typed(cmd)
            tm.keys("Enter")
            s = tm.wait(lambda s: header(s) is not None and "daemon" in s, "the table")
            check("isotrace top - " in s, "no status line:\n" + s)

            # Filter with '/': only our two services remain.
            tm.keys("/")
            tm.typed(TAG)
            tm.keys("Enter")
            s = tm.wait(lambda s: len(rows(s)) == 2 and "filter '" in s, "two filtered rows")
            check(set(rows(s)) == {ALPHA, BETA}, "rows %s" % list(rows(s)))
            s = tm.wait(lambda s: order(s)[:2] == [ALPHA, BETA], "alpha (40/s) above beta (10/s)")
            r = rows(s)
            hdr = header(s).split()
            col = {name: i for i, name in enumerate(hdr)}
            a_rps, b_rps = float(r[ALPHA][col["REQ/S"]]), float(r[BETA][col["REQ/S"]])
            print("screen: alpha %.1f req/s, beta %.1f req/s, beta err %s%%" % (a_rps, b_rps, r[BETA][col["ERR%"]]))
            check(25 <= a_rps <= 55, "alpha REQ/S %s, sent at 40/s" % a_rps)
            check(6 <= b_rps <= 14, "beta REQ/S %s, sent at 10/s" % b_rps)
            check(r[ALPHA][col["ERR%"]] == "0.0", "alpha ERR%% %s, sent no errors" % r[ALPHA][col["ERR%"]])
            b_err = float(r[BETA][col["ERR%"]])
            check(15 <= b_err <= 35, "beta ERR%% %s, one in four is a 501" % b_err)
            for svc in (ALPHA, BETA):
                for c in ("P50", "P99"):
                    check(re.match(r"^[0-9.]+(us|ms|s)$", r[svc][col[c]]) is not None,
                          "%s %s cell %r" % (svc, c, r[svc][col[c]]))

            # --json agrees with the screen (same daemon, same window, a moment apart).
            j = top_json(sock)
            js = {w["service"]: w for w in j["workloads"]}
            check(set(js) == {ALPHA, BETA}, "json workloads %s" % list(js))
            check(j["mode"] == "daemon" and j["window_seconds"] == 3, "json header %s" % {k: j[k] for k in ("mode", "window_seconds")})
            for svc, shown in ((ALPHA, a_rps), (BETA, b_rps)):
                if svc in js:
                    got = js[svc]["requests_per_second"]
                    check(abs(got - shown) <= max(3.0, 0.25 * shown), "%s: json %.1f req/s vs screen %.1f" % (svc, got, shown))
                    check(daemon_pid_ok(js[svc], procs, svc), "%s: json pids %s are not the server's" % (svc, js[svc]["pids"]))

            # 'r' reverses; 'S' twice goes back to SERVICE, ascending.
            tm.keys("r")
            tm.wait(lambda s: order(s)[:2] == [BETA, ALPHA] and "asc" in s, "reversed order")
            tm.keys("S")
            tm.keys("S")
            s = tm.wait(lambda s: "sort SERVICE asc" in s, "sort by service")
            check(order(s)[:2] == [ALPHA, BETA], "service order %s" % order(s))

            # Help, then any key back.
            tm.keys("h")
            tm.wait(lambda s: "isotrace top - keys" in s and "Ctrl-C" in s, "the help screen")
            tm.keys("x")
            tm.wait(lambda s: header(s) is not None, "the table after help")

            # Esc clears the filter.
            tm.keys("Escape")
            tm.wait(lambda s: "filter '" not in s and len(rows(s)) == 2, "the filter cleared")

            # q exits with 0 and leaves the terminal as it found it.
            tm.keys("q")
            s = tm.wait(lambda s: re.search(r"^TOP-EXITED \d+", s, re.M), "top to exit")
            check(re.search(r"^TOP-EXITED 0$", s, re.M), "exit status: %s" % s[-200:])
            check(header(s) is None, "the table is still on the screen after q:\n" + s)
            tm.typed("clear; stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e echo -e -icanon -e -echo")
            tm.keys("Enter")
            s = tm.wait(lambda s: re.search(r"^-?icanon$", s, re.M), "stty")
            lines = s.splitlines()
            check("icanon" in lines and "echo" in lines and "-icanon" not in lines and "-echo" not in lines,
                  "terminal not restored after q: " + s)

            # Second run: resizing (tmux keeps what a full-screen program drew across a
            # resize in the normal screen too, procps top included, so the restored-screen
            # check above is done on the run without resizes), then Ctrl-C.
            tm.typed("clear; " + cmd.replace("--window 3", "--window 3 --filter " + TAG))
            tm.keys("Enter")
            tm.wait(lambda s: len(rows(s)) == 2, "the table again")
            # Resize: 80 columns fit without VERDICT; 140 show it.
            tm.tmux("resize-window", "-t", "top", "-x", "80", "-y", "40")
            s = tm.wait(lambda s: header(s) is not None and "VERDICT" not in header(s) and len(header(s)) <= 80,
                        "the 80-column layout")
            check(header(s).endswith("STEAL RTX/s"), "80-column header: %r" % header(s))
            check(all(len(l.rstrip()) <= 80 for l in s.splitlines()), "a line wider than 80 columns")
            check(len(rows(s)) == 2, "rows at 80 columns: %s" % list(rows(s)))
            tm.tmux("resize-window", "-t", "top", "-x", "140", "-y", "40")
            tm.wait(lambda s: header(s) is not None and "VERDICT" in header(s), "the wide layout")

            tm.tmux("resize-window", "-t", "top", "-x", "120", "-y", "40")
            tm.wait(lambda s: header(s) is not None and len(header(s)) <= 120, "back to 120 columns")
            tm.keys("C-c")
            s = tm.wait(lambda s: re.search(r"^TOP-EXITED \d+", s, re.M), "top to exit on Ctrl-C")
            check(re.search(r"^TOP-EXITED 0$", s, re.M), "exit status after Ctrl-C: %s" % s[-200:])
            tm.typed("clear; stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e echo -e -icanon -e -echo")
            tm.keys("Enter")
            s = tm.wait(lambda s: re.search(r"^-?icanon$", s, re.M), "stty")
            lines = s.splitlines()
            check("icanon" in lines and "echo" in lines and "-icanon" not in lines and "-echo" not in lines,
                  "terminal not restored after Ctrl-C: " + s)
        finally:
            tm.close()

        # Exact totals once the traffic has stopped and the last spans are in.
        traffic.finish()
        time.sleep(2)
        j = top_json(sock)
        js = {w["service"]: w for w in j["workloads"]}
        for svc in (ALPHA, BETA):
            sent = traffic.total(svc)
            errs = traffic.total(svc, lambda st: st >= 500)
            got = js.get(svc, {})
            print("%s: sent %d (%d 5xx); json total_requests %s total_errors %s" % (
                svc, sent, errs, got.get("total_requests"), got.get("total_errors")))
            check(got.get("total_requests") == sent, "%s total_requests %s != %d sent" % (svc, got.get("total_requests"), sent))
            check(got.get("total_errors") == errs, "%s total_errors %s != %d" % (svc, got.get("total_errors"), errs))

        # --once prints the same table as text.
        once = subprocess.run([h.ISOTRACE, "top", "--socket", sock, "--once", "--width", "160",
                               "--filter", TAG, "--sort", "service"], capture_output=True, text=True, timeout=30)
        check(once.returncode == 0, "--once exited %d: %s" % (once.returncode, once.stderr))
        check(order(once.stdout) == [ALPHA, BETA], "--once rows: %s" % once.stdout)

        # isotrace trace: one request with a known trace id becomes a one-span tree.
        trace_id = "%032x" % random.getrandbits(128)
        c = http.client.HTTPConnection("127.0.0.1", ports[ALPHA], timeout=5)
        c.request("GET", "/index.html?trace", headers={"traceparent": "00-%s-00f067aa0ba902b7-01" % trace_id})
        c.getresponse().read()
        c.close()
        time.sleep(1)
        out = subprocess.run([h.ISOTRACE, "trace", trace_id, "--socket", sock, "--width", "100"],
                             capture_output=True, text=True, timeout=30)
        print(out.stdout)
        check(out.returncode == 0, "isotrace trace exited %d: %s" % (out.returncode, out.stderr))
        # One SERVER span (the test's own http.client may add its CLIENT span).
        check(re.search(r"^trace %s: \d+ spans? on this node" % trace_id, out.stdout, re.M) is not None,
              "trace header: " + out.stdout)
        check(re.search(r"GET /index.html 200  %s\[\d+\]" % re.escape(ALPHA), out.stdout) is not None,
              "trace span line: " + out.stdout)
        missing = subprocess.run([h.ISOTRACE, "trace", "%032x" % 1, "--socket", sock], capture_output=True,
                                 text=True, timeout=30)
        check(missing.returncode == 1 and "no span of trace" in missing.stderr, "unknown trace: %s" % missing.stderr)

        rc = procs.stop(daemon)
        check(rc == 0, "isotraced exited %s" % rc)
        check(not os.path.exists(sock), "the API socket outlived the daemon")
        if errors:
            h.fail("%d mismatches:\n  %s" % (len(errors), "\n  ".join(errors)))
        print("PASS")


def daemon_pid_ok(w, procs, svc):
    """The workload's pids include the server process the test started."""
    for p in procs.procs:
        if getattr(p, "_isotrace_name", "") == svc:
            return p.pid in w["pids"]
    return False


if __name__ == "__main__":
    main()
