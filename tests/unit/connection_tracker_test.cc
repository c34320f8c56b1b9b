// Correlation on synthetic socket events: the connection tracker turns sequences of
// probes::SocketEvent into spans. Each case feeds what the l7 probe would deliver for a
// real exchange and asserts the span's fields and timestamps exactly, plus the counters
// that account for what was not turned into a span.

#include "daemon/correlate/connection_tracker.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "daemon/correlate/traceparent.h"

namespace isotrace::correlate {
namespace {

using probes::SocketEvent;
using Kind = SocketEvent::Kind;
using Dir = SocketEvent::Direction;
using namespace std::string_view_literals;

// unix = mono + kOffset exactly: the injected clock's two sources never move, so the
// offset the clock measures is this constant.
constexpr uint64_t kOffset = 1'700'000'000'000'000'000ull;
constexpr uint64_t kMonoNow = 3'000'000'000ull;

// Every syscall of step `t` enters at t µs and returns 250 ns later, so an assertion
// can tell which edge of which syscall a timestamp came from.
constexpr uint64_t Enter(uint64_t t) { return t * 1000; }
constexpr uint64_t Exit(uint64_t t) { return t * 1000 + 250; }
constexpr uint64_t Unix(uint64_t mono) { return mono + kOffset; }

// One socket as the probe identifies it.
struct Sock {
  uint32_t tgid = 4242;
  uint32_t tid = 4243;
  uint64_t proc_start = 777;
  int32_t fd = 7;
  uint64_t sock_id = 0xfeed0001;
  uint64_t cgroup_id = 99;
  std::array<uint8_t, 4> laddr{10, 0, 0, 1};
  uint16_t lport = 8080;
  std::array<uint8_t, 4> raddr{10, 0, 0, 2};
  uint16_t rport = 40001;
};

constexpr std::string_view kTls =
    "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x9a\x1b\x00\x00\x20GET / HTTP/1.1\r\n"sv;

std::string Response(int status, std::string_view reason, std::string_view body,
                     std::string_view extra_headers = "") {
  return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n" +
         "Server: nginx\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
         std::string(extra_headers) + "\r\n" + std::string(body);
}

std::string Get(std::string_view target, std::string_view extra_headers = "") {
  return "GET " + std::string(target) + " HTTP/1.1\r\nHost: svc.local:8080\r\n" +
         std::string(extra_headers) + "\r\n";
}

bool AllZero(std::span<const uint8_t> b) {
  return std::all_of(b.begin(), b.end(), [](uint8_t x) { return x == 0; });
}

class ConnectionTrackerTest : public ::testing::Test {
 protected:
  ConnectionTrackerTest()
      : clock_([] { return kMonoNow; }, [] { return kMonoNow + kOffset; }) {
    Reset(TrackerLimits());
  }

  void Reset(const TrackerLimits& limits) {
    spans_.clear();
    tracker_ = std::make_unique<ConnectionTracker>(
        limits, &clock_, [this](Span&& s) { spans_.push_back(std::move(s)); });
  }

  static SocketEvent Base(const Sock& s, Kind kind, uint64_t t) {
    SocketEvent ev;
    ev.kind = kind;
    ev.ts_enter_ns = Enter(t);
    ev.ts_exit_ns = Exit(t);
    ev.tgid = s.tgid;
    ev.tid = s.tid;
    ev.proc_start_ns = s.proc_start;
    ev.fd = s.fd;
    ev.sock_id = s.sock_id;
    ev.conn_id = s.sock_id;  // one probe connection id per socket
    ev.cgroup_id = s.cgroup_id;
    ev.family = 2;  // AF_INET
    std::copy(s.laddr.begin(), s.laddr.end(), ev.laddr.begin());
    std::copy(s.raddr.begin(), s.raddr.end(), ev.raddr.begin());
    ev.lport = s.lport;
    ev.rport = s.rport;
    ev.comm = "server";
    return ev;
  }

  void Accept(const Sock& s, uint64_t t) {
    SocketEvent ev = Base(s, Kind::kAccept, t);
    ev.ret = s.fd;
    tracker_->OnEvent(ev);
  }
  void Connect(const Sock& s, uint64_t t) { tracker_->OnEvent(Base(s, Kind::kConnect, t)); }
  void Close(const Sock& s, uint64_t t) { tracker_->OnEvent(Base(s, Kind::kClose, t)); }

  // A read/write that moved `total` bytes of which `captured` were copied (total < 0:
  // everything was captured).
  void Data(const Sock& s, Dir dir, std::string_view captured, uint64_t t, int64_t total = -1) {
    SocketEvent ev = Base(s, Kind::kData, t);
    ev.dir = dir;
    ev.payload = captured;
    ev.ret = total < 0 ? static_cast<int64_t>(captured.size()) : total;
    tracker_->OnEvent(ev);
  }
  // A segment at an explicit byte position of its direction (bpf/l7.h): a position past
  // the previous segment's end is a gap of lost records.
  void DataAt(const Sock& s, Dir dir, uint64_t pos, std::string_view captured, uint64_t t,
              int64_t total = -1) {
    SocketEvent ev = Base(s, Kind::kData, t);
    ev.dir = dir;
    ev.pos = pos;
    ev.payload = captured;
    ev.ret = total < 0 ? static_cast<int64_t>(captured.size()) : total;
    tracker_->OnEvent(ev);
  }
  void Recv(const Sock& s, std::string_view b, uint64_t t, int64_t total = -1) {
    Data(s, Dir::kIngress, b, t, total);
  }
  void Send(const Sock& s, std::string_view b, uint64_t t, int64_t total = -1) {
    Data(s, Dir::kEgress, b, t, total);
  }

  const TrackerStats& stats() const { return tracker_->stats(); }

  util::Clock clock_;
  std::unique_ptr<ConnectionTracker> tracker_;
  std::vector<Span> spans_;
};

// --- roles and timestamps ---------------------------------------------------------

TEST_F(ConnectionTrackerTest, ServerSpanHasEveryFieldAndDocumentedTimestamps) {
  Sock s;
  Accept(s, 1);
  // The request head arrives in two reads: the span starts at the first one's exit.
  Recv(s, "GET /api/items?id=7&x=1 HTTP/1.1\r\nHost: svc.local:8080\r\n", 2);
  Recv(s, "User-Agent: wrk\r\nAccept: */*\r\n\r\n", 3);
  EXPECT_TRUE(spans_.empty());
  // The response leaves in two writes: the span ends at the last one's exit.
  Send(s, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", 4);
  EXPECT_TRUE(spans_.empty()) << "two body bytes still to come";
  Send(s, "lo", 5);

  ASSERT_EQ(spans_.size(), 1u);
  const Span& sp = spans_[0];
  EXPECT_EQ(sp.kind, SpanKind::kServer);
  EXPECT_EQ(sp.start_unix_ns, Unix(Exit(2)));
  EXPECT_EQ(sp.end_unix_ns, Unix(Exit(5)));
  EXPECT_EQ(sp.method, "GET");
  EXPECT_EQ(sp.path, "/api/items");
  EXPECT_EQ(sp.query, "id=7&x=1");
  EXPECT_EQ(sp.status_code, 200);
  EXPECT_EQ(sp.protocol_version, "1.1");
  EXPECT_EQ(sp.host_header, "svc.local:8080");
  EXPECT_EQ(sp.error_type, "");
  // SERVER: the peer is the client, the local end the server.
  EXPECT_EQ(sp.client_address, "10.0.0.2");
  EXPECT_EQ(sp.client_port, 40001);
  EXPECT_EQ(sp.server_address, "10.0.0.1");
  EXPECT_EQ(sp.server_port, 8080);
  EXPECT_EQ(sp.process, (ProcessKey{4242, 777}));
  EXPECT_EQ(sp.tid, 4243u);
  EXPECT_EQ(sp.cgroup_id, 99u);
  EXPECT_EQ(sp.sock_id, 0xfeed0001u);
  // No traceparent: a new trace, sampled, no parent.
  EXPECT_FALSE(AllZero(sp.trace_id));
  EXPECT_FALSE(AllZero(sp.span_id));
  EXPECT_TRUE(AllZero(sp.parent_span_id));
  EXPECT_FALSE(sp.remote_parent);
  EXPECT_EQ(sp.trace_flags, 1);
  EXPECT_EQ(sp.tracestate, "");

  EXPECT_EQ(stats().events, 5u);
  EXPECT_EQ(stats().connections_opened, 1u);
  EXPECT_EQ(stats().spans, 1u);
  EXPECT_EQ(stats().traceparent_invalid, 0u);
  EXPECT_EQ(stats().responses_unmatched, 0u);
  EXPECT_EQ(tracker_->connections(), 1u);

  Close(s, 6);
  EXPECT_EQ(tracker_->connections(), 0u);
  EXPECT_EQ(spans_.size(), 1u);
  EXPECT_EQ(stats().requests_unanswered, 0u);
}

TEST_F(ConnectionTrackerTest, ServerWithoutAcceptIsRecognisedByItsFirstRequest) {
  // A connection accepted before the daemon started: the first ingress request decides.
  Sock s;
  Recv(s, Get("/late"), 1);
  Send(s, Response(503, "Service Unavailable", "busy"), 2);
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].kind, SpanKind::kServer);
  EXPECT_EQ(spans_[0].status_code, 503);
  EXPECT_EQ(spans_[0].error_type, "503");  // 5xx is an error on a SERVER span
  EXPECT_EQ(spans_[0].start_unix_ns, Unix(Exit(1)));
  EXPECT_EQ(spans_[0].end_unix_ns, Unix(Exit(2)));
}

TEST_F(ConnectionTrackerTest, ServerSpanWith4xxIsNotAnError) {
  Sock s;
  Accept(s, 1);
  Recv(s, Get("/missing"), 2);
  Send(s, Response(404, "Not Found", "nope"), 3);
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].status_code, 404);
  EXPECT_EQ(spans_[0].error_type, "");
}

TEST_F(ConnectionTrackerTest, ClientSpanStartsAtWriteEntryAndEndsAtReadExit) {
  Sock c;
  c.lport = 51000;
  c.rport = 80;
  Connect(c, 1);
  // The request leaves in two writes; the span starts at the first write's entry.
  Send(c, "GET /upstream?q=1 HTTP/1.1\r\n", 2);
  Send(c, "Host: backend:80\r\n\r\n", 3);
  Recv(c, "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\n", 4);
  EXPECT_TRUE(spans_.empty());
  Recv(c, "abc", 5);

  ASSERT_EQ(spans_.size(), 1u);
  const Span& sp = spans_[0];
  EXPECT_EQ(sp.kind, SpanKind::kClient);
  EXPECT_EQ(sp.start_unix_ns, Unix(Enter(2)));
  EXPECT_EQ(sp.end_unix_ns, Unix(Exit(5)));
  EXPECT_EQ(sp.method, "GET");
  EXPECT_EQ(sp.path, "/upstream");
  EXPECT_EQ(sp.query, "q=1");
  EXPECT_EQ(sp.status_code, 404);
  EXPECT_EQ(sp.error_type, "404");  // >= 400 is an error on a CLIENT span
  EXPECT_EQ(sp.host_header, "backend:80");
  // CLIENT: the local end is the client, the peer the server.
  EXPECT_EQ(sp.client_address, "10.0.0.1");
  EXPECT_EQ(sp.client_port, 51000);
  EXPECT_EQ(sp.server_address, "10.0.0.2");
  EXPECT_EQ(sp.server_port, 80);
}

