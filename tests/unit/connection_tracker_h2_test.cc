// HTTP/2 and gRPC through the connection tracker: real frames (libnghttp2's client and
// server sessions, tests/unit/http2_wire.h) delivered as the l7 probe would deliver them,
// asserting the spans' fields, RPC attributes, timestamps, links and counters.

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "daemon/correlate/connection_tracker.h"
#include "tests/unit/http2_wire.h"

namespace isotrace::correlate {
namespace {

using probes::SocketEvent;
using testing_h2::Wire;

constexpr uint64_t kOffset = 1'000'000'000'000ull;
constexpr uint64_t kNow = 5'000'000'000ull;

// One end of a TCP connection in one process.
struct End {
  uint32_t tgid;
  uint32_t tid;
  int32_t fd;
  uint64_t sock_id;
  uint16_t lport, rport;
};

class TrackerH2Test : public ::testing::Test {
 protected:
  TrackerH2Test()
      : clock_([] { return kNow; }, [] { return kNow + kOffset; }),
        tracker_(TrackerLimits(), &clock_, [this](Span&& s) { spans_.push_back(std::move(s)); }) {}

  // Step `t` of a syscall: enters at t µs, returns 100 ns later.
  static SocketEvent Ev(const End& e, SocketEvent::Kind kind, uint64_t t) {
    SocketEvent ev;
    ev.kind = kind;
    ev.ts_enter_ns = t * 1000;
    ev.ts_exit_ns = t * 1000 + 100;
    ev.tgid = e.tgid;
    ev.tid = e.tid;
    ev.proc_start_ns = 1;
    ev.fd = e.fd;
    ev.sock_id = e.sock_id;
    ev.conn_id = e.sock_id;
    ev.family = 2;
    ev.laddr = {127, 0, 0, 1};
    ev.raddr = {127, 0, 0, 1};
    ev.lport = e.lport;
    ev.rport = e.rport;
    return ev;
  }
  void Open(const End& e, bool server, uint64_t t) {
    tracker_.OnEvent(Ev(e, server ? SocketEvent::Kind::kAccept : SocketEvent::Kind::kConnect, t));
  }
  void Data(const End& e, bool ingress, std::string_view bytes, uint64_t t, uint32_t tid = 0) {
    SocketEvent ev = Ev(e, SocketEvent::Kind::kData, t);
    if (tid) ev.tid = tid;
    ev.dir = ingress ? SocketEvent::Direction::kIngress : SocketEvent::Direction::kEgress;
    ev.payload = bytes;
    ev.ret = static_cast<int64_t>(bytes.size());
    ev.pos = Advance(e, ingress, bytes.size());
    tracker_.OnEvent(ev);
  }
  // The direction's byte position before `n` more bytes (what the probe reports).
  uint64_t Advance(const End& e, bool ingress, uint64_t n) {
    uint64_t& p = pos_[e.sock_id * 2 + ingress];
    p += n;
    return p - n;
  }
  // Replays segments [from, to) of a recorded connection as the server end sees them,
  // segment i at step base + i; returns the next step.
  uint64_t Serve(const End& e, const std::vector<testing_h2::Segment>& segs, uint64_t base, size_t from = 0,
                 size_t to = SIZE_MAX) {
    for (size_t i = from; i < std::min(to, segs.size()); i++) Data(e, segs[i].from_client, segs[i].bytes, base + i);
    return base + std::min(to, segs.size());
  }

  const Span* ByPath(std::string_view path, SpanKind kind) const {
    for (const auto& s : spans_)
      if (s.path == path && s.kind == kind) return &s;
    return nullptr;
  }

