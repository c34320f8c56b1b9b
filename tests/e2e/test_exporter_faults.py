"""The OTLP exporter against a misbehaving, real receiver (the independent npm one), with
real HTTP traffic through nginx, in one daemon run:

  A  receiver down when the daemon starts, up 2 s later        → delivery starts
  B  receiver SIGKILLed mid-stream, restarted on the same port → delivery resumes
  C  receiver slower than the export deadline, then fast       → DEADLINE_EXCEEDED, retried
  D  each gRPC status code 1..16 in turn (one span each), and RESOURCE_EXHAUSTED with a
     RetryInfo delay                                          → retryable codes retried and
     delivered, the others dropped after exactly one call, the server's delay honoured
  E  partial success                                           → counted as rejected, not retried
  M  receiver down under a wrk burst                           → queue_full drops, RSS bounded,
                                                                 delivery resumes after restart

Then SIGTERM: exit 0, and the daemon's --stats-file must account for every request:
accepted == requests made == sent + dropped, every span either received or dropped.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
import faults as f  # noqa: E402

RETRYABLE = {1, 4, 10, 11, 14, 15}  # CANCELLED DEADLINE_EXCEEDED ABORTED OUT_OF_RANGE UNAVAILABLE DATA_LOSS
NAMES = {1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
         6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION",
         10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE",
         15: "DATA_LOSS", 16: "UNAUTHENTICATED"}
QUEUE = 4000
RSS_LIMIT_MIB = 160  # the DaemonSet's memory limit is 256 MiB; see deploy/README.md


def main():
    with h.Procs() as procs:
        recv = f.ControlledReceiver(procs)
        ng_port = h.free_port()
        nginx = f.start_nginx_single(procs, ng_port)
        stats_path = os.path.join(procs.tmp, "stats.json")
        cfg = f.write_config(procs, """
exporter:
  otlp: {endpoint: "%s"}
  batch_size: 50
  queue_size: %d
  timeout_ms: 800
  interval_ms: 100
  shutdown_timeout_ms: 4000
  # Enough attempts (≈ 30 s at 800 ms) to outlast a slow first start of the receiver (node
  # loading its modules cold on a fresh machine): phase A is about delivery once it is up.
  retry: {max_attempts: 40, initial_backoff_ms: 100, max_backoff_ms: 800, max_server_delay_ms: 5000}