// The probe takes a request's first write's snapshot at the start of its send
// (acct_at_enter, bpf/l7.h): a CLIENT span, timed from that edge, gets the write's own
// time in its breakdown. On a connection that turns out to serve (it connect()ed, then
// answered), that write ends a SERVER span by its exit: a snapshot of its start would
// break the sum, so that span has no breakdown rather than a wrong one.
TEST_F(ConnectionTrackerTest, AStartOfSendSnapshotTimesAClientSpanAndNeverEndsAServerSpan) {
  // A data record with the thread's accounting (on-CPU and sleep, ns).
  auto data = [this](const Sock& sock, Dir dir, const std::string& payload, uint64_t t, uint64_t oncpu,
                     uint64_t sleep, bool at_enter) {
    SocketEvent ev = Base(sock, Kind::kData, t);
    ev.dir = dir;
    ev.payload = payload;
    ev.ret = static_cast<int64_t>(payload.size());
    ev.acct.valid = true;
    ev.acct.oncpu_ns = oncpu;
    ev.acct.sleep_ns = sleep;
    ev.acct_at_enter = at_enter;
    tracker_->OnEvent(ev);
  };
  const std::string req = Get("/blocked");
  const std::string resp = Response(200, "OK", "");
  Sock c;
  c.lport = 51000;
  c.rport = 80;
  Connect(c, 1);
  data(c, Dir::kEgress, req, 2, 1000, 0, true);
  data(c, Dir::kIngress, resp, 3, 1400, 600, false);
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].kind, SpanKind::kClient);
  EXPECT_EQ(spans_[0].start_unix_ns, Unix(Enter(2)));
  ASSERT_TRUE(spans_[0].breakdown.oncpu_ns.has_value());
  EXPECT_EQ(*spans_[0].breakdown.oncpu_ns, 400);
  EXPECT_EQ(*spans_[0].breakdown.offcpu_other_ns, 600);

  Sock s;
  s.sock_id = 0xfeed0002;
  s.fd = 8;
  data(s, Dir::kIngress, req, 4, 2000, 0, false);
  data(s, Dir::kEgress, resp, 5, 2100, 0, true);
  ASSERT_EQ(spans_.size(), 2u);
  EXPECT_EQ(spans_[1].kind, SpanKind::kServer);
  EXPECT_EQ(spans_[1].end_unix_ns, Unix(Exit(5)));
  EXPECT_FALSE(spans_[1].breakdown.oncpu_ns.has_value());
}

// --- framing ------------------------------------------------------------------------

TEST_F(ConnectionTrackerTest, KeepAliveRequestsEachBecomeOneSpan) {
  Sock s;
  Accept(s, 1);
  const char* paths[] = {"/one", "/two", "/three"};
  for (int i = 0; i < 3; ++i) {
    Recv(s, Get(paths[i]), 10 * (i + 1));
    Send(s, Response(200 + i, "OK", "body"), 10 * (i + 1) + 1);
  }
  ASSERT_EQ(spans_.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(paths[i]);
    EXPECT_EQ(spans_[i].path, paths[i]);
    EXPECT_EQ(spans_[i].status_code, 200 + i);
    EXPECT_EQ(spans_[i].start_unix_ns, Unix(Exit(10 * (i + 1))));
    EXPECT_EQ(spans_[i].end_unix_ns, Unix(Exit(10 * (i + 1) + 1)));
  }
  // Each request without a traceparent is its own trace.
  EXPECT_NE(spans_[0].trace_id, spans_[1].trace_id);
  EXPECT_NE(spans_[1].trace_id, spans_[2].trace_id);
  EXPECT_NE(spans_[0].span_id, spans_[1].span_id);
  EXPECT_EQ(stats().connections_opened, 1u);
  EXPECT_EQ(tracker_->connections(), 1u);
}

TEST_F(ConnectionTrackerTest, PipelinedRequestsPairInOrderWithSplitResponses) {
  Sock s;
  Accept(s, 1);
  Recv(s, Get("/a") + Get("/b") + Get("/c"), 2);
  EXPECT_TRUE(spans_.empty());
  const std::string ra = Response(200, "OK", "aaaa");
  const std::string rb = Response(201, "Created", "bb");
  const std::string rc = Response(202, "Accepted", "cccccccccc");
  // a's head alone; a's body and all of b; c cut in the middle of its body.
  const size_t a_head = ra.size() - 4;
  Send(s, std::string_view(ra).substr(0, a_head), 3);
  EXPECT_TRUE(spans_.empty());
  Send(s, std::string(ra.substr(a_head)) + rb, 4);
  ASSERT_EQ(spans_.size(), 2u);
  Send(s, std::string_view(rc).substr(0, rc.size() - 3), 5);
  ASSERT_EQ(spans_.size(), 2u);
  Send(s, std::string_view(rc).substr(rc.size() - 3), 6);
  ASSERT_EQ(spans_.size(), 3u);

  const std::string paths[] = {"/a", "/b", "/c"};
  const int status[] = {200, 201, 202};
  const uint64_t end[] = {Exit(4), Exit(4), Exit(6)};
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(paths[i]);
    EXPECT_EQ(spans_[i].path, paths[i]);
    EXPECT_EQ(spans_[i].status_code, status[i]);
    // All three requests arrived in the same read.
    EXPECT_EQ(spans_[i].start_unix_ns, Unix(Exit(2)));
    EXPECT_EQ(spans_[i].end_unix_ns, Unix(end[i]));
  }
  EXPECT_EQ(stats().requests_overflow, 0u);
  EXPECT_EQ(stats().responses_unmatched, 0u);
}

TEST_F(ConnectionTrackerTest, ChunkedResponseEndsAtTheLastChunk) {
  Sock s;
  Accept(s, 1);
  Recv(s, Get("/stream"), 2);
  Send(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", 3);
  Send(s, "6\r\n world\r\n", 4);
  EXPECT_TRUE(spans_.empty());
  Send(s, "0\r\n\r\n", 5);
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].status_code, 200);
  EXPECT_EQ(spans_[0].end_unix_ns, Unix(Exit(5)));
  // The framing found the body's end: the next request pairs with its own response.
  Recv(s, Get("/next"), 6);
  Send(s, Response(204, "No Content", ""), 7);
  ASSERT_EQ(spans_.size(), 2u);
  EXPECT_EQ(spans_[1].path, "/next");
  EXPECT_EQ(spans_[1].status_code, 204);
  EXPECT_EQ(spans_[1].start_unix_ns, Unix(Exit(6)));
  EXPECT_EQ(spans_[1].end_unix_ns, Unix(Exit(7)));
}

TEST_F(ConnectionTrackerTest, ChunkedRequestBodyFromAClient) {
  Sock c;
  Connect(c, 1);
  Send(c, "POST /ingest HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 2);
  Send(c, "3\r\nabc\r\n0\r\n\r\n", 3);
  Recv(c, Response(200, "OK", "ok"), 4);
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].kind, SpanKind::kClient);
  EXPECT_EQ(spans_[0].method, "POST");
  EXPECT_EQ(spans_[0].start_unix_ns, Unix(Enter(2)));
  EXPECT_EQ(spans_[0].end_unix_ns, Unix(Exit(4)));
}

TEST_F(ConnectionTrackerTest, ContentLengthBodyIsCountedNotCaptured) {
  // Capture limit 1024 bytes per syscall: a 100000-byte body is mostly never seen, and
  // its captured bytes are binary.
  constexpr size_t kCapture = 1024;
  constexpr int64_t kBody = 100000;
  Sock s;
  Accept(s, 1);
  Recv(s, Get("/big.png"), 2);
  const std::string head =
      "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n";
  std::string binary(kCapture, '\0');
  for (size_t i = 0; i < binary.size(); ++i) binary[i] = static_cast<char>(i * 131 + 7);
  const int64_t first = 65536;
  std::string seg1 = head + binary.substr(0, kCapture - head.size());
  Send(s, seg1, 3, static_cast<int64_t>(head.size()) + first);
  Send(s, std::string_view(binary).substr(0, kCapture), 4, kBody - first - 1);
  EXPECT_TRUE(spans_.empty()) << "one body byte still to come";
  Send(s, "x", 5);
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].status_code, 200);
  EXPECT_EQ(spans_[0].end_unix_ns, Unix(Exit(5)));
  Recv(s, Get("/after"), 6);
  Send(s, Response(200, "OK", "k"), 7);
  ASSERT_EQ(spans_.size(), 2u);
  EXPECT_EQ(spans_[1].path, "/after");
  EXPECT_EQ(stats().connections_not_http, 0u);
}

TEST_F(ConnectionTrackerTest, HeadResponseHasNoBodyDespiteContentLength) {
  Sock s;
  Accept(s, 1);
  Recv(s, "HEAD /file HTTP/1.1\r\nHost: h\r\n\r\n", 2);
  Send(s, "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n", 3);
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].method, "HEAD");
  EXPECT_EQ(spans_[0].end_unix_ns, Unix(Exit(3)));
  // Were the HEAD response framed with a body, this response would vanish into it.
  Recv(s, Get("/file"), 4);
  Send(s, Response(200, "OK", "12345"), 5);
  ASSERT_EQ(spans_.size(), 2u);
  EXPECT_EQ(spans_[1].method, "GET");
  EXPECT_EQ(spans_[1].start_unix_ns, Unix(Exit(4)));
  EXPECT_EQ(spans_[1].end_unix_ns, Unix(Exit(5)));
}

TEST_F(ConnectionTrackerTest, ExpectContinuePairsWithTheFinalResponse) {
  Sock s;
  Accept(s, 1);
  Recv(s,
       "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n",
       2);
  Send(s, "HTTP/1.1 100 Continue\r\n\r\n", 3);
  EXPECT_TRUE(spans_.empty()) << "an interim response does not end the request";
  Recv(s, "hello world", 4);
  EXPECT_TRUE(spans_.empty());
  Send(s, Response(201, "Created", ""), 5);
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].method, "POST");
  EXPECT_EQ(spans_[0].path, "/upload");
  EXPECT_EQ(spans_[0].status_code, 201);
  EXPECT_EQ(spans_[0].start_unix_ns, Unix(Exit(2)));
  EXPECT_EQ(spans_[0].end_unix_ns, Unix(Exit(5)));
  EXPECT_EQ(stats().responses_unmatched, 0u);
}