  util::Clock clock_;
  std::map<uint64_t, uint64_t> pos_;
  std::vector<Span> spans_;
  ConnectionTracker tracker_;
};

Wire::Headers Grpc(const std::string& path, const std::string& traceparent = "") {
  Wire::Headers h = {{":method", "POST"},        {":scheme", "http"}, {":authority", "127.0.0.1:50051"},
                     {":path", path},            {"content-type", "application/grpc"},
                     {"te", "trailers"}};
  if (!traceparent.empty()) h.push_back({"traceparent", traceparent});
  return h;
}
const Wire::Headers kRespHeaders = {{":status", "200"}, {"content-type", "application/grpc"}};
const std::string kMsg("\0\0\0\0\x03" "abc", 8);
// A unary call's successful answer: headers, one message, grpc-status 0.
void Answer(Wire& w, int32_t id) { w.Respond(id, kRespHeaders, kMsg, {{"grpc-status", "0"}}); }
// Two calls on one connection, both answered after both were sent.
void TwoCalls(Wire& w, const Wire::Headers& first, const Wire::Headers& second) {
  int32_t a = w.Request(first, kMsg);
  w.Pump();
  int32_t b = w.Request(second, kMsg);
  w.Pump();
  Answer(w, a);
  Answer(w, b);
  w.Pump();
}

TEST_F(TrackerH2Test, GrpcServerSpansOkAndError) {
  Wire w;
  int32_t a = w.Request(Grpc("/shop.Cart/Add", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), kMsg);
  w.Pump();
  const size_t after_a = w.segments.size();
  Answer(w, a);
  w.Pump();
  int32_t b = w.Request(Grpc("/shop.Cart/Get"), kMsg);
  w.Pump();
  w.Respond(b, {{":status", "200"}, {"content-type", "application/grpc"}, {"grpc-status", "5"},
                {"grpc-message", "no cart"}});
  w.Pump();
  const End srv{100, 101, 5, 0xa1, 50051, 40000};
  Open(srv, true, 1);
  Serve(srv, w.segments, 10);

  ASSERT_EQ(spans_.size(), 2u);
  const Span& ok = spans_[0];
  EXPECT_EQ(ok.kind, SpanKind::kServer);
  EXPECT_EQ(ok.method, "POST");
  EXPECT_EQ(ok.path, "/shop.Cart/Add");
  EXPECT_EQ(ok.protocol_version, "2");
  EXPECT_EQ(ok.host_header, "127.0.0.1:50051");
  EXPECT_EQ(ok.status_code, 200);
  EXPECT_EQ(ok.error_type, "");
  ASSERT_TRUE(ok.rpc.has_value());
  EXPECT_EQ(ok.rpc->system, "grpc");
  EXPECT_EQ(ok.rpc->service, "shop.Cart");
  EXPECT_EQ(ok.rpc->method, "Add");
  EXPECT_EQ(ok.rpc->grpc_status_code, 0);
  // The traceparent in HEADERS sets the trace and the parent.
  EXPECT_EQ(ok.trace_id[0], 0x0a);
  EXPECT_EQ(ok.parent_span_id[0], 0xb7);
  EXPECT_TRUE(ok.remote_parent);
  // Start: exit of the read holding the request HEADERS (segment 2: preface, SETTINGS,
  // HEADERS); end: exit of the write of the trailers (the last segment of the response).
  size_t headers_seg = 0;
  while (!(w.segments[headers_seg].from_client && uint8_t(w.segments[headers_seg].bytes[3]) == 1)) headers_seg++;
  EXPECT_EQ(ok.start_unix_ns, (10 + headers_seg) * 1000 + 100 + kOffset);
  size_t trailers_seg = after_a;
  while (w.segments[trailers_seg].from_client || uint8_t(w.segments[trailers_seg].bytes[3]) != 1 ||
         !(w.segments[trailers_seg].bytes[4] & 1))
    trailers_seg++;
  EXPECT_EQ(ok.end_unix_ns, (10 + trailers_seg) * 1000 + 100 + kOffset);

  const Span& err = spans_[1];
  EXPECT_EQ(err.path, "/shop.Cart/Get");
  EXPECT_EQ(err.status_code, 200);
  EXPECT_EQ(err.rpc->grpc_status_code, 5);
  EXPECT_EQ(err.error_type, "NOT_FOUND");  // a failure under HTTP 200
  EXPECT_EQ(tracker_.stats().connections_http2, 1u);
  EXPECT_EQ(tracker_.stats().connections_not_http, 0u);
}

// Both ends on this node, three calls in flight on one connection, answered in reverse:
// each SERVER span is the child of the CLIENT span of its own stream.
TEST_F(TrackerH2Test, PeerLinksMatchStreamsNotOrder) {
  Wire w;
  std::vector<int32_t> ids;
  for (const char* m : {"A", "B", "C"}) ids.push_back(w.Request(Grpc(std::string("/s.S/") + m), kMsg));
  w.Pump();
  for (int i = 2; i >= 0; i--) w.Respond(ids[i], kRespHeaders, kMsg, {{"grpc-status", "0"}});
  w.Pump();
  const End cli{200, 201, 9, 0xc1, 40000, 50051};
  const End srv{100, 101, 5, 0xa1, 50051, 40000};
  Open(cli, false, 1);
  Open(srv, true, 2);
  uint64_t t = 10;
  for (const auto& s : w.segments) {
    // The sender's write, then the receiver's read.
    Data(s.from_client ? cli : srv, false, s.bytes, t++);
    Data(s.from_client ? srv : cli, true, s.bytes, t++);
  }
  ASSERT_EQ(spans_.size(), 6u);
  for (const char* m : {"/s.S/A", "/s.S/B", "/s.S/C"}) {
    const Span* c = ByPath(m, SpanKind::kClient);
    const Span* s = ByPath(m, SpanKind::kServer);
    ASSERT_TRUE(c && s) << m;
    EXPECT_EQ(s->trace_id, c->trace_id) << m;
    EXPECT_EQ(s->parent_span_id, c->span_id) << m;
    EXPECT_EQ(s->local_parent, c->span_id) << m;
    EXPECT_LE(c->start_unix_ns, s->start_unix_ns) << m;
    EXPECT_GE(c->end_unix_ns, s->end_unix_ns) << m;
  }
  EXPECT_EQ(tracker_.stats().links_peer, 3u);
  EXPECT_EQ(tracker_.stats().links_peer_ambiguous, 0u);
}

// A gRPC server reads on its poller thread and calls downstream from a handler thread:
// the call is the child of the one request its process is serving.
TEST_F(TrackerH2Test, ProcessLinkFromAHandlerThread) {
  Wire in, out;
  int32_t a = in.Request(Grpc("/front.F/Chain"), kMsg);
  in.Pump();
  int32_t b = out.Request(Grpc("/back.B/Get"), kMsg);
  out.Pump();
  Answer(out, b);
  out.Pump();
  const size_t in_req = in.segments.size();
  Answer(in, a);
  in.Pump();
  const End srv{100, 101, 5, 0xa1, 50051, 40000};      // poller thread 101
  const End down{100, 102, 6, 0xa2, 40010, 50052};     // handler thread 102
  Open(srv, true, 1);
  Open(down, false, 2);
  uint64_t t = Serve(srv, in.segments, 10, 0, in_req);
  for (size_t i = 0; i < out.segments.size(); i++) Data(down, !out.segments[i].from_client, out.segments[i].bytes, t++);
  for (size_t i = in_req; i < in.segments.size(); i++) Data(srv, in.segments[i].from_client, in.segments[i].bytes, t++, 102);

  const Span* server = ByPath("/front.F/Chain", SpanKind::kServer);
  const Span* client = ByPath("/back.B/Get", SpanKind::kClient);
  ASSERT_TRUE(server && client);
  EXPECT_EQ(client->trace_id, server->trace_id);
  EXPECT_EQ(client->parent_span_id, server->span_id);
  EXPECT_EQ(client->local_parent, server->span_id);
  EXPECT_EQ(client->rpc->service, "back.B");
  EXPECT_EQ(tracker_.stats().links_process, 1u);
  EXPECT_EQ(tracker_.stats().links_thread, 0u);
}

TEST_F(TrackerH2Test, ProcessLinkRefusedWithTwoRequestsInFlight) {
  Wire in, out;
  in.Request(Grpc("/front.F/One"), kMsg);
  in.Request(Grpc("/front.F/Two"), kMsg);
  in.Pump();
  int32_t b = out.Request(Grpc("/back.B/Get"), kMsg);
  out.Pump();
  Answer(out, b);
  out.Pump();
  const End srv{100, 101, 5, 0xa1, 50051, 40000};
  const End down{100, 102, 6, 0xa2, 40010, 50052};
  Open(srv, true, 1);
  Open(down, false, 2);
  uint64_t t = Serve(srv, in.segments, 10);
  for (const auto& s : out.segments) Data(down, !s.from_client, s.bytes, t++);
  const Span* client = ByPath("/back.B/Get", SpanKind::kClient);
  ASSERT_TRUE(client);
  EXPECT_EQ(client->local_parent, SpanId{});
  EXPECT_EQ(client->parent_span_id, SpanId{});
  EXPECT_EQ(tracker_.stats().links_process_ambiguous, 1u);
}

// The daemon started after the channel opened: later calls' frames, no preface. No span,
// counted as HTTP/2 that cannot be decoded (not as "not HTTP").
TEST_F(TrackerH2Test, MissedStartMakesNoSpans) {
  Wire w;
  int32_t a = w.Request(Grpc("/s.S/Early"), kMsg);
  w.Pump();
  Answer(w, a);
  w.Pump();
  const size_t late = w.segments.size();
  for (int i = 0; i < 3; i++) {
    int32_t id = w.Request(Grpc("/s.S/Late"), kMsg);
    w.Pump();
    Answer(w, id);
    w.Pump();
  }
  const End srv{100, 101, 5, 0xa1, 50051, 40000};
  Serve(srv, w.segments, 10, late);
  EXPECT_TRUE(spans_.empty());
  EXPECT_EQ(tracker_.stats().connections_http2_undecodable, 1u);
  EXPECT_EQ(tracker_.stats().connections_not_http, 0u);
}

// Bytes lost over a HEADERS frame: the call in flight is dropped, never guessed.
TEST_F(TrackerH2Test, LostHeadersDropTheCallInFlight) {
  Wire w;
  TwoCalls(w, Grpc("/s.S/One"), Grpc("/s.S/Two"));
  const End srv{100, 101, 5, 0xa1, 50051, 40000};
  Open(srv, true, 1);
  uint64_t t = 10;
  int headers = 0;
  for (const auto& s : w.segments) {
    const bool req_headers = s.from_client && uint8_t(s.bytes[3]) == 1 && s.bytes.size() > 9;
    if (req_headers && ++headers == 2) {
      // Two's HEADERS: only 4 bytes captured of the read.
      SocketEvent ev = Ev(srv, SocketEvent::Kind::kData, t++);
      ev.dir = SocketEvent::Direction::kIngress;
      ev.payload = std::string_view(s.bytes).substr(0, 4);
      ev.ret = static_cast<int64_t>(s.bytes.size());
      ev.pos = Advance(srv, true, s.bytes.size());
      tracker_.OnEvent(ev);
      continue;
    }
    Data(srv, s.from_client, s.bytes, t++);
  }
  EXPECT_TRUE(spans_.empty());  // One was in flight too: its answer came after the loss
  EXPECT_EQ(tracker_.stats().connections_http2_undecodable, 1u);
  tracker_.OnEvent(Ev(srv, SocketEvent::Kind::kClose, t));
  EXPECT_TRUE(spans_.empty());
  EXPECT_EQ(tracker_.stats().http2_streams_dropped, 1u);
}

// curl --http2 against a plaintext server: Upgrade: h2c, 101, then HTTP/2 with the
// response to the upgrade request on stream 1, frames in the 101's own segment.
// What curl --http2 and a server that upgrades exchange: the HTTP/1.1 request with
// HTTP2-Settings, then (the server's side) its 101 followed by HTTP/2, where stream 1
// answers the request and the client adds a stream of its own (/two, answered 404).
struct Upgrade {
  Wire w;
  std::string req;          // the HTTP/1.1 request
  std::string first_server;  // the 101 and the server's first frames, one write
  size_t first = 0;          // the segment of w that first_server carries
};
std::unique_ptr<Upgrade> MakeUpgrade() {
  auto u = std::make_unique<Upgrade>();
  Wire& w = u->w;
  uint8_t settings[32];
  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};
  ssize_t n = nghttp2_pack_settings_payload(settings, sizeof(settings), iv, 1);
  nghttp2_session_upgrade2(w.client(), settings, size_t(n), 0, nullptr);
  nghttp2_session_upgrade2(w.server(), settings, size_t(n), 0, nullptr);
  w.Respond(1, {{":status", "200"}, {"content-type", "text/plain"}}, "upgraded");
  w.Pump();
  int32_t second = w.Request({{":method", "GET"}, {":scheme", "http"}, {":authority", "h"}, {":path", "/two"}});
  w.Pump();
  w.Respond(second, {{":status", "404"}});
  w.Pump();
  const std::string b64 = absl::WebSafeBase64Escape(absl::string_view(reinterpret_cast<char*>(settings), size_t(n)));
  u->req = "GET /up HTTP/1.1\r\nHost: h:80\r\nConnection: Upgrade, HTTP2-Settings\r\n"
           "Upgrade: h2c\r\nHTTP2-Settings: " + b64 + "\r\n\r\n";
  while (w.segments[u->first].from_client) u->first++;
  u->first_server = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n" +
                    w.segments[u->first].bytes;
  return u;
}

TEST_F(TrackerH2Test, H2cUpgradeMakesOneSpanPerStream) {
  auto u = MakeUpgrade();
  Wire& w = u->w;
  const std::string& req = u->req;
  const std::string& first_server = u->first_server;
  const size_t first = u->first;
  const End srv{100, 101, 5, 0xa1, 80, 40000};
  Open(srv, true, 1);
  Data(srv, true, req, 2);
  Data(srv, false, first_server, 3);
  uint64_t t = 4;
  for (size_t i = 0; i < w.segments.size(); i++)
    if (i != first) Data(srv, w.segments[i].from_client, w.segments[i].bytes, t++);
  ASSERT_EQ(spans_.size(), 2u);
  const Span* up = ByPath("/up", SpanKind::kServer);
  ASSERT_TRUE(up);
  EXPECT_EQ(up->status_code, 200);
  EXPECT_EQ(up->protocol_version, "2");
  EXPECT_EQ(up->start_unix_ns, 2000 + 100 + kOffset);
  EXPECT_FALSE(up->rpc.has_value());
  const Span* two = ByPath("/two", SpanKind::kServer);
  ASSERT_TRUE(two);
  EXPECT_EQ(two->status_code, 404);
  EXPECT_EQ(tracker_.stats().connections_http2, 1u);
}

// A connection closed with a call in flight: an error span, as for HTTP/1.
TEST_F(TrackerH2Test, CloseEndsCallsInFlight) {
  Wire w;
  w.Request(Grpc("/s.S/Hang"), kMsg);
  w.Pump();
  const End srv{100, 101, 5, 0xa1, 50051, 40000};
  Open(srv, true, 1);
  uint64_t t = Serve(srv, w.segments, 10);
  tracker_.OnEvent(Ev(srv, SocketEvent::Kind::kClose, t));
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].error_type, "connection_closed");
  EXPECT_EQ(spans_[0].status_code, 0);
  EXPECT_EQ(spans_[0].rpc->grpc_status_code, -1);
}

}  // namespace
}  // namespace isotrace::correlate