log: {stats_file: "%s"}
""" % (recv.endpoint, QUEUE, stats_path))
        daemon = h.start_daemon(procs, "--config", cfg, "--pid", str(nginx.pid), "--summary-interval", "0",
                                "--prometheus-listen", "", "--api-socket", "")
        rss = f.RssSampler(daemon.pid)
        rss.start()
        reqs = f.Requests(ng_port, "k")
        errors = []

        def ours(spans):
            return [s for s in spans if int(h.res_attrs(s).get("process.pid", 0)) == nginx.pid]

        def received_keys():
            return {h.span_attrs(s).get("url.query") for s in ours(recv.spans())}

        def alive(phase):
            if daemon.poll() is not None:
                h.fail("isotraced died during %s (rc %s):\n%s" % (phase, daemon.returncode, procs.log(daemon)[-3000:]))

        # A: down at start.
        first = [reqs.one() for _ in range(30)]
        time.sleep(1.5)
        alive("A")
        if received_keys():
            h.fail("spans arrived before the receiver was started")
        recv.start()
        if not f.wait_for(lambda: set(first) <= received_keys(), 15):
            h.fail("A: delivery did not start after the receiver came up: %d of 30 received"
                   % len(set(first) & received_keys()))
        print("A: receiver down at start → all 30 spans delivered once it came up")

        # B: SIGKILL mid-stream, restart on the same port.
        import threading
        load = threading.Thread(target=reqs.run_for, args=(4.0,))
        load.start()
        time.sleep(1.0)
        recv.kill()
        time.sleep(1.2)
        alive("B")
        recv.start()
        load.join()
        b_keys = list(reqs.sent)
        if not f.wait_for(lambda: set(b_keys) <= received_keys(), 20):
            missing = set(b_keys) - received_keys()
            print("B: %d of %d spans not received yet (may be counted dropped)" % (len(missing), len(b_keys)))
        print("B: SIGKILL + restart → %d of %d spans received so far"
              % (len(set(b_keys) & received_keys()), len(b_keys)))

        # C: slower than the 800 ms deadline, then fast again.
        recv.set(delayMs=1500)
        c_key = reqs.one("c")
        if not f.wait_for(lambda: sum(1 for c in recv.calls() if c["status"] == "cancelled") >= 1, 10):
            errors.append("C: no call outlived its 800 ms deadline at the receiver")
        recv.set()
        if not f.wait_for(lambda: c_key in received_keys(), 10):
            errors.append("C: the span delayed past the deadline was never delivered")
        print("C: slow receiver → DEADLINE_EXCEEDED, then delivered")

        # D: every status code in turn, one span each.
        d_keys = {}
        for code in range(1, 17):
            before = sum(1 for c in recv.calls() if c["status"] == str(code))
            recv.set(failCode=code)
            d_keys[code] = reqs.one("code%d" % code)
            if not f.wait_for(lambda: sum(1 for c in recv.calls() if c["status"] == str(code)) > before, 10):
                errors.append("D: no call answered with code %d" % code)
            recv.set()
            if code in RETRYABLE:
                if not f.wait_for(lambda: d_keys[code] in received_keys(), 10):
                    errors.append("D: span failed with retryable %s was not delivered" % NAMES[code])
            else:
                time.sleep(0.4)  # several backoff periods: a wrong retry would show up
                n = sum(1 for c in recv.calls() if c["status"] == str(code))
                if n != before + 1:
                    errors.append("D: non-retryable %s was tried %d times" % (NAMES[code], n - before))
        # RESOURCE_EXHAUSTED with RetryInfo(600 ms): retried, after the server's delay.
        recv.set(failCode=8, retryAfterMs=600, failFirst=None)
        ra_key = reqs.one("retryinfo")
        f.wait_for(lambda: any(c["status"] == "8" for c in recv.calls()[-3:]), 10)
        fail_t = max(c["t"] for c in recv.calls() if c["status"] == "8")
        recv.set()
        if not f.wait_for(lambda: ra_key in received_keys(), 10):
            errors.append("D: RESOURCE_EXHAUSTED with RetryInfo was not retried")
        else:
            ok_t = min(c["t"] for c in recv.calls() if c["status"] == "0" and c["t"] > fail_t)
            if ok_t - fail_t < 550:
                errors.append("D: retried %d ms after RetryInfo asked for 600 ms" % (ok_t - fail_t))
            print("D: RetryInfo 600 ms honoured (retried after %d ms)" % (ok_t - fail_t))
        alive("D")
        got = received_keys()
        for code, key in d_keys.items():
            if code not in RETRYABLE and key in got:
                errors.append("D: span failed with non-retryable %s was delivered" % NAMES[code])

        # E: partial success.
        recv.set(partialRejected=1)
        e_key = reqs.one("partial")
        f.wait_for(lambda: any(c["rejected"] > 0 for c in recv.calls()), 10)
        recv.set()
        time.sleep(0.5)
        if e_key in received_keys():
            errors.append("E: the rejected span was written (or retried)")
        if sum(1 for c in recv.calls() if c["rejected"] > 0) != 1:
            errors.append("E: partial success was retried")

        # M: receiver down under a burst: the queue overflows (counted), memory stays bounded.
        recv.kill()
        rss_before = f.rss_kib(daemon.pid)
        n_wrk, rps = f.wrk(ng_port, 2, conns=4, threads=1)
        alive("M")
        rss_after = f.rss_kib(daemon.pid)
        recv.start()
        # The queue is full of burst spans being retried, so a new span may itself be
        # dropped as queue_full until it drains: keep sending until one gets through.
        m_keys = []

        def resumed():
            m_keys.append(reqs.one("after-burst"))
            return set(m_keys) & received_keys()
        if not f.wait_for(resumed, 20, step=0.3):
            errors.append("M: delivery did not resume after the burst")
        print("M: wrk %d requests (%.0f/s) with the receiver down; RSS %d → %d KiB"
              % (n_wrk, rps, rss_before, rss_after))

        time.sleep(1.0)
        rss.stop()
        rc = procs.stop(daemon)
        log = procs.log(daemon)
        if rc != 0:
            h.fail("isotraced exited %s on SIGTERM:\n%s" % (rc, log[-3000:]))
        st = f.read_stats(stats_path)["exporter"]
        print("stats:", st)

        made = len(reqs.sent) + n_wrk
        acc = st["accepted"]
        if not (made <= acc <= made + 16):  # wrk may count a few in-flight requests as not done
            errors.append("accepted %d, but %d requests were made (%d + %d wrk)" % (acc, made, len(reqs.sent), n_wrk))
        if st["accepted"] != st["sent"] + st["dropped_total"]:
            errors.append("accepted %d != sent %d + dropped %d" % (st["accepted"], st["sent"], st["dropped_total"]))
        if sum(st["dropped"].values()) != st["dropped_total"]:
            errors.append("dropped by reason does not sum to the total: %s" % st["dropped"])
        if st["dropped"].get("non_retryable") != 10:
            errors.append("non_retryable %s, want exactly 10 (one span per final code)" % st["dropped"].get("non_retryable"))
        if st["dropped"].get("rejected") != 1 or st["partial_successes"] != 1:
            errors.append("partial success: rejected %s partial_successes %s, want 1 and 1"
                          % (st["dropped"].get("rejected"), st["partial_successes"]))
        if st["server_delays"] < 1:
            errors.append("no retry waited for the server's RetryInfo delay")
        if st["dropped"].get("queue_full", 0) == 0:
            errors.append("the burst with the receiver down never filled the queue (%d requests)" % n_wrk)
        for code, name in NAMES.items():
            if st["export_failures"].get(name, 0) < 1:
                errors.append("no export failure counted for %s" % name)

        spans = ours(recv.spans())
        keys = [h.span_attrs(s).get("url.query") for s in spans]
        unique_keys = set(k for k in keys if k)
        burst = sum(1 for s in spans if h.span_attrs(s).get("url.path") == "/w")
        strangers = unique_keys - set(reqs.sent)
        if strangers:
            errors.append("received spans for requests never made: %s" % sorted(strangers)[:5])
        # Every accepted span is either received or counted dropped (duplicates from the
        # SIGKILL, where the receiver wrote a batch it never acknowledged, count once).
        if len(unique_keys) + burst + st["dropped_total"] < acc:
            errors.append("lost without a count: %d unique received + %d burst received + %d dropped < %d accepted"
                          % (len(unique_keys), burst, st["dropped_total"], acc))
        if st["sent"] > len(unique_keys) + burst:
            errors.append("sent %d but only %d distinct spans arrived" % (st["sent"], len(unique_keys) + burst))
        if "exporter: accepted %d sent %d dropped %d" % (st["accepted"], st["sent"], st["dropped_total"]) not in log:
            errors.append("the final log line disagrees with the stats file")
        peak_mib = rss.peak / 1024.0
        if peak_mib > RSS_LIMIT_MIB:
            errors.append("RSS peaked at %.1f MiB (limit %d)" % (peak_mib, RSS_LIMIT_MIB))
        print("requests %d (+%d wrk), received %d distinct (%d duplicates) + %d burst, dropped %s, RSS peak %.1f MiB"
              % (len(reqs.sent), n_wrk, len(unique_keys), len(keys) - len(unique_keys) - burst, burst,
                 st["dropped"], peak_mib))
        if errors:
            print("\n".join(errors))
            print("daemon log tail:\n" + log[-4000:])
            h.fail("%d problems" % len(errors))
        print("PASS")


if __name__ == "__main__":
    main()