TEST_F(ConnectionTrackerTest, CloseDelimitedHttp10ResponseEndsAtItsLastWrite) {
  Sock s;
  Accept(s, 1);
  Recv(s, "GET /old HTTP/1.0\r\n\r\n", 2);
  Send(s, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n", 3);
  Send(s, "body without a length", 4);
  EXPECT_TRUE(spans_.empty()) << "only the close tells where the body ends";
  Close(s, 9);
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].protocol_version, "1.0");
  EXPECT_EQ(spans_[0].status_code, 200);
  EXPECT_EQ(spans_[0].error_type, "");
  EXPECT_EQ(spans_[0].start_unix_ns, Unix(Exit(2)));
  // The last byte of the response was sent by the write at step 4, not at the close.
  EXPECT_EQ(spans_[0].end_unix_ns, Unix(Exit(4)));
  EXPECT_EQ(stats().requests_unanswered, 0u);
  EXPECT_EQ(tracker_->connections(), 0u);
}

TEST_F(ConnectionTrackerTest, CloseBeforeAnyResponseEndsThePendingRequestAtTheClose) {
  Sock s;
  Accept(s, 1);
  Recv(s, Get("/hang"), 2);
  Close(s, 5);
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].path, "/hang");
  EXPECT_EQ(spans_[0].status_code, 0);
  EXPECT_EQ(spans_[0].error_type, "connection_closed");
  EXPECT_EQ(spans_[0].start_unix_ns, Unix(Exit(2)));
  EXPECT_EQ(spans_[0].end_unix_ns, Unix(Enter(5)));
  EXPECT_EQ(stats().requests_unanswered, 1u);
}

TEST_F(ConnectionTrackerTest, RequestCutShortByCloseIsNotASpan) {
  Sock s;
  Accept(s, 1);
  Recv(s, "GET /half HTTP/1.1\r\nHost: h\r\n", 2);  // no end of head
  Close(s, 3);
  EXPECT_TRUE(spans_.empty());
  EXPECT_EQ(stats().requests_unanswered, 0u);
}

TEST_F(ConnectionTrackerTest, HeadTruncatedByTheCaptureStillPairs) {
  // The probe captured the first bytes only: the start line and Host survive, the
  // traceparent after a long cookie does not.
  const std::string req = "GET /profile?tab=2 HTTP/1.1\r\nHost: h\r\nCookie: " +
                          std::string(3000, 'c') +
                          "\r\ntraceparent: "
                          "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";
  Sock s;
  Accept(s, 1);
  Recv(s, std::string_view(req).substr(0, 64), 2, static_cast<int64_t>(req.size()));
  EXPECT_TRUE(spans_.empty()) << "the head's end was not seen";
  Send(s, Response(200, "OK", "me"), 3);
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].method, "GET");
  EXPECT_EQ(spans_[0].path, "/profile");
  EXPECT_EQ(spans_[0].query, "tab=2");
  EXPECT_EQ(spans_[0].host_header, "h");
  EXPECT_EQ(spans_[0].status_code, 200);
  EXPECT_EQ(spans_[0].start_unix_ns, Unix(Exit(2)));
  EXPECT_EQ(spans_[0].end_unix_ns, Unix(Exit(3)));
  EXPECT_FALSE(spans_[0].remote_parent) << "the traceparent was never captured";
  EXPECT_TRUE(AllZero(spans_[0].parent_span_id));
  EXPECT_EQ(stats().traceparent_invalid, 0u);

  // The connection goes on normally.
  Recv(s, Get("/next"), 4);
  Send(s, Response(200, "OK", ""), 5);
  ASSERT_EQ(spans_.size(), 2u);
  EXPECT_EQ(spans_[1].path, "/next");
}

TEST_F(ConnectionTrackerTest, TruncatedHeadRequestStillFramesItsResponseWithoutBody) {
  // A HEAD request whose head the capture cut: its method is known from the start line,
  // and the response (Content-Length, no body) must be framed as a HEAD response, or
  // the next response disappears into a body that never comes.
  const std::string req = "HEAD /asset HTTP/1.1\r\nHost: h\r\nCookie: " +
                          std::string(3000, 'c') + "\r\n\r\n";
  Sock s;
  Accept(s, 1);
  Recv(s, std::string_view(req).substr(0, 48), 2, static_cast<int64_t>(req.size()));
  Send(s, "HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n", 3);
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].method, "HEAD");
  EXPECT_EQ(spans_[0].end_unix_ns, Unix(Exit(3)));
  Recv(s, Get("/asset"), 4);
  Send(s, Response(200, "OK", "x"), 5);
  ASSERT_EQ(spans_.size(), 2u);
  EXPECT_EQ(spans_[1].method, "GET");
  EXPECT_EQ(spans_[1].end_unix_ns, Unix(Exit(5)));
}

// --- byte positions and lost records ---------------------------------------------------

TEST_F(ConnectionTrackerTest, LostBodySegmentKeepsTheNextRequestFramed) {
  Sock s;
  const std::string req1 = Get("/one"), req2 = Get("/two");
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n";
  DataAt(s, Dir::kIngress, 0, req1, 1);
  DataAt(s, Dir::kEgress, 0, head, 2, static_cast<int64_t>(head.size()) + 1000);  // head + 1000 body
  // The record of the next 1000 body bytes was lost: the position jumps by 1000.
  DataAt(s, Dir::kEgress, head.size() + 2000, "", 4, 1000);  // the last 1000 bytes
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].path, "/one");
  EXPECT_EQ(spans_[0].status_code, 200);
  EXPECT_EQ(spans_[0].end_unix_ns, Unix(Exit(4)));  // ends with the body's last byte
  const std::string resp2 = Response(201, "Created", "ok");
  DataAt(s, Dir::kIngress, req1.size(), req2, 5);
  DataAt(s, Dir::kEgress, head.size() + 3000, resp2, 6);
  ASSERT_EQ(spans_.size(), 2u);
  EXPECT_EQ(spans_[1].path, "/two");
  EXPECT_EQ(spans_[1].status_code, 201);
  EXPECT_EQ(stats().stream_gaps, 1u);
  EXPECT_EQ(stats().stream_gap_bytes, 1000u);
  EXPECT_EQ(stats().gap_resyncs, 0u);
  EXPECT_EQ(stats().responses_unmatched, 0u);
}

TEST_F(ConnectionTrackerTest, WithoutPositionsALostBodySegmentWouldShiftFraming) {
  // The same traffic without the lost record's bytes accounted for: had the tracker no
  // byte positions, the next response would be read as body. With positions (above) it
  // is not; here the gap is invisible and the second response is swallowed.
  Sock s;
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n";
  Recv(s, Get("/one"), 1);
  Send(s, head, 2, static_cast<int64_t>(head.size()) + 1000);
  Send(s, "", 4, 1000);
  Recv(s, Get("/two"), 5);
  Send(s, Response(201, "Created", "ok"), 6);
  // /one still waits for 1000 bytes that were lost, and /two's response went into them.
  EXPECT_EQ(spans_.size(), 0u);
  EXPECT_EQ(stats().stream_gaps, 0u);
}

TEST_F(ConnectionTrackerTest, LostResponseHeadResyncsAndNeverMispairs) {
  Sock s;
  const std::string req1 = Get("/one"), req2 = Get("/two"), req3 = Get("/three");
  const std::string resp1 = Response(200, "OK", "first");
  const std::string resp2 = Response(500, "Oops", "second!");
  const std::string resp3 = Response(204, "No Content", "");
  DataAt(s, Dir::kIngress, 0, req1, 1);
  DataAt(s, Dir::kEgress, 0, resp1, 2);
  DataAt(s, Dir::kIngress, req1.size(), req2, 3);
  // resp2's record was lost; /three's response arrives at the right position.
  DataAt(s, Dir::kIngress, req1.size() + req2.size(), req3, 5);
  DataAt(s, Dir::kEgress, resp1.size() + resp2.size(), resp3, 6);
  ASSERT_EQ(spans_.size(), 2u);
  EXPECT_EQ(spans_[0].path, "/one");
  EXPECT_EQ(spans_[0].status_code, 200);
  // /two never gets /three's 204; /three does.
  EXPECT_EQ(spans_[1].path, "/three");
  EXPECT_EQ(spans_[1].status_code, 204);
  EXPECT_EQ(stats().stream_gaps, 1u);
  EXPECT_EQ(stats().gap_resyncs, 1u);
  EXPECT_GE(stats().requests_lost_in_gap, 1u);
}

TEST_F(ConnectionTrackerTest, FinEndsACloseDelimitedResponse) {
  Sock s;
  Recv(s, Get("/old"), 1);
  Send(s, "HTTP/1.0 200 OK\r\n\r\nbody until close", 2);
  EXPECT_TRUE(spans_.empty());
  SocketEvent fin = Base(s, Kind::kFin, 3);
  fin.dir = Dir::kEgress;
  fin.fd = -1;
  tracker_->OnEvent(fin);
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].status_code, 200);
  EXPECT_EQ(spans_[0].end_unix_ns, Unix(Exit(2)));
}

// --- connection identity ------------------------------------------------------------

TEST_F(ConnectionTrackerTest, FdReusedByANewSocketFinishesTheOldConnection) {
  Sock a;
  Sock b = a;  // same process, same fd number, another socket (close was missed)
  b.sock_id = 0xfeed0002;
  b.raddr = {10, 0, 0, 3};
  b.rport = 40002;

  Accept(a, 1);
  Recv(a, Get("/on-a"), 2);  // never answered: the close was not seen
  Accept(b, 5);
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].path, "/on-a");
  EXPECT_EQ(spans_[0].sock_id, 0xfeed0001u);
  EXPECT_EQ(spans_[0].error_type, "connection_closed");
  EXPECT_EQ(spans_[0].status_code, 0);
  // Ends at the old connection's last activity, not when the reuse was noticed.
  EXPECT_EQ(spans_[0].end_unix_ns, Unix(Exit(2)));
  EXPECT_EQ(stats().requests_unanswered, 1u);

  Recv(b, Get("/on-b"), 6);
  Send(b, Response(200, "OK", "b"), 7);
  ASSERT_EQ(spans_.size(), 2u);
  EXPECT_EQ(spans_[1].path, "/on-b");
  EXPECT_EQ(spans_[1].sock_id, 0xfeed0002u);
  EXPECT_EQ(spans_[1].client_address, "10.0.0.3");
  EXPECT_EQ(spans_[1].client_port, 40002);
  EXPECT_EQ(spans_[1].status_code, 200);
  EXPECT_EQ(stats().connections_opened, 2u);
  EXPECT_EQ(tracker_->connections(), 1u);
}