namespace isotrace::correlate {
namespace {

// The receiving end of isotrace's own OTLP exports (a collector on this node) makes no
// span: each would be exported in the next batch, whose receipt would make another.
TEST_F(TrackerH2Test, OwnExportsMakeNoSpans) {
  Wire w;
  auto h = Grpc("/opentelemetry.proto.collector.trace.v1.TraceService/Export");
  h.push_back({"user-agent", "isotrace/0.1.0 grpc-c++/1.51.1 grpc-c/29.0.0 (linux; chttp2)"});
  TwoCalls(w, h, Grpc("/app.A/Call"));
  const End srv{100, 101, 5, 0xa1, 4317, 40000};
  Open(srv, true, 1);
  Serve(srv, w.segments, 10);
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].path, "/app.A/Call");
  EXPECT_EQ(tracker_.stats().requests_self, 1u);
  EXPECT_EQ(tracker_.stats().responses_unmatched, 0u);
}

}  // namespace
}  // namespace isotrace::correlate

namespace isotrace::correlate {
namespace {

// A gRPC server writes its SETTINGS before it reads the client's preface, and the probe
// reports no accept: the first record (egress SETTINGS) makes the process the server.
TEST_F(TrackerH2Test, ServerSettingsBeforeThePreface) {
  Wire w;
  int32_t a = w.Request(Grpc("/s.S/M"), kMsg);
  w.Pump();
  Answer(w, a);
  w.Pump();
  const End srv{100, 101, 5, 0xa1, 50051, 40000};
  size_t first_server = 0;
  while (w.segments[first_server].from_client) first_server++;
  Data(srv, false, w.segments[first_server].bytes, 5);
  uint64_t t = 10;
  for (size_t i = 0; i < w.segments.size(); i++)
    if (i != first_server) Data(srv, w.segments[i].from_client, w.segments[i].bytes, t++);
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].kind, SpanKind::kServer);
  EXPECT_EQ(spans_[0].rpc->method, "M");
}