TEST_F(ConnectionTrackerTest, FdReusedWithoutAcceptOrCloseIsNoticedOnData) {
  Sock a;
  Sock b = a;
  b.sock_id = 0xfeed0002;
  Accept(a, 1);
  Recv(a, Get("/first"), 2);
  Send(a, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", 3);  // body never seen
  // The old response's remaining bytes must not swallow the new socket's response.
  Recv(b, Get("/second"), 4);
  Send(b, Response(200, "OK", "2"), 5);
  ASSERT_EQ(spans_.size(), 2u);
  // The cut-short response still answers /first: its status is known.
  EXPECT_EQ(spans_[0].path, "/first");
  EXPECT_EQ(spans_[0].status_code, 200);
  EXPECT_EQ(spans_[0].end_unix_ns, Unix(Exit(3)));
  EXPECT_EQ(spans_[1].path, "/second");
  EXPECT_EQ(spans_[1].sock_id, 0xfeed0002u);
  EXPECT_EQ(spans_[1].end_unix_ns, Unix(Exit(5)));
}

TEST_F(ConnectionTrackerTest, SameFdInAnotherProcessIsAnotherConnection) {
  Sock a;
  Sock b = a;
  b.tgid = 5000;
  b.tid = 5000;
  b.proc_start = 888;
  Accept(a, 1);
  Accept(b, 1);
  Recv(a, Get("/a"), 2);
  Recv(b, Get("/b"), 3);
  Send(b, Response(200, "OK", "b"), 4);
  Send(a, Response(200, "OK", "a"), 5);
  ASSERT_EQ(spans_.size(), 2u);
  EXPECT_EQ(spans_[0].path, "/b");
  EXPECT_EQ(spans_[0].process, (ProcessKey{5000, 888}));
  EXPECT_EQ(spans_[1].path, "/a");
  EXPECT_EQ(spans_[1].process, (ProcessKey{4242, 777}));
  EXPECT_EQ(tracker_->connections(), 2u);
}

// --- not HTTP -----------------------------------------------------------------------

TEST_F(ConnectionTrackerTest, TlsConnectionYieldsNoSpanAndIsCounted) {
  Sock s;
  s.lport = 443;
  Accept(s, 1);
  Recv(s, kTls, 2);
  EXPECT_EQ(stats().connections_not_http, 1u);
  // Whatever follows on that socket is ignored, even bytes that look like HTTP.
  Send(s, "\x16\x03\x03\x00\x5a\x02\x00\x00\x56"sv, 3);
  Recv(s, Get("/inside-tls"), 4);
  Send(s, Response(200, "OK", ""), 5);
  Close(s, 6);
  EXPECT_TRUE(spans_.empty());
  EXPECT_EQ(stats().connections_not_http, 1u);
  EXPECT_EQ(stats().spans, 0u);
  EXPECT_EQ(stats().requests_unanswered, 0u);
  EXPECT_EQ(tracker_->connections(), 0u);
}

TEST_F(ConnectionTrackerTest, StreamTurningToGarbageEndsPendingRequestsAndIsCounted) {
  Sock s;
  Accept(s, 1);
  Recv(s, Get("/ok"), 2);
  Send(s, Response(200, "OK", ""), 3);
  Recv(s, Get("/pending"), 4);
  Recv(s, std::string("\x00\x01\x02garbage\r\n", 12), 5);
  EXPECT_EQ(stats().connections_not_http, 1u);
  ASSERT_EQ(spans_.size(), 2u);
  EXPECT_EQ(spans_[1].path, "/pending");
  EXPECT_EQ(spans_[1].error_type, "connection_closed");
  EXPECT_EQ(spans_[1].end_unix_ns, Unix(Exit(5)));
  Send(s, Response(200, "OK", ""), 6);
  EXPECT_EQ(spans_.size(), 2u);
}

TEST_F(ConnectionTrackerTest, JoiningMidResponseWaitsForTheNextRequest) {
  Sock s;
  Send(s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 1);  // request predates us
  EXPECT_EQ(stats().connections_not_http, 0u);
  Recv(s, Get("/fresh"), 2);
  Send(s, Response(200, "OK", "ok"), 3);
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].path, "/fresh");
  EXPECT_EQ(spans_[0].kind, SpanKind::kServer);
  EXPECT_EQ(stats().responses_unmatched, 0u);
}

// --- trace context ------------------------------------------------------------------

TEST_F(ConnectionTrackerTest, ValidTraceparentSetsTraceAndParentAndKeepsTracestate) {
  Sock s;
  Accept(s, 1);
  Recv(s,
       Get("/traced",
           "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
           "tracestate: rojo=00f067aa0ba902b7,congo=t61rcWkgMzE\r\n"),
       2);
  Send(s, Response(200, "OK", ""), 3);
  ASSERT_EQ(spans_.size(), 1u);
  const Span& sp = spans_[0];
  EXPECT_EQ(HexEncode(sp.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(HexEncode(sp.parent_span_id), "00f067aa0ba902b7");
  EXPECT_EQ(sp.trace_flags, 1);
  EXPECT_TRUE(sp.remote_parent);
  EXPECT_EQ(sp.tracestate, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
  EXPECT_FALSE(AllZero(sp.span_id));
  EXPECT_NE(HexEncode(sp.span_id), "00f067aa0ba902b7");
  EXPECT_EQ(stats().traceparent_invalid, 0u);
}

TEST_F(ConnectionTrackerTest, UnsampledTraceparentKeepsItsFlags) {
  Sock s;
  Accept(s, 1);
  Recv(s, Get("/", "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00\r\n"),
       2);
  Send(s, Response(200, "OK", ""), 3);
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(HexEncode(spans_[0].trace_id), "0af7651916cd43dd8448eb211c80319c");
  EXPECT_EQ(spans_[0].trace_flags, 0);
  EXPECT_EQ(spans_[0].tracestate, "");
}

TEST_F(ConnectionTrackerTest, InvalidTraceparentStartsANewTraceAndIsCounted) {
  const char* bad[] = {
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  // uppercase
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // forbidden version
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // zero trace id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // zero parent id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",     // no flags
  };
  Sock s;
  Accept(s, 1);
  uint64_t t = 2;
  for (const char* tp : bad) {
    Recv(s, Get("/x", std::string("traceparent: ") + tp + "\r\ntracestate: k=v\r\n"), t++);
    Send(s, Response(200, "OK", ""), t++);
  }
  ASSERT_EQ(spans_.size(), std::size(bad));
  for (size_t i = 0; i < spans_.size(); ++i) {
    SCOPED_TRACE(bad[i]);
    const Span& sp = spans_[i];
    EXPECT_FALSE(AllZero(sp.trace_id));
    EXPECT_NE(HexEncode(sp.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    EXPECT_TRUE(AllZero(sp.parent_span_id));
    EXPECT_FALSE(sp.remote_parent);
    EXPECT_EQ(sp.tracestate, "") << "tracestate without a valid traceparent is meaningless";
    EXPECT_EQ(sp.trace_flags, 1);
  }
  EXPECT_EQ(stats().traceparent_invalid, std::size(bad));
}

// --- limits -------------------------------------------------------------------------

TEST_F(ConnectionTrackerTest, MaxConnectionsEvictsTheLeastRecentlyActive) {
  TrackerLimits limits;
  limits.max_connections = 2;
  Reset(limits);
  Sock s1, s2, s3;
  s2.fd = 8;
  s2.sock_id = 0xfeed0002;
  s3.fd = 9;
  s3.sock_id = 0xfeed0003;
  Accept(s1, 1);
  Accept(s2, 2);
  Recv(s2, Get("/two"), 3);
  Recv(s1, Get("/one"), 4);  // s1 is now the most recent, s2 the least
  Accept(s3, 5);
  EXPECT_EQ(stats().connections_evicted, 1u);
  EXPECT_EQ(tracker_->connections(), 2u);
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].path, "/two");
  EXPECT_EQ(spans_[0].error_type, "connection_closed");
  EXPECT_EQ(spans_[0].end_unix_ns, Unix(Exit(3)));
  // The survivor still pairs.
  Send(s1, Response(200, "OK", ""), 6);
  ASSERT_EQ(spans_.size(), 2u);
  EXPECT_EQ(spans_[1].path, "/one");
  EXPECT_EQ(spans_[1].status_code, 200);
  // A response on the evicted socket starts over as an unknown connection: no span.
  Send(s2, Response(200, "OK", ""), 7);
  EXPECT_EQ(spans_.size(), 2u);
  EXPECT_EQ(stats().connections_evicted, 2u);
}

TEST_F(ConnectionTrackerTest, MaxPendingOverflowIsCounted) {
  TrackerLimits limits;
  limits.max_pending_per_connection = 2;
  Reset(limits);
  Sock s;
  Accept(s, 1);
  Recv(s, Get("/a") + Get("/b") + Get("/c"), 2);
  EXPECT_EQ(stats().requests_overflow, 1u);
  Send(s, Response(200, "OK", "") + Response(201, "OK", "") + Response(202, "OK", ""), 3);
  ASSERT_EQ(spans_.size(), 2u);
  EXPECT_EQ(spans_[0].path, "/a");
  EXPECT_EQ(spans_[0].status_code, 200);
  EXPECT_EQ(spans_[1].path, "/b");
  EXPECT_EQ(spans_[1].status_code, 201);
  EXPECT_EQ(stats().responses_unmatched, 1u);
}

TEST_F(ConnectionTrackerTest, IdleConnectionsExpire) {
  TrackerLimits limits;
  limits.idle_timeout_ns = 10'000;
  Reset(limits);
  Sock old_conn, busy;
  busy.fd = 8;
  busy.sock_id = 0xfeed0002;
  Accept(old_conn, 1);
  Recv(old_conn, Get("/stuck"), 2);  // last activity Exit(2) = 2250
  Accept(busy, 9);
  Recv(busy, Get("/busy"), 11);  // last activity Exit(11) = 11250

  tracker_->Expire(Exit(2) + 10'000 - 1);
  EXPECT_EQ(stats().connections_expired, 0u);
  EXPECT_EQ(tracker_->connections(), 2u);

  tracker_->Expire(Exit(2) + 10'000);
  EXPECT_EQ(stats().connections_expired, 1u);
  EXPECT_EQ(tracker_->connections(), 1u);
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].path, "/stuck");
  EXPECT_EQ(spans_[0].error_type, "connection_closed");
  EXPECT_EQ(spans_[0].end_unix_ns, Unix(Exit(2)));
  EXPECT_EQ(stats().requests_unanswered, 1u);

  // The busy one is untouched and still pairs.
  Send(busy, Response(200, "OK", ""), 12);
  ASSERT_EQ(spans_.size(), 2u);
  EXPECT_EQ(spans_[1].path, "/busy");
}


// --- links: CLIENT under the SERVER its thread serves; SERVER under the caller's CLIENT -

namespace links {

// Process A (an API) serves an outside client on `a_in` and calls process B over
// `a_out`; B serves that call on `b_in`, the same TCP connection seen from B's end.
struct Chain {
  Sock a_in, a_out, b_in;
  Chain() {
    a_in.tgid = 100;
    a_in.tid = 101;
    a_in.fd = 5;
    a_in.sock_id = 1;
    a_in.laddr = {10, 0, 0, 1};
    a_in.lport = 8080;
    a_in.raddr = {192, 168, 9, 9};
    a_in.rport = 50000;
    a_out = a_in;
    a_out.fd = 6;
    a_out.sock_id = 2;
    a_out.laddr = {10, 0, 0, 1};
    a_out.lport = 41000;
    a_out.raddr = {10, 0, 0, 2};
    a_out.rport = 9090;
    b_in.tgid = 200;
    b_in.tid = 201;
    b_in.proc_start = 888;
    b_in.fd = 9;
    b_in.sock_id = 3;
    b_in.laddr = {10, 0, 0, 2};
    b_in.lport = 9090;
    b_in.raddr = {10, 0, 0, 1};
    b_in.rport = 41000;
  }
};

const Span* Find(const std::vector<Span>& spans, uint32_t tgid, SpanKind kind) {
  for (const auto& s : spans)
    if (s.process.tgid == tgid && s.kind == kind) return &s;
  return nullptr;
}

int64_t Measure(const std::optional<int64_t>& v) { return v.value_or(-1); }

}  // namespace links

TEST_F(ConnectionTrackerTest, ClientSpanIsTheChildOfTheServerSpanItsThreadServes) {
  links::Chain c;
  Accept(c.a_in, 1);
  Recv(c.a_in, Get("/order"), 2);
  Connect(c.a_out, 3);
  Send(c.a_out, Get("/stock"), 4);
  Recv(c.a_out, Response(200, "OK", "7"), 6);
  Send(c.a_in, Response(200, "OK", "done"), 7);
  ASSERT_EQ(spans_.size(), 2u);
  const Span* server = links::Find(spans_, 100, SpanKind::kServer);
  const Span* client = links::Find(spans_, 100, SpanKind::kClient);
  ASSERT_TRUE(server && client);
  EXPECT_EQ(client->trace_id, server->trace_id);
  EXPECT_EQ(client->parent_span_id, server->span_id);
  EXPECT_EQ(client->local_parent, server->span_id);
  EXPECT_TRUE(AllZero(server->local_parent)) << "nothing on this node called A";
  EXPECT_EQ(stats().links_thread, 1u);
}

TEST_F(ConnectionTrackerTest, ServerSpanJoinsTheCallersTraceByConnection) {
  links::Chain c;
  Accept(c.a_in, 1);
  Recv(c.a_in, Get("/order"), 2);
  Connect(c.a_out, 3);
  Accept(c.b_in, 4);
  // B's read reaches the ring buffer before A's write (two CPUs): the link is decided
  // lazily, when B's span needs it.
  Recv(c.b_in, Get("/stock"), 5);
  Send(c.a_out, Get("/stock"), 4);
  Send(c.b_in, Response(200, "OK", "7"), 6);
  Recv(c.a_out, Response(200, "OK", "7"), 7);
  Send(c.a_in, Response(200, "OK", "done"), 8);
  ASSERT_EQ(spans_.size(), 3u);
  const Span* a_server = links::Find(spans_, 100, SpanKind::kServer);
  const Span* a_client = links::Find(spans_, 100, SpanKind::kClient);
  const Span* b_server = links::Find(spans_, 200, SpanKind::kServer);
  ASSERT_TRUE(a_server && a_client && b_server);
  EXPECT_EQ(b_server->trace_id, a_server->trace_id);
  EXPECT_EQ(b_server->parent_span_id, a_client->span_id);
  EXPECT_EQ(b_server->local_parent, a_client->span_id);
  EXPECT_TRUE(b_server->remote_parent);
  EXPECT_EQ(stats().links_peer, 1u);
}

// The callee answers before the caller's write returns (the caller's thread was
// preempted between moving its bytes and the syscall's exit, where its record is made):
// B's whole exchange reaches the ring buffer before A's request. B's span waits for it
// rather than going out unlinked, and goes out as soon as it is in.
TEST_F(ConnectionTrackerTest, AServerSpanThatEndsBeforeItsCallersRecordWaitsForIt) {
  links::Chain c;
  Connect(c.a_out, 1);
  Accept(c.b_in, 2);
  Recv(c.b_in, Get("/stock"), 3);
  Send(c.b_in, Response(200, "OK", "7"), 4);
  EXPECT_TRUE(spans_.empty()) << "held for the caller's record";
  EXPECT_EQ(stats().links_peer_held, 1u);
  Send(c.a_out, Get("/stock"), 2);
  ASSERT_EQ(spans_.size(), 1u) << "released by the caller's request";
  Recv(c.a_out, Response(200, "OK", "7"), 5);
  ASSERT_EQ(spans_.size(), 2u);
  const Span* a_client = links::Find(spans_, 100, SpanKind::kClient);
  const Span* b_server = links::Find(spans_, 200, SpanKind::kServer);
  ASSERT_TRUE(a_client && b_server);
  EXPECT_EQ(b_server->trace_id, a_client->trace_id);
  EXPECT_EQ(b_server->parent_span_id, a_client->span_id);
  EXPECT_EQ(b_server->end_unix_ns, Unix(Exit(4))) << "its own end, not the release's";
  EXPECT_EQ(stats().links_peer, 1u);
  EXPECT_EQ(stats().links_peer_unmatched, 0u);
  EXPECT_EQ(stats().links_peer_held_expired, 0u);
}

// An HTTP/1.0 callee answers and closes before the caller's record is in: the closed
// connection's held span still waits, and so does the next connection's order.
TEST_F(ConnectionTrackerTest, AHeldServerSpanOutlivesItsConnectionsClose) {
  links::Chain c;
  Connect(c.a_out, 1);
  Accept(c.b_in, 2);
  Recv(c.b_in, "GET /one HTTP/1.0\r\n\r\n", 3);
  Send(c.b_in, "HTTP/1.0 200 OK\r\n\r\nbody", 4);
  Close(c.b_in, 5);
  EXPECT_TRUE(spans_.empty());
  Send(c.a_out, "GET /one HTTP/1.0\r\n\r\n", 2);
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].kind, SpanKind::kServer);
  EXPECT_EQ(spans_[0].status_code, 200);
  Recv(c.a_out, "HTTP/1.0 200 OK\r\n\r\nbody", 6);
  Close(c.a_out, 7);
  ASSERT_EQ(spans_.size(), 2u);
  EXPECT_EQ(spans_[0].parent_span_id, spans_[1].span_id);
  EXPECT_EQ(spans_[0].trace_id, spans_[1].trace_id);
  EXPECT_EQ(stats().links_peer, 1u);
}

// The caller's record never comes (lost, or its request was never HTTP to us): the span
// goes out unlinked once kHoldForCallerNs (100 ms) has passed, at the next event or at
// housekeeping, and the wait is counted as expired.
TEST_F(ConnectionTrackerTest, AServerSpanWhoseCallersRecordNeverComesGoesOutUnlinkedWhenDue) {
  links::Chain c;
  Connect(c.a_out, 1);
  Accept(c.b_in, 2);
  Recv(c.b_in, Get("/stock"), 3);
  Send(c.b_in, Response(200, "OK", "7"), 4);
  Recv(c.b_in, Get("/stock2"), 5);
  Send(c.b_in, Response(200, "OK", "8"), 6);
  EXPECT_TRUE(spans_.empty()) << "the second waits behind the first";
  tracker_->Expire(Exit(4) + 99'000'000);
  EXPECT_TRUE(spans_.empty());
  Accept(c.a_in, 100'000 + 5);  // any event past the due time of the first
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].path, "/stock");
  tracker_->Expire(Exit(6) + 100'000'000);
  ASSERT_EQ(spans_.size(), 2u);
  EXPECT_EQ(spans_[1].path, "/stock2");
  EXPECT_TRUE(AllZero(spans_[0].parent_span_id));
  EXPECT_EQ(stats().links_peer_held, 2u);
  EXPECT_EQ(stats().links_peer_held_expired, 2u);
  EXPECT_EQ(stats().links_peer_unmatched, 2u);
}

// The server end's records come after the caller closed (a sandbox's edge packets have
// a ring buffer of their own): the caller's answered request is still claimable.
TEST_F(ConnectionTrackerTest, ServerSeenAfterTheCallerClosedStillJoinsItsTrace) {
  links::Chain c;
  Connect(c.a_out, 1);
  Send(c.a_out, Get("/stock"), 2);
  Recv(c.a_out, Response(200, "OK", "7"), 5);
  Close(c.a_out, 6);
  ASSERT_EQ(spans_.size(), 1u);
  Accept(c.b_in, 1);
  Recv(c.b_in, Get("/stock"), 3);
  Send(c.b_in, Response(200, "OK", "7"), 4);
  ASSERT_EQ(spans_.size(), 2u);
  const Span* a_client = links::Find(spans_, 100, SpanKind::kClient);
  const Span* b_server = links::Find(spans_, 200, SpanKind::kServer);
  ASSERT_TRUE(a_client && b_server);
  EXPECT_EQ(b_server->trace_id, a_client->trace_id);
  EXPECT_EQ(b_server->parent_span_id, a_client->span_id);
  EXPECT_EQ(stats().links_peer, 1u);
  const TraceId caller_trace = a_client->trace_id;  // spans_ may reallocate below
  // Claimed once: a second server request on a reused tuple does not take it again.
  Recv(c.b_in, Get("/stock"), 7);
  Send(c.b_in, Response(200, "OK", "7"), 8);
  ASSERT_EQ(spans_.size(), 3u);
  EXPECT_NE(spans_[2].trace_id, caller_trace);
  EXPECT_EQ(stats().links_peer, 1u);
}

TEST_F(ConnectionTrackerTest, IPv4ClientMeetsIPv6MappedServer) {
  links::Chain c;
  Accept(c.b_in, 1);
  Connect(c.a_out, 1);
  // B listens on "::": its end of the connection is IPv4-mapped IPv6.
  SocketEvent ev = Base(c.b_in, Kind::kData, 3);
  ev.family = 10;  // AF_INET6
  ev.laddr = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 2};
  ev.raddr = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1};
  ev.fd = 11;
  ev.sock_id = 33;
  ev.dir = Dir::kIngress;
  std::string req = Get("/v6");
  ev.payload = req;
  ev.ret = static_cast<int64_t>(req.size());
  Send(c.a_out, Get("/v6"), 2);
  tracker_->OnEvent(ev);
  SocketEvent resp = ev;
  resp.dir = Dir::kEgress;
  resp.ts_enter_ns = Enter(4);
  resp.ts_exit_ns = Exit(4);
  std::string body = Response(200, "OK", "x");
  resp.payload = body;
  resp.ret = static_cast<int64_t>(body.size());
  tracker_->OnEvent(resp);
  Recv(c.a_out, body, 5);
  ASSERT_EQ(spans_.size(), 2u);
  const Span* a_client = links::Find(spans_, 100, SpanKind::kClient);
  const Span* b_server = links::Find(spans_, 200, SpanKind::kServer);
  ASSERT_TRUE(a_client && b_server);
  EXPECT_EQ(b_server->trace_id, a_client->trace_id);
  EXPECT_EQ(b_server->parent_span_id, a_client->span_id);
}