// A large upload read in pieces, one read's record lost (a jump in the byte position):
// the lost bytes lie inside a DATA frame, so the frame boundaries are still proven.
TEST_F(TrackerH2Test, LostRecordInsideDataIsSkipped) {
  Wire w;
  int32_t a = w.Request(Grpc("/s.S/Upload"), std::string(40000, 'u'));
  w.Pump();
  Answer(w, a);
  w.Pump();
  const End srv{100, 101, 5, 0xa1, 50051, 40000};
  uint64_t t = 10;
  int lost = 0;
  for (const auto& s : w.segments) {
    if (s.from_client && s.bytes.size() > 1000 && uint8_t(s.bytes[3]) == 0) {
      std::string_view b = s.bytes;
      Data(srv, true, b.substr(0, 100), t++);
      Advance(srv, true, b.size() - 400);  // this read's record never arrived
      lost++;
      Data(srv, true, b.substr(b.size() - 300), t++);
      continue;
    }
    Data(srv, s.from_client, s.bytes, t++);
  }
  ASSERT_GE(lost, 2);
  ASSERT_EQ(spans_.size(), 1u);
  EXPECT_EQ(spans_[0].rpc->grpc_status_code, 0);
  EXPECT_EQ(tracker_.stats().stream_gaps, uint64_t(lost));
  EXPECT_EQ(tracker_.stats().connections_http2_undecodable, 0u);
}