TEST_F(ConnectionTrackerTest, ADifferentRequestLineAtTheOtherEndStaysUnlinked) {
  links::Chain c;
  Connect(c.a_out, 1);
  Accept(c.b_in, 1);
  Send(c.a_out, Get("/first"), 2);
  // B's capture of the request is not the request A sent first (a request lost on one
  // side): guessing could graft B onto the wrong trace.
  Recv(c.b_in, Get("/second"), 3);
  Send(c.b_in, Response(200, "OK", "x"), 4);
  const Span* b_server = links::Find(spans_, 200, SpanKind::kServer);
  ASSERT_TRUE(b_server);
  EXPECT_TRUE(AllZero(b_server->local_parent));
  EXPECT_TRUE(AllZero(b_server->parent_span_id));
  EXPECT_EQ(stats().links_peer, 0u);
  EXPECT_EQ(stats().links_peer_ambiguous, 1u);
}

TEST_F(ConnectionTrackerTest, KeepAliveRequestsLinkInOrder) {
  links::Chain c;
  Connect(c.a_out, 1);
  Accept(c.b_in, 1);
  for (uint64_t i = 0; i < 3; i++) {
    const uint64_t t = 10 * (i + 1);
    Send(c.a_out, Get("/same"), t);
    Recv(c.b_in, Get("/same"), t + 1);
    Send(c.b_in, Response(200, "OK", "x"), t + 2);
    Recv(c.a_out, Response(200, "OK", "x"), t + 3);
  }
  std::vector<const Span*> clients, servers;
  for (const auto& s : spans_) (s.kind == SpanKind::kClient ? clients : servers).push_back(&s);
  ASSERT_EQ(clients.size(), 3u);
  ASSERT_EQ(servers.size(), 3u);
  for (size_t i = 0; i < 3; i++) {
    EXPECT_EQ(servers[i]->parent_span_id, clients[i]->span_id) << i;
    EXPECT_EQ(servers[i]->trace_id, clients[i]->trace_id) << i;
  }
  EXPECT_NE(clients[0]->trace_id, clients[1]->trace_id);
}

TEST_F(ConnectionTrackerTest, TheAppsOwnTraceparentWinsAndAForwardedOneDoesNot) {
  links::Chain c;
  const std::string incoming = "0af7651916cd43dd8448eb211c80319c";
  // 1: A forwards the header it received unchanged (a proxy): the local link wins.
  Accept(c.a_in, 1);
  Recv(c.a_in, Get("/p", "traceparent: 00-" + incoming + "-b7ad6b7169203331-01\r\n"), 2);
  Connect(c.a_out, 3);
  Accept(c.b_in, 3);
  Send(c.a_out, Get("/p", "traceparent: 00-" + incoming + "-b7ad6b7169203331-01\r\n"), 4);
  Recv(c.b_in, Get("/p", "traceparent: 00-" + incoming + "-b7ad6b7169203331-01\r\n"), 5);
  Send(c.b_in, Response(200, "OK", "x"), 6);
  Recv(c.a_out, Response(200, "OK", "x"), 7);
  Send(c.a_in, Response(200, "OK", "x"), 8);
  {
    const Span* a_server = links::Find(spans_, 100, SpanKind::kServer);
    const Span* a_client = links::Find(spans_, 100, SpanKind::kClient);
    const Span* b_server = links::Find(spans_, 200, SpanKind::kServer);
    ASSERT_TRUE(a_server && a_client && b_server);
    EXPECT_EQ(HexEncode(a_server->trace_id), incoming);
    EXPECT_EQ(a_client->parent_span_id, a_server->span_id);
    EXPECT_EQ(b_server->parent_span_id, a_client->span_id);
    EXPECT_EQ(HexEncode(b_server->trace_id), incoming);
  }
  // 2: A's own instrumentation sends its context: trace and parent come from it.
  spans_.clear();
  const std::string own = "4bf92f3577b34da6a3ce929d0e0e4736";
  Recv(c.a_in, Get("/q"), 12);
  Send(c.a_out, Get("/q", "traceparent: 00-" + own + "-00f067aa0ba902b7-01\r\n"), 14);
  Recv(c.b_in, Get("/q", "traceparent: 00-" + own + "-00f067aa0ba902b7-01\r\n"), 15);
  Send(c.b_in, Response(200, "OK", "x"), 16);
  Recv(c.a_out, Response(200, "OK", "x"), 17);
  Send(c.a_in, Response(200, "OK", "x"), 18);
  const Span* a_server = links::Find(spans_, 100, SpanKind::kServer);
  const Span* a_client = links::Find(spans_, 100, SpanKind::kClient);
  const Span* b_server = links::Find(spans_, 200, SpanKind::kServer);
  ASSERT_TRUE(a_server && a_client && b_server);
  EXPECT_EQ(HexEncode(a_client->trace_id), own);
  EXPECT_EQ(HexEncode(a_client->parent_span_id), "00f067aa0ba902b7");
  EXPECT_EQ(a_client->local_parent, a_server->span_id) << "still judged under A's request";
  EXPECT_EQ(HexEncode(b_server->trace_id), own);
  EXPECT_EQ(HexEncode(b_server->parent_span_id), "00f067aa0ba902b7");
  EXPECT_EQ(b_server->local_parent, a_client->span_id);
  EXPECT_EQ(stats().app_traceparents, 1u);
}

TEST_F(ConnectionTrackerTest, AnEventLoopLinksOnlyTheOneRequestWithTheSameLine) {
  links::Chain c;
  Sock in2 = c.a_in;
  in2.fd = 15;
  in2.sock_id = 15;
  in2.rport = 50001;
  Accept(c.a_in, 1);
  Accept(in2, 1);
  Recv(c.a_in, Get("/x"), 2);
  Recv(in2, Get("/y"), 3);  // same thread: an event loop serving both
  Connect(c.a_out, 4);
  Send(c.a_out, Get("/y"), 5);  // proxied /y
  Recv(c.a_out, Response(200, "OK", "y"), 6);
  Sock out2 = c.a_out;
  out2.fd = 16;
  out2.sock_id = 16;
  out2.lport = 41001;
  Connect(out2, 7);
  Send(out2, Get("/z"), 8);  // matches neither
  Recv(out2, Response(200, "OK", "z"), 9);
  Send(in2, Response(200, "OK", "y"), 10);
  Send(c.a_in, Response(200, "OK", "x"), 11);
  ASSERT_EQ(spans_.size(), 4u);
  const Span* y_server = nullptr;
  const Span* y_client = nullptr;
  const Span* z_client = nullptr;
  for (const auto& s : spans_) {
    if (s.kind == SpanKind::kServer && s.path == "/y") y_server = &s;
    if (s.kind == SpanKind::kClient && s.path == "/y") y_client = &s;
    if (s.kind == SpanKind::kClient && s.path == "/z") z_client = &s;
  }
  ASSERT_TRUE(y_server && y_client && z_client);
  EXPECT_EQ(y_client->parent_span_id, y_server->span_id);
  EXPECT_TRUE(AllZero(z_client->parent_span_id));
  EXPECT_TRUE(AllZero(z_client->local_parent));
  EXPECT_EQ(stats().links_thread_ambiguous, 1u);
}

TEST_F(ConnectionTrackerTest, WaitsForANonHttpAnswerCountAsUnseenDownstream) {
  links::Chain c;
  Sock db = c.a_out;
  db.fd = 20;
  db.sock_id = 20;
  db.rport = 5432;
  Accept(c.a_in, 1);
  Recv(c.a_in, Get("/report"), 2);
  Connect(db, 3);
  Send(db, "Q\x00\x00\x00\x0dselect 1\x00"sv, 4);  // not HTTP: the connection is ignored
  // The client waits in poll() (not seen), then its read returns at once with the
  // answer: the wait is from the query's write to the answer's read.
  Recv(db, "T\x00\x00\x00\x21"sv, 44);
  Recv(db, "more of the same answer"sv, 45);  // not a new wait
  Send(c.a_in, Response(200, "OK", "r"), 100);
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(links::Measure(spans_[0].breakdown.downstream_unseen_ns),
            static_cast<int64_t>(Exit(44) - Exit(4)));
}

// --- TLS plaintext (bpf/l7.h: L7_F_TLS) ---------------------------------------------

namespace tls_plaintext {
// A ServerHello record (TLS 1.3: supported_versions selects 0x0304), as the probe passes
// it up once per connection.
std::string ServerHello13() {
  std::string body = std::string("\x03\x03", 2) + std::string(32, '\x11') + std::string("\x00", 1) +
                     std::string("\x13\x01\x00", 3) + std::string("\x00\x06\x00\x2b\x00\x02\x03\x04", 8);
  std::string hs = std::string("\x02\x00", 2) + static_cast<char>(body.size() >> 8) +
                   static_cast<char>(body.size() & 0xff) + body;
  return std::string("\x16\x03\x03", 3) + static_cast<char>(hs.size() >> 8) + static_cast<char>(hs.size() & 0xff) +
         hs;
}
}  // namespace tls_plaintext

TEST_F(ConnectionTrackerTest, FirstClientRequestCoversItsConnect) {
  // This side connect()ed (the probe's connect record, stamped at SYN_SENT with the
  // thread's accounting then): the connection's first CLIENT span starts there and says
  // how long setup took; the next request on it starts at its own write.
  Sock s;
  SocketEvent con = Base(s, Kind::kConnected, 1);
  con.conn_start_ns = con.ts_exit_ns;
  con.established_ns = con.ts_exit_ns + 900;
  con.retransmits = 1;  // a SYN retransmit before the first data
  tracker_->OnEvent(con);
  Send(s, Get("/first"), 10);
  Recv(s, Response(200, "OK", "a"), 11);
  Send(s, Get("/second"), 20);
  Recv(s, Response(200, "OK", "b"), 21);
  ASSERT_EQ(spans_.size(), 2u);
  EXPECT_EQ(spans_[0].kind, SpanKind::kClient);
  EXPECT_EQ(spans_[0].path, "/first");
  EXPECT_EQ(spans_[0].start_unix_ns, Unix(Exit(1)));
  EXPECT_EQ(spans_[0].breakdown.connect_ns, 900);
  EXPECT_EQ(spans_[1].path, "/second");
  EXPECT_EQ(spans_[1].start_unix_ns, Unix(Enter(20)));
  EXPECT_FALSE(spans_[1].breakdown.connect_ns.has_value());
}

// A caller's SYN goes unanswered either because the network lost it or because the
// callee's full accept queue dropped it; only the callee's namespace's ListenDrops tells
// which. The CLIENT span of a fresh connection that retransmitted carries the drops
// between a reading before its connect and one after its end (a fake /proc here), and
// the callee is watched from its first call linked on this node.
TEST_F(ConnectionTrackerTest, ARetransmittingConnectCarriesItsCalleesListenDrops) {
  namespace fs = std::filesystem;
  char tmpl[] = "/tmp/isotrace-listen-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const fs::path root = tmpl;
  links::Chain c;
  auto drops = [&](uint64_t n) {
    fs::create_directories(root / "200" / "net");
    fs::create_directories(root / "200" / "ns");
    if (!fs::is_symlink(root / "200" / "ns" / "net")) fs::create_symlink("net:[4026532100]", root / "200" / "ns" / "net");
    std::ofstream(root / "200" / "net" / "netstat") << "TcpExt: ListenOverflows ListenDrops\nTcpExt: " << n << " " << n
                                                    << "\n";
  };
  uint64_t mono = 0;
  util::Clock clk([&] { return mono; }, [&] { return mono + kOffset; });
  probes::ListenDrops listen(root.string());
  tracker_ = std::make_unique<ConnectionTracker>(TrackerLimits(), &clk,
                                                 [this](Span&& s) { spans_.push_back(std::move(s)); });
  tracker_->SetListenDrops(&listen);
  // A first call, linked: B is watched (its namespace read now, at 5).
  drops(5);
  mono = Exit(3);
  Send(c.a_out, Get("/warm"), 1);
  Recv(c.b_in, Get("/warm"), 2);
  Send(c.b_in, Response(200, "OK", "w"), 3);
  Recv(c.a_out, Response(200, "OK", "w"), 4);
  ASSERT_EQ(spans_.size(), 2u);
  EXPECT_FALSE(spans_[1].net.listen_drops.has_value()) << "no fresh connection, no retransmit";
  // A fresh connection whose SYN was resent while B's queue dropped 3 attempts.
  auto call = [&](uint16_t port, uint64_t t0, uint64_t syn_retransmits) {
    Sock a = c.a_out, b = c.b_in;
    a.sock_id = b.sock_id = 0;  // distinct sockets below
    a.sock_id = 50 + port;
    b.sock_id = 60 + port;
    a.fd = 11;
    b.fd = 12;
    a.lport = b.rport = port;
    SocketEvent con = Base(a, Kind::kConnected, t0);
    con.conn_start_ns = con.ts_exit_ns;
    con.established_ns = Exit(t0 + 1000);
    tracker_->OnEvent(con);
    Send(a, Get("/q"), t0 + 1001);
    Recv(b, Get("/q"), t0 + 1002);
    Send(b, Response(200, "OK", "q"), t0 + 1003);
    mono = Exit(t0 + 1004);
    SocketEvent r = Base(a, Kind::kData, t0 + 1004);
    r.dir = Dir::kIngress;
    const std::string resp = Response(200, "OK", "q");
    r.payload = resp;
    r.ret = static_cast<int64_t>(resp.size());
    r.retransmits = static_cast<uint32_t>(syn_retransmits);
    tracker_->OnEvent(r);
  };
  drops(8);
  call(42001, 10, 1);
  ASSERT_EQ(spans_.size(), 4u);
  EXPECT_EQ(spans_[3].kind, SpanKind::kClient);
  EXPECT_EQ(spans_[3].net.retransmits, 1);
  EXPECT_EQ(spans_[3].net.listen_drops, 3) << "read now (no reading after the span yet) minus the one before";
  // Lost on the wire: the queue dropped nothing meanwhile.
  call(42002, 5000, 1);
  ASSERT_EQ(spans_.size(), 6u);
  EXPECT_EQ(spans_[5].net.listen_drops, 0);
  // No retransmit: not asked.
  drops(20);
  call(42003, 9000, 0);
  ASSERT_EQ(spans_.size(), 8u);
  EXPECT_FALSE(spans_[7].net.listen_drops.has_value());
  tracker_.reset();
  fs::remove_all(root);
}

TEST_F(ConnectionTrackerTest, ResentSynAcksOfTheCalleesListenerLandOnTheCallersConnect) {
  // The callee's listener on this node resent its SYN-ACK (the probe's record carries the
  // listener's 4-tuple; no connection exists yet). The caller's first CLIENT span, which
  // covers its connect, counts it as its peer's retransmit; a SYN-ACK resent to another
  // caller, or outside the span, is not counted.
  Sock s;  // the caller: 10.0.0.1:8080 → 10.0.0.2:40001 (ports as the fixture has them)
  auto synack = [&](uint64_t t, uint16_t listener_port, uint16_t peer_port) {
    SocketEvent ev;
    ev.kind = Kind::kSynAckRetransmit;
    ev.ts_enter_ns = ev.ts_exit_ns = Exit(t);
    ev.family = 2;
    std::copy(s.raddr.begin(), s.raddr.end(), ev.laddr.begin());  // the listener's side
    std::copy(s.laddr.begin(), s.laddr.end(), ev.raddr.begin());
    ev.lport = listener_port;
    ev.rport = peer_port;
    tracker_->OnEvent(ev);
  };
  SocketEvent con = Base(s, Kind::kConnected, 1);
  con.conn_start_ns = con.ts_exit_ns;
  con.established_ns = Exit(3);
  tracker_->OnEvent(con);
  synack(2, s.rport, s.lport);       // this caller's handshake
  synack(2, s.rport, s.lport + 1);   // another caller's
  Send(s, Get("/first"), 10);
  Recv(s, Response(200, "OK", "a"), 11);
  synack(12, s.rport, s.lport);      // after the span: not its
  Send(s, Get("/second"), 20);
  Recv(s, Response(200, "OK", "b"), 21);
  ASSERT_EQ(spans_.size(), 2u);
  EXPECT_EQ(spans_[0].net.retransmits.value_or(0), 1);
  ASSERT_EQ(spans_[0].incidents.size(), 1u);
  EXPECT_EQ(spans_[0].incidents[0].kind, IncidentKind::kTcpRetransmit);
  EXPECT_TRUE(spans_[0].incidents[0].peer_side);
  EXPECT_EQ(spans_[0].incidents[0].time_unix_ns, Unix(Exit(2)));
  EXPECT_FALSE(spans_[1].net.retransmits.has_value() && *spans_[1].net.retransmits > 0);
  EXPECT_TRUE(spans_[1].incidents.empty());
  EXPECT_EQ(stats().synack_retransmits, 3u);
  EXPECT_EQ(stats().synack_on_spans, 1u);
}

TEST_F(ConnectionTrackerTest, ACallersDropBeforeTheServersFirstReadIsTheServerSpansPeerIncident) {
  // The caller's node dropped a segment of the request while the callee's thread had not
  // read yet (a fast link fills the socket buffer first). The request was not whole until
  // the caller resent it, so the SERVER span carries the drop as its peer's; a drop before
  // the caller began this request belongs to neither span.
  links::Chain c;
  Connect(c.a_out, 1);
  tracker_->OnEvent(Base(c.a_out, Kind::kLocalDrop, 2));
  Send(c.a_out, Get("/stock"), 4);
  tracker_->OnEvent(Base(c.a_out, Kind::kLocalDrop, 5));
  Accept(c.b_in, 5);
  Recv(c.b_in, Get("/stock"), 6);
  Send(c.b_in, Response(200, "OK", "7"), 7);
  Recv(c.a_out, Response(200, "OK", "7"), 8);
  ASSERT_EQ(spans_.size(), 2u);
  const Span* a_client = links::Find(spans_, 100, SpanKind::kClient);
  const Span* b_server = links::Find(spans_, 200, SpanKind::kServer);
  ASSERT_TRUE(a_client && b_server);
  ASSERT_EQ(b_server->parent_span_id, a_client->span_id);
  ASSERT_EQ(b_server->incidents.size(), 1u);
  EXPECT_EQ(b_server->incidents[0].kind, IncidentKind::kPacketDrop);
  EXPECT_TRUE(b_server->incidents[0].peer_side);
  EXPECT_EQ(b_server->incidents[0].time_unix_ns, Unix(Exit(5)));
  ASSERT_EQ(a_client->incidents.size(), 1u);
  EXPECT_EQ(a_client->incidents[0].kind, IncidentKind::kPacketDrop);
  EXPECT_FALSE(a_client->incidents[0].peer_side);
  EXPECT_EQ(a_client->incidents[0].time_unix_ns, Unix(Exit(5)));
}

// --- NAT'd service addresses (conntrack) -------------------------------------------

namespace nat {

std::array<uint8_t, 16> V6(std::array<uint8_t, 4> a) {
  return {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3]};
}

// The kernel's conntrack as the tracker sees it: original tuple → reply tuple.
class FakeConntrack : public probes::NatLookup {
 public:
  void Add(const Sock& caller, std::array<uint8_t, 4> callee_addr, uint16_t callee_port,
           std::array<uint8_t, 4> caller_seen_addr, uint16_t caller_seen_port) {
    entries_.push_back({{V6(caller.laddr), V6(caller.raddr), caller.lport, caller.rport},
                        {V6(callee_addr), V6(caller_seen_addr), callee_port, caller_seen_port}});
  }
  uint64_t Pin(uint32_t tgid, uint32_t netns) override { return 1000 + tgid + (uint64_t{netns} << 32); }
  probes::NatResult Reply(uint32_t tgid, uint64_t ns, const probes::FlowTuple& orig,
                          probes::FlowTuple* reply) override {
    asked.push_back(tgid);
    asked_ns.push_back(ns);
    for (const auto& [o, r] : entries_)
      if (o == orig) {
        *reply = r;
        return probes::NatResult::kTranslated;
      }
    return probes::NatResult::kNoEntry;
  }
  std::vector<uint32_t> asked;
  std::vector<uint64_t> asked_ns;  // the Pin token each lookup carried

 private:
  std::vector<std::pair<probes::FlowTuple, probes::FlowTuple>> entries_;
};

// A (tgid 100) calls the Service address 10.96.0.10:80; DNAT sends it to B (tgid 200) at
// 10.0.0.2:9090, and SNAT makes A appear as 10.0.0.77:61000 there.
struct NatChain : links::Chain {
  NatChain() {
    a_out.raddr = {10, 96, 0, 10};
    a_out.rport = 80;
    b_in.raddr = {10, 0, 0, 77};
    b_in.rport = 61000;
  }
};

}  // namespace nat