// A lost record that held frame headers: undecodable, counted, no span.
TEST_F(TrackerH2Test, LostRecordOverFramesIsUndecodable) {
  Wire w;
  int32_t a = w.Request(Grpc("/s.S/One"), kMsg);
  w.Pump();
  Answer(w, a);
  w.Pump();
  const End srv{100, 101, 5, 0xa1, 50051, 40000};
  uint64_t t = 10;
  bool dropped = false;
  for (const auto& s : w.segments) {
    if (!dropped && s.from_client && uint8_t(s.bytes[3]) == 1) {
      Advance(srv, true, s.bytes.size());  // the request HEADERS' record was lost
      dropped = true;
      continue;
    }
    Data(srv, s.from_client, s.bytes, t++);
  }
  EXPECT_TRUE(spans_.empty());
  EXPECT_EQ(tracker_.stats().connections_http2_undecodable, 1u);
}

}  // namespace
}  // namespace isotrace::correlate

namespace isotrace::correlate {
namespace {

// Both ends of an upgraded connection on this node, the server's events first: its
// stream 1 ends before the caller has read the 101 (still an HTTP/1 request there), and
// must still claim it.
TEST_F(TrackerH2Test, UpgradedStreamOneLinksToTheCallerNotYetUpgraded) {
  auto u = MakeUpgrade();
  const End cli{200, 201, 9, 0xc1, 40000, 80};
  const End srv{100, 101, 5, 0xa1, 80, 40000};
  Data(cli, false, u->req, 1);
  Data(srv, true, u->req, 2);
  Data(srv, false, u->first_server, 3);
  uint64_t t = 4;
  for (size_t i = 0; i < u->w.segments.size(); i++)
    if (i != u->first) Data(srv, u->w.segments[i].from_client, u->w.segments[i].bytes, t++);
  ASSERT_NE(ByPath("/up", SpanKind::kServer), nullptr);  // ended before the client read a byte
  Data(cli, true, u->first_server, t++);
  for (size_t i = 0; i < u->w.segments.size(); i++)
    if (i != u->first) Data(cli, !u->w.segments[i].from_client, u->w.segments[i].bytes, t++);
  const Span* s = ByPath("/up", SpanKind::kServer);
  const Span* c = ByPath("/up", SpanKind::kClient);
  ASSERT_TRUE(s && c);
  EXPECT_EQ(s->trace_id, c->trace_id);
  EXPECT_EQ(s->parent_span_id, c->span_id);
  EXPECT_EQ(c->protocol_version, "2");
  EXPECT_EQ(c->status_code, 200);
  // /two was read and answered by the server here before the client's write of it
  // came in (its record made at the write's return, after a preemption): the server's
  // span waited for it and joined it.
  const Span* s2 = ByPath("/two", SpanKind::kServer);
  const Span* c2 = ByPath("/two", SpanKind::kClient);
  ASSERT_TRUE(s2 && c2);
  EXPECT_EQ(s2->parent_span_id, c2->span_id);
  EXPECT_EQ(tracker_.stats().links_peer, 2u);
  EXPECT_GE(tracker_.stats().links_peer_held, 1u);
  EXPECT_EQ(tracker_.stats().links_peer_held_expired, 0u);
}

}  // namespace
}  // namespace isotrace::correlate