TEST_F(ConnectionTrackerTest, ServerBehindDnatAndSnatJoinsTheCallersTraceThroughConntrack) {
  nat::NatChain c;
  nat::FakeConntrack ct;
  ct.Add(c.a_out, {10, 0, 0, 2}, 9090, {10, 0, 0, 77}, 61000);
  tracker_->SetNat(&ct);
  Accept(c.a_in, 1);
  Recv(c.a_in, Get("/order"), 2);
  Connect(c.a_out, 3);
  Send(c.a_out, Get("/stock"), 4);
  Accept(c.b_in, 4);
  Recv(c.b_in, Get("/stock"), 5);
  // The callee's socket retransmitted the response: the caller's span counts it as its
  // peer's, found through the translation too.
  SocketEvent rt = Base(c.b_in, Kind::kRetransmit, 6);
  tracker_->OnEvent(rt);
  Send(c.b_in, Response(200, "OK", "7"), 6);
  Recv(c.a_out, Response(200, "OK", "7"), 7);
  Send(c.a_in, Response(200, "OK", "done"), 8);
  // A second request on the same connection: asked once per connection.
  Send(c.a_out, Get("/stock"), 9);
  Recv(c.b_in, Get("/stock"), 10);
  Send(c.b_in, Response(200, "OK", "7"), 11);
  Recv(c.a_out, Response(200, "OK", "7"), 12);
  ASSERT_EQ(spans_.size(), 5u);
  const Span* a_client = links::Find(spans_, 100, SpanKind::kClient);
  const Span* b_server = links::Find(spans_, 200, SpanKind::kServer);
  const Span* a_server = links::Find(spans_, 100, SpanKind::kServer);
  ASSERT_TRUE(a_client && b_server && a_server);
  EXPECT_EQ(b_server->trace_id, a_server->trace_id);
  EXPECT_EQ(b_server->parent_span_id, a_client->span_id);
  EXPECT_TRUE(b_server->remote_parent);
  EXPECT_EQ(spans_[3].parent_span_id, spans_[4].span_id) << "the second call links too";  // B answers first
  EXPECT_EQ(stats().links_peer, 2u);
  EXPECT_EQ(stats().links_peer_nat, 2u);
  EXPECT_EQ(stats().nat_lookups, 1u);
  EXPECT_EQ(stats().nat_translated, 1u);
  EXPECT_EQ(ct.asked, std::vector<uint32_t>{100}) << "the caller's process names the namespace to ask";
  EXPECT_EQ(ct.asked_ns, std::vector<uint64_t>{1100}) << "the namespace pinned when the connection was first seen";
  ASSERT_EQ(a_client->incidents.size(), 1u);
  EXPECT_EQ(a_client->incidents[0].kind, IncidentKind::kTcpRetransmit);
  EXPECT_TRUE(a_client->incidents[0].peer_side);
}

TEST_F(ConnectionTrackerTest, CallersMirroredByTheirCalleeAreNeverAskedAbout) {
  links::Chain c;
  nat::FakeConntrack ct;
  tracker_->SetNat(&ct);
  Connect(c.a_out, 1);
  Send(c.a_out, Get("/stock"), 2);
  Accept(c.b_in, 2);
  Recv(c.b_in, Get("/stock"), 3);
  Send(c.b_in, Response(200, "OK", "7"), 4);
  Recv(c.a_out, Response(200, "OK", "7"), 5);
  // A request from off the node misses: the queue is drained, the linked caller skipped.
  Sock outside;
  outside.tgid = 200;
  outside.fd = 12;
  outside.sock_id = 77;
  outside.laddr = {10, 0, 0, 2};
  outside.lport = 9090;
  outside.raddr = {192, 168, 1, 1};
  outside.rport = 5555;
  Accept(outside, 6);
  Recv(outside, Get("/x"), 7);
  Send(outside, Response(200, "OK", "x"), 8);
  ASSERT_EQ(spans_.size(), 3u);
  EXPECT_EQ(stats().links_peer, 1u);
  EXPECT_TRUE(ct.asked.empty());
  EXPECT_EQ(stats().nat_lookups, 0u);
}

TEST_F(ConnectionTrackerTest, AFullLookupQueueCountsOnlyCallersStillUnlinked) {
  // More CLIENT connections than the lookup queue holds, and no miss to drain it.
  nat::FakeConntrack ct;
  tracker_->SetNat(&ct);
  constexpr int kCalls = 4200;  // > the queue's 4096
  uint64_t t = 1;
  // Calls whose callee is on the node and mirrors them: pushed out of the queue, but no
  // lookup was lost.
  for (int i = 0; i < kCalls; i++) {
    links::Chain c;
    c.a_out.fd = 1000 + i;
    c.a_out.sock_id = 100000 + 2 * i;
    c.a_out.lport = static_cast<uint16_t>(20000 + i);
    c.b_in.fd = 1000 + i;
    c.b_in.sock_id = 100001 + 2 * i;
    c.b_in.rport = c.a_out.lport;
    Connect(c.a_out, t++);
    Send(c.a_out, Get("/m"), t++);
    Accept(c.b_in, t++);
    Recv(c.b_in, Get("/m"), t++);
    Send(c.b_in, Response(200, "OK", "m"), t++);
    Recv(c.a_out, Response(200, "OK", "m"), t++);
    Close(c.a_out, t++);
    Close(c.b_in, t++);
  }
  EXPECT_EQ(stats().links_peer, uint64_t(kCalls));
  EXPECT_EQ(stats().nat_asks_dropped, 0u) << "callers linked without NAT are no loss";
  // Calls leaving the node (open connections, no callee here): those pushed out are lost.
  for (int i = 0; i < kCalls; i++) {
    Sock out;
    out.tgid = 500;
    out.tid = 501;
    out.fd = 3000 + i;
    out.sock_id = 900000 + i;
    out.laddr = {10, 0, 0, 1};
    out.lport = static_cast<uint16_t>(30000 + i);
    out.raddr = {10, 96, 0, 10};
    out.rport = 80;
    Connect(out, t++);
    Send(out, Get("/away"), t++);
  }
  EXPECT_EQ(stats().nat_asks_dropped, uint64_t(kCalls - 4096));
  EXPECT_TRUE(ct.asked.empty()) << "nothing missed: nothing asked";
}

TEST_F(ConnectionTrackerTest, TwoCallersTranslatedToOneCalleeTupleLinkNeither) {
  // Overlapping addresses in two namespaces: both callers' reply tuples name B's socket.
  nat::NatChain c;
  Sock other = c.a_out;
  other.tgid = 300;
  other.tid = 301;
  other.sock_id = 9;
  other.lport = 41001;  // another caller in another namespace, to the same Service
  nat::FakeConntrack ct;
  ct.Add(c.a_out, {10, 0, 0, 2}, 9090, {10, 0, 0, 77}, 61000);
  ct.Add(other, {10, 0, 0, 2}, 9090, {10, 0, 0, 77}, 61000);
  tracker_->SetNat(&ct);
  Connect(c.a_out, 1);
  Connect(other, 1);
  Send(c.a_out, Get("/stock"), 2);
  Send(other, Get("/stock"), 2);
  Accept(c.b_in, 3);
  Recv(c.b_in, Get("/stock"), 4);
  Send(c.b_in, Response(200, "OK", "7"), 5);
  const Span* b_server = links::Find(spans_, 200, SpanKind::kServer);
  ASSERT_TRUE(b_server);
  EXPECT_TRUE(AllZero(b_server->parent_span_id));
  EXPECT_TRUE(AllZero(b_server->local_parent));
  EXPECT_EQ(stats().links_peer, 0u);
  EXPECT_EQ(stats().links_nat_ambiguous, 1u);
  EXPECT_EQ(stats().nat_lookups, 2u);
}

TEST_F(ConnectionTrackerTest, ATranslationIsForgottenWhenItsTupleIsReused) {
  // The caller's tuple comes back on a new connection (after TIME_WAIT) to another
  // Service: the old translation must not link it to the old callee.
  nat::NatChain c;
  nat::FakeConntrack ct;
  ct.Add(c.a_out, {10, 0, 0, 2}, 9090, {10, 0, 0, 77}, 61000);
  tracker_->SetNat(&ct);
  Connect(c.a_out, 1);
  Send(c.a_out, Get("/stock"), 2);
  Accept(c.b_in, 3);
  Recv(c.b_in, Get("/stock"), 4);
  Send(c.b_in, Response(200, "OK", "7"), 5);
  Recv(c.a_out, Response(200, "OK", "7"), 6);
  Close(c.a_out, 7);
  Close(c.b_in, 7);
  EXPECT_EQ(stats().links_peer_nat, 1u);
  Sock again = c.a_out;
  again.sock_id = 50;  // a new socket, same tuple; conntrack no longer has it
  nat::FakeConntrack ct2;
  tracker_->SetNat(&ct2);
  Connect(again, 10);
  Send(again, Get("/stock"), 11);
  Sock b_again = c.b_in;
  b_again.sock_id = 51;
  Accept(b_again, 12);
  Recv(b_again, Get("/stock"), 13);
  Send(b_again, Response(200, "OK", "7"), 14);
  ASSERT_EQ(spans_.size(), 3u);
  EXPECT_TRUE(AllZero(spans_[2].parent_span_id)) << "linked through a stale translation";
  EXPECT_EQ(stats().links_peer_nat, 1u);
  EXPECT_EQ(ct2.asked, std::vector<uint32_t>{100});
  EXPECT_EQ(stats().nat_no_entry, 1u);
}

TEST_F(ConnectionTrackerTest, TlsPlaintextAfterCiphertextStartsAfresh) {
  // nginx peeks at a TLS port's first byte before the handshake (a syscall-hook kernel
  // reports it), and a daemon started mid-connection sees ciphertext first: either way the
  // connection was judged not HTTP before its plaintext records began. The plaintext is
  // a fresh stream (positions from 0) and must decode.
  Sock s;
  DataAt(s, Dir::kIngress, 0, std::string("\x16\x03\x01\x02\x00\x01", 6), 1);
  ASSERT_EQ(stats().connections_not_http, 1u);
  SocketEvent hello = Base(s, Kind::kTlsHello, 2);
  const std::string sh = tls_plaintext::ServerHello13();
  hello.dir = Dir::kEgress;
  hello.payload = sh;
  tracker_->OnEvent(hello);
  for (auto [dir, text, t] : {std::tuple{Dir::kIngress, Get("/secure?x=1"), 3},
                              std::tuple{Dir::kEgress, Response(200, "OK", "hi"), 4}}) {
    SocketEvent ev = Base(s, Kind::kData, t);
    ev.dir = dir;
    ev.pos = 0;
    ev.tls = true;
    ev.payload = text;
    ev.ret = static_cast<int64_t>(text.size());
    tracker_->OnEvent(ev);
  }
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].path, "/secure");
  EXPECT_EQ(spans_[0].status_code, 200);
  EXPECT_TRUE(spans_[0].tls);
  EXPECT_EQ(spans_[0].tls_version, "1.3");
  EXPECT_EQ(stats().stream_gaps, 0u);
}

}  // namespace
}  // namespace isotrace::correlate
