// HTTP/2 decoding on byte streams made by libnghttp2's own client and server sessions
// (tests/unit/http2_wire.h): every case asserts the fields, timestamps and failure
// accounting the connection tracker relies on.

#include "daemon/correlate/http2.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "tests/unit/http2_wire.h"

namespace isotrace::correlate {
namespace {

using testing_h2::Segment;
using testing_h2::Wire;
using testing_h2::WireOptions;
using End = Http2Exchange::End;
using Side = Http2Connection::Side;

Side SideOf(const Segment& s) { return s.from_client ? Side::kClient : Side::kServer; }

// Feeds segments [from, to) whole, segment i stamped (i + 1) * 1000.
void FeedAll(Http2Connection& c, const std::vector<Segment>& segs, std::vector<Http2Event>* out,
             size_t from = 0, size_t to = SIZE_MAX) {
  for (size_t i = from; i < std::min(to, segs.size()); i++)
    c.Feed(SideOf(segs[i]), segs[i].bytes, segs[i].bytes.size(), (i + 1) * 1000, out);
}

// The ended exchanges, each joined with its request from the kRequest event before it
// (a kDone event carries the response side only: Http2Event).
std::vector<Http2Exchange> Done(const std::vector<Http2Event>& ev) {
  std::vector<Http2Exchange> d;
  std::map<uint32_t, const Http2Exchange*> requests;
  for (const auto& e : ev) {
    if (e.kind == Http2Event::Kind::kRequest) {
      requests[e.exchange.stream_id] = &e.exchange;
      continue;
    }
    Http2Exchange x = e.exchange;
    if (auto it = requests.find(x.stream_id); it != requests.end()) {
      const Http2Exchange& r = *it->second;
      EXPECT_TRUE(x.method.empty() && x.path.empty() && x.authority.empty() && x.user_agent.empty())
          << "kDone repeats its request's strings";
      EXPECT_EQ(x.grpc, r.grpc);
      EXPECT_EQ(x.request_first_ts_ns, r.request_first_ts_ns);
      x.method = r.method;
      x.scheme = r.scheme;
      x.authority = r.authority;
      x.path = r.path;
      x.content_type = r.content_type;
      x.traceparent = r.traceparent;
      x.tracestate = r.tracestate;
      x.user_agent = r.user_agent;
    }
    d.push_back(std::move(x));
  }
  return d;
}

// A recorded connection decoded whole.
struct Decoded {
  std::unique_ptr<Http2Connection> conn;
  std::vector<Http2Event> events;
  std::vector<Http2Exchange> done;
};
Decoded Decode(const std::vector<Segment>& segs, const Http2Limits& limits = {}) {
  Decoded d{std::make_unique<Http2Connection>(limits), {}, {}};
  FeedAll(*d.conn, segs, &d.events);
  d.done = Done(d.events);
  return d;
}

// Index of the first segment from the given side at or after `from` whose bytes contain
// a frame of `type` (segments are single frames, or the preface plus SETTINGS).
size_t FindFrame(const std::vector<Segment>& segs, bool from_client, uint8_t type, size_t from = 0) {
  for (size_t i = from; i < segs.size(); i++) {
    if (segs[i].from_client != from_client) continue;
    std::string_view b = segs[i].bytes;
    if (b.substr(0, kHttp2Preface.size()) == kHttp2Preface) b.remove_prefix(kHttp2Preface.size());
    if (b.size() >= 9 && uint8_t(b[3]) == type) return i;
  }
  return SIZE_MAX;
}

const Wire::Headers kGet = {{":method", "GET"}, {":scheme", "http"}, {":authority", "example.com:8080"},
                            {":path", "/index.html?x=1"}, {"user-agent", "test"}};

Wire::Headers GrpcRequest(const std::string& path) {
  return {{":method", "POST"},
          {":scheme", "http"},
          {":authority", "localhost:50051"},
          {":path", path},
          {"content-type", "application/grpc"},
          {"te", "trailers"},
          {"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}};
}

// --- plain exchanges --------------------------------------------------------------

TEST(Http2Test, GetWithBodyPriorKnowledge) {
  Wire w;
  int32_t id = w.Request(kGet);
  w.Pump();
  w.Respond(id, {{":status", "200"}, {"content-type", "text/html"}}, std::string(3000, 'x'));
  w.Pump();

  auto [conn, ev, done] = Decode(w.segments);
  Http2Connection& c = *conn;
  ASSERT_FALSE(c.failed()) << c.failure_detail();
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].kind, Http2Event::Kind::kRequest);
  EXPECT_EQ(ev[0].exchange.end, End::kOpen);
  EXPECT_EQ(ev[0].exchange.stream_id, 1u);
  EXPECT_EQ(ev[0].exchange.method, "GET");
  EXPECT_EQ(ev[0].exchange.scheme, "http");
  EXPECT_EQ(ev[0].exchange.authority, "example.com:8080");
  EXPECT_EQ(ev[0].exchange.path, "/index.html?x=1");
  EXPECT_EQ(ev[0].exchange.user_agent, "test");
  EXPECT_EQ(ev[0].exchange.status, 0);
  // kDone: the response side; the request's strings went out with kRequest.
  const Http2Exchange& x = ev[1].exchange;
  EXPECT_EQ(ev[1].kind, Http2Event::Kind::kDone);
  EXPECT_EQ(x.stream_id, 1u);
  EXPECT_TRUE(x.method.empty());
  EXPECT_TRUE(x.path.empty());
  EXPECT_EQ(done[0].path, "/index.html?x=1");  // joined by Done()
  EXPECT_EQ(x.status, 200);
  EXPECT_FALSE(x.grpc);
  EXPECT_EQ(x.grpc_status, -1);
  EXPECT_TRUE(x.request_ended);
  EXPECT_EQ(x.end, End::kComplete);
  // Timestamps: the request HEADERS' segment; the response's HEADERS and last DATA.
  const size_t req = FindFrame(w.segments, true, 1);
  const size_t resp = FindFrame(w.segments, false, 1);
  size_t last_data = resp;
  for (size_t i = FindFrame(w.segments, false, 0); i != SIZE_MAX; i = FindFrame(w.segments, false, 0, i + 1))
    last_data = i;
  EXPECT_EQ(x.request_first_ts_ns, (req + 1) * 1000);
  EXPECT_EQ(x.request_last_ts_ns, (req + 1) * 1000);
  EXPECT_EQ(x.response_first_ts_ns, (resp + 1) * 1000);
  EXPECT_EQ(x.response_last_ts_ns, (last_data + 1) * 1000);
  EXPECT_GT(x.response_bytes, 3000u);
  EXPECT_EQ(c.streams_seen(), 1u);
  EXPECT_EQ(c.streams_dropped(), 0u);
  EXPECT_EQ(c.open_streams(), 0u);
}

TEST(Http2Test, GrpcUnaryOkWithTrailers) {
  Wire w;
  int32_t id = w.Request(GrpcRequest("/helloworld.Greeter/SayHello"), std::string("\0\0\0\0\x05hello", 10));
  w.Pump();
  w.Respond(id, {{":status", "200"}, {"content-type", "application/grpc"}}, std::string("\0\0\0\0\x02hi", 7),
            {{"grpc-status", "0"}, {"grpc-message", ""}});
  w.Pump();
  auto [conn, ev, done] = Decode(w.segments);
  (void)conn;
  ASSERT_EQ(done.size(), 1u);
  const Http2Exchange& x = done[0];
  EXPECT_TRUE(x.grpc);
  EXPECT_EQ(x.RpcService(), "helloworld.Greeter");
  EXPECT_EQ(x.RpcMethod(), "SayHello");
  EXPECT_EQ(x.status, 200);
  EXPECT_EQ(x.grpc_status, 0);
  EXPECT_EQ(x.traceparent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  EXPECT_EQ(x.content_type, "application/grpc");
  // The response ends with the trailers' HEADERS, after the DATA.
  const size_t trailers = FindFrame(w.segments, false, 1, FindFrame(w.segments, false, 0));
  EXPECT_EQ(x.response_last_ts_ns, (trailers + 1) * 1000);
  // The request ended with its DATA frame.
  EXPECT_EQ(x.request_last_ts_ns, (FindFrame(w.segments, true, 0) + 1) * 1000);
}

TEST(Http2Test, GrpcTrailersOnlyError) {
  Wire w;
  int32_t id = w.Request(GrpcRequest("/pkg.v1.Store/Get"), std::string(5, '\0'));
  w.Pump();
  w.Respond(id, {{":status", "200"}, {"content-type", "application/grpc"}, {"grpc-status", "5"},
                 {"grpc-message", "not found"}});
  w.Pump();
  auto [conn, ev, done] = Decode(w.segments);
  (void)conn;
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].status, 200);
  EXPECT_EQ(done[0].grpc_status, 5);
  EXPECT_EQ(done[0].grpc_message, "not found");
  EXPECT_EQ(done[0].RpcService(), "pkg.v1.Store");
  EXPECT_EQ(done[0].RpcMethod(), "Get");
}

TEST(Http2Test, RpcNamesOnlyForGrpcPaths) {
  Http2Exchange x;
  x.grpc = true;
  for (const char* bad : {"/", "/a", "//m", "/s/", "/a/b/c", "x/y"}) {
    x.path = bad;
    EXPECT_EQ(x.RpcService(), "") << bad;
    EXPECT_EQ(x.RpcMethod(), "") << bad;
  }
  x.path = "/s/m";
  EXPECT_EQ(x.RpcService(), "s");
  x.grpc = false;
  EXPECT_EQ(x.RpcService(), "");
}

TEST(Http2Test, MultiplexedStreamsAnsweredOutOfOrder) {
  Wire w;
  std::vector<int32_t> ids;
  for (int i = 0; i < 3; i++) {
    auto h = kGet;
    h[3].second = "/r" + std::to_string(i);
    ids.push_back(w.Request(h));
  }
  w.Pump();
  for (int i = 2; i >= 0; i--) w.Respond(ids[i], {{":status", std::to_string(200 + i)}}, std::string(100 * (i + 1), 'b'));
  w.Pump();
  auto [conn, ev, done] = Decode(w.segments);
  (void)conn;
  ASSERT_EQ(done.size(), 3u);
  for (const auto& x : done) {
    int i = (x.stream_id - 1) / 2;
    EXPECT_EQ(x.path, "/r" + std::to_string(i));
    EXPECT_EQ(x.status, 200 + i);
  }
  EXPECT_EQ(done[0].stream_id, 5u);  // answered first
}

TEST(Http2Test, SegmentationDoesNotMatter) {
  Wire w;
  int32_t a = w.Request(GrpcRequest("/s.S/A"), std::string(40, 'q'));
  int32_t b = w.Request(kGet);
  w.Pump();
  w.Respond(b, {{":status", "404"}});
  w.Respond(a, {{":status", "200"}, {"content-type", "application/grpc"}}, "zz", {{"grpc-status", "0"}});
  w.Pump();
  std::string client, server;
  for (const auto& s : w.segments) (s.from_client ? client : server) += s.bytes;

  auto run = [&](uint32_t seed) {
    Http2Connection c;
    std::vector<Http2Event> ev;
    std::mt19937 rng(seed);
    // Interleave by the original order, each segment cut into random pieces.
    uint64_t ts = 1;
    for (const auto& s : w.segments) {
      size_t pos = 0;
      while (pos < s.bytes.size()) {
        size_t n = seed == 0 ? 1 : std::min<size_t>(s.bytes.size() - pos, 1 + rng() % 13);
        c.Feed(SideOf(s), std::string_view(s.bytes).substr(pos, n), n, ts++, &ev);
        pos += n;
      }
    }
    EXPECT_FALSE(c.failed()) << c.failure_detail();
    auto done = Done(ev);
    std::vector<std::string> got;
    for (const auto& x : done)
      got.push_back(x.path + " " + std::to_string(x.status) + " " + std::to_string(x.grpc_status) + " " +
                    std::to_string(x.request_bytes) + " " + std::to_string(x.response_bytes));
    return got;
  };
  auto ref = run(0);
  ASSERT_EQ(ref.size(), 2u);
  EXPECT_EQ(ref[0].rfind("/index.html?x=1 404 -1 ", 0), 0u) << ref[0];
  EXPECT_EQ(ref[1].rfind("/s.S/A 200 0 ", 0), 0u) << ref[1];
  for (uint32_t seed = 1; seed < 20; seed++) EXPECT_EQ(run(seed), ref) << seed;
}

// --- frame features ----------------------------------------------------------------

TEST(Http2Test, ContinuationPaddingPriorityAndHugeHeadersBounded) {
  WireOptions o;
  o.pad_to = 64;
  Wire w(o);
  auto h = kGet;
  h[3].second = "/" + std::string(40000, 'p');  // > 16384: HEADERS + CONTINUATION
  h.push_back({"x-filler", std::string(20000, 'f')});
  nghttp2_priority_spec pri;
  nghttp2_priority_spec_init(&pri, 0, 200, 0);
  int32_t id = w.Request(h, "", &pri);
  w.Pump();
  nghttp2_submit_priority(w.client(), NGHTTP2_FLAG_NONE, id, &pri);  // a PRIORITY frame too
  w.Respond(id, {{":status", "200"}}, "body");
  w.Pump();
  ASSERT_NE(FindFrame(w.segments, true, 9), SIZE_MAX) << "no CONTINUATION produced";
  ASSERT_NE(FindFrame(w.segments, true, 2), SIZE_MAX) << "no PRIORITY frame produced";

  Http2Limits limits;
  limits.max_value_bytes = 100;
  Http2Connection c(limits);
  std::vector<Http2Event> ev;
  FeedAll(c, w.segments, &ev);
  ASSERT_FALSE(c.failed()) << c.failure_detail();
  auto done = Done(ev);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].path.size(), 100u);  // cut, not grown
  EXPECT_EQ(done[0].path.substr(0, 3), "/pp");
  EXPECT_EQ(done[0].status, 200);
  // The request's HEADERS carried the PRIORITY flag, the response's HEADERS and DATA
  // padding (nghttp2 pads no header block that needs CONTINUATION).
  EXPECT_EQ(uint8_t(w.segments[FindFrame(w.segments, true, 1)].bytes[4]) & 0x20, 0x20);
  EXPECT_EQ(uint8_t(w.segments[FindFrame(w.segments, false, 1)].bytes[4]) & 0x08, 0x08);
  EXPECT_EQ(uint8_t(w.segments[FindFrame(w.segments, false, 0)].bytes[4]) & 0x08, 0x08);

  // Above the header block limit: the connection stops, counted, no span.
  limits.max_header_block_bytes = 16384;
  Http2Connection small(limits);
  ev.clear();
  FeedAll(small, w.segments, &ev);
  EXPECT_EQ(small.failure(), Http2Connection::Failure::kLimit);
  EXPECT_TRUE(ev.empty());
}

TEST(Http2Test, InterimResponseThenFinal) {
  Wire w;
  auto h = kGet;
  h[0].second = "POST";
  h.push_back({"expect", "100-continue"});
  int32_t id = w.Request(h, "payload");
  w.Pump();
  nghttp2_nv cont{(uint8_t*)":status", (uint8_t*)"100", 7, 3, NGHTTP2_NV_FLAG_NONE};
  nghttp2_submit_headers(w.server(), NGHTTP2_FLAG_NONE, id, nullptr, &cont, 1, nullptr);
  w.Respond(id, {{":status", "201"}});
  w.Pump();
  auto [conn, ev, done] = Decode(w.segments);
  (void)conn;
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].status, 201);
  EXPECT_EQ(done[0].method, "POST");
}

TEST(Http2Test, ClientCancelIsReset) {
  Wire w;
  int32_t id = w.Request(GrpcRequest("/s.S/Slow"), "x");
  w.Pump();
  w.Respond(id, {{":status", "200"}, {"content-type", "application/grpc"}}, "", {});
  // Headers only so far: submit them without END_STREAM by sending a body later.
  w.Pump();
  nghttp2_submit_rst_stream(w.client(), NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  w.Pump();
  auto [conn, ev, done] = Decode(w.segments);
  (void)conn;
  ASSERT_EQ(done.size(), 1u);
  // The response above ended with END_STREAM on its HEADERS (no body, no trailers), so
  // it completed before the reset; a reset stream needs a response still open.
  EXPECT_EQ(done[0].end, End::kComplete);

  Wire w2;
  id = w2.Request(GrpcRequest("/s.S/Slow"), "x");
  w2.Pump();
  nghttp2_submit_rst_stream(w2.client(), NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  w2.Pump();
  Http2Connection c2;
  ev.clear();
  FeedAll(c2, w2.segments, &ev);
  done = Done(ev);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].end, End::kReset);
  EXPECT_TRUE(done[0].reset_by_client);
  EXPECT_EQ(done[0].rst_error_code, uint32_t{NGHTTP2_CANCEL});
  EXPECT_EQ(done[0].status, 0);
}

TEST(Http2Test, GoawayRefusesLaterStreamsAndCloseEndsTheRest) {
  Wire w;
  int32_t a = w.Request(kGet);
  int32_t b = w.Request(kGet);
  w.Pump();
  nghttp2_submit_goaway(w.server(), NGHTTP2_FLAG_NONE, a, NGHTTP2_NO_ERROR, nullptr, 0);
  w.Pump();
  auto [conn, ev, done] = Decode(w.segments);
  Http2Connection& c = *conn;
  EXPECT_TRUE(Done(ev).empty());
  EXPECT_EQ(c.streams_dropped(), 1u);  // b was never processed
  EXPECT_EQ(c.open_streams(), 1u);
  c.Close(&ev);
  done = Done(ev);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].stream_id, uint32_t(a));
  EXPECT_EQ(done[0].end, End::kClosed);
  (void)b;
}

// --- SETTINGS reach the inflaters ----------------------------------------------------

// The client allows the server's encoder a 64 KiB table and the server uses it: entries
// beyond 4096 bytes are referenced later. An inflater left at the default 4096 would
// evict them and fail (or decode wrong values); the ACK must carry the size over.
TEST(Http2Test, HeaderTableSizeIncreaseReachesTheInflater) {
  WireOptions o;
  o.client_table_size = 65536;
  o.server_deflate_max = 65536;
  Wire w(o);
  std::vector<int32_t> ids;
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < 20; i++) {
      auto h = kGet;
      h[3].second = "/r" + std::to_string(i);
      int32_t id = w.Request(h);
      w.Pump();
      w.Respond(id, {{":status", "200"}, {"x-v" + std::to_string(i), std::string(500, 'a' + i)}});
      w.Pump();
    }
  }
  auto [conn, ev, done] = Decode(w.segments);
  Http2Connection& c = *conn;
  ASSERT_FALSE(c.failed()) << c.failure_detail();
  EXPECT_EQ(Done(ev).size(), 40u);
  // Control: above the decoder's own limit, the connection is refused, not mis-decoded.
  Http2Limits small;
  small.max_header_table_size = 4096;
  Http2Connection refused(small);
  ev.clear();
  FeedAll(refused, w.segments, &ev);
  EXPECT_EQ(refused.failure(), Http2Connection::Failure::kLimit);
  EXPECT_TRUE(Done(ev).empty());
}

TEST(Http2Test, HeaderTableSizeZero) {
  WireOptions o;
  o.server_table_size = 0;  // the client's encoder may not index anything
  Wire w(o);
  for (int i = 0; i < 3; i++) {
    int32_t id = w.Request(GrpcRequest("/s.S/M"), "x");
    w.Pump();
    w.Respond(id, {{":status", "200"}, {"content-type", "application/grpc"}}, "y", {{"grpc-status", "0"}});
    w.Pump();
  }
  auto [conn, ev, done] = Decode(w.segments);
  Http2Connection& c = *conn;
  ASSERT_FALSE(c.failed()) << c.failure_detail();
  ASSERT_EQ(done.size(), 3u);
  for (const auto& x : done) EXPECT_EQ(x.RpcMethod(), "M");
}

// --- what cannot be decoded --------------------------------------------------------

// A connection that carried one GET answered 200.
void OneGet(Wire& w) {
  int32_t id = w.Request(kGet);
  w.Pump();
  w.Respond(id, {{":status", "200"}});
  w.Pump();
}

TEST(Http2Test, MissedPrefaceIsUndecodableAndSilent) {
  Wire w;
  OneGet(w);
  int32_t id;
  size_t first = w.segments.size();
  for (int i = 0; i < 3; i++) {
    id = w.Request(GrpcRequest("/s.S/M"), "x");
    w.Pump();
    w.Respond(id, {{":status", "200"}, {"content-type", "application/grpc"}}, "y", {{"grpc-status", "0"}});
    w.Pump();
  }
  // The daemon started here: a later request's frames come first.
  const auto& s = w.segments[FindFrame(w.segments, true, 1, first)];
  EXPECT_TRUE(Http2Connection::LooksLikeFrames(s.bytes));
  EXPECT_FALSE(Http2Connection::LooksLikePreface(s.bytes));
  EXPECT_FALSE(Http2Connection::LooksLikeFrames("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_TRUE(Http2Connection::LooksLikePreface(w.segments[0].bytes));
  Http2Connection c;
  std::vector<Http2Event> ev;
  FeedAll(c, w.segments, &ev, first);
  EXPECT_EQ(c.failure(), Http2Connection::Failure::kMissedStart);
  EXPECT_TRUE(ev.empty());
  c.Close(&ev);
  EXPECT_TRUE(ev.empty());
}

TEST(Http2Test, MissedServerStartIsUndecodable) {
  Wire w;
  OneGet(w);
  Http2Connection c;
  std::vector<Http2Event> ev;
  bool skipped = false;
  for (size_t i = 0; i < w.segments.size(); i++) {
    const auto& s = w.segments[i];
    if (!s.from_client && !skipped) {  // the server's SETTINGS never reached us
      skipped = true;
      continue;
    }
    c.Feed(SideOf(s), s.bytes, s.bytes.size(), i, &ev);
  }
  EXPECT_TRUE(c.failed());
  EXPECT_TRUE(Done(ev).empty());
}

TEST(Http2Test, GapInsideDataIsSkippedAndCounted) {
  Wire w;
  int32_t id = w.Request(GrpcRequest("/s.S/Upload"), std::string(50000, 'u'));
  w.Pump();
  w.Respond(id, {{":status", "200"}, {"content-type", "application/grpc"}}, std::string(50000, 'd'),
            {{"grpc-status", "0"}});
  w.Pump();
  Http2Connection c;
  std::vector<Http2Event> ev;
  uint64_t skipped = 0;
  for (size_t i = 0; i < w.segments.size(); i++) {
    const auto& s = w.segments[i];
    const bool data = s.bytes.size() > 200 && uint8_t(s.bytes[3]) == 0;
    if (data && (i % 2)) {
      // Only 64 bytes captured of a 16 KiB DATA frame: the rest is a counted tail.
      c.Feed(SideOf(s), std::string_view(s.bytes).substr(0, 64), s.bytes.size(), (i + 1) * 1000, &ev);
      skipped++;
    } else if (data) {
      // A lost event in the middle of a DATA frame: a jump in the byte position.
      c.Feed(SideOf(s), std::string_view(s.bytes).substr(0, 100), 100, (i + 1) * 1000, &ev);
      c.Gap(SideOf(s), s.bytes.size() - 100, (i + 1) * 1000, &ev);
      skipped++;
    } else {
      c.Feed(SideOf(s), s.bytes, s.bytes.size(), (i + 1) * 1000, &ev);
    }
  }
  EXPECT_GT(skipped, 4u);
  ASSERT_FALSE(c.failed()) << c.failure_detail();
  auto done = Done(ev);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].grpc_status, 0);
  EXPECT_GT(done[0].request_bytes, 50000u);
  EXPECT_GT(done[0].response_bytes, 50000u);
}

TEST(Http2Test, GapOverHeadersIsUndecodableAndDropsStreamsInFlight) {
  Wire w;
  int32_t a = w.Request(kGet);
  w.Pump();
  int32_t b = w.Request(GrpcRequest("/s.S/M"), "x");
  w.Pump();
  w.Respond(a, {{":status", "200"}});
  w.Respond(b, {{":status", "200"}, {"content-type", "application/grpc"}}, "y", {{"grpc-status", "0"}});
  w.Pump();
  const size_t lost = FindFrame(w.segments, true, 1, FindFrame(w.segments, true, 1) + 1);  // b's HEADERS
  Http2Connection c;
  std::vector<Http2Event> ev;
  for (size_t i = 0; i < w.segments.size(); i++) {
    const auto& s = w.segments[i];
    if (i == lost)
      c.Gap(SideOf(s), s.bytes.size(), i, &ev);
    else
      c.Feed(SideOf(s), s.bytes, s.bytes.size(), i, &ev);
  }
  EXPECT_EQ(c.failure(), Http2Connection::Failure::kGap);
  EXPECT_TRUE(Done(ev).empty());  // a's response came after the gap: not guessed
  EXPECT_EQ(c.streams_dropped(), 1u);
  c.Close(&ev);
  EXPECT_TRUE(Done(ev).empty());
}

TEST(Http2Test, UncapturedTailOverAFrameHeaderIsUndecodable) {
  Wire w;
  int32_t id = w.Request(kGet);
  w.Pump();
  w.Respond(id, {{":status", "200"}}, std::string(100, 'x'));
  w.Pump();
  // Coalesce the server's frames into one write of which 12 bytes were captured.
  std::string server;
  Http2Connection c;
  std::vector<Http2Event> ev;
  for (const auto& s : w.segments)
    if (s.from_client) c.Feed(Side::kClient, s.bytes, s.bytes.size(), 1, &ev);
    else server += s.bytes;
  c.Feed(Side::kServer, std::string_view(server).substr(0, 12), server.size(), 2, &ev);
  EXPECT_EQ(c.failure(), Http2Connection::Failure::kGap);
  EXPECT_TRUE(Done(ev).empty());
}

TEST(Http2Test, CorruptHeaderBlockIsHpackFailure) {
  Wire w;
  w.Request(kGet);
  w.Pump();
  auto [conn, ev, done] = Decode(w.segments);
  Http2Connection& c = *conn;
  ASSERT_FALSE(c.failed());
  // HEADERS on stream 3 whose block indexes entry 0 (invalid in HPACK).
  const char frame[] = {0, 0, 1, 1, 0x5, 0, 0, 0, 3, char(0x80)};
  c.Feed(Side::kClient, std::string_view(frame, sizeof(frame)), sizeof(frame), 9, &ev);
  EXPECT_EQ(c.failure(), Http2Connection::Failure::kHpack);
  EXPECT_EQ(c.streams_dropped(), 1u);  // stream 1 was in flight
}

TEST(Http2Test, NotHttp2) {
  Http2Connection c;
  std::vector<Http2Event> ev;
  c.Feed(Side::kClient, "GET / HTTP/1.1\r\n\r\n", 18, 1, &ev);
  EXPECT_EQ(c.failure(), Http2Connection::Failure::kMissedStart);
  // Framing that breaks RFC 9113 right after the preface.
  Http2Connection d;
  std::string bad(kHttp2Preface);
  bad += std::string("\0\0\0\x01\x04\0\0\0\x01", 9);  // HEADERS first: not SETTINGS
  d.Feed(Side::kClient, bad, bad.size(), 1, &ev);
  EXPECT_EQ(d.failure(), Http2Connection::Failure::kProtocol);
  EXPECT_TRUE(ev.empty());
}

// --- h2c upgrade -------------------------------------------------------------------

TEST(Http2Test, UpgradeFromHttp1) {
  // What curl sends: the HTTP/1.1 request with HTTP2-Settings, answered 101; the server
  // then answers stream 1 over HTTP/2. The client session is told about the upgrade.
  Wire w;
  uint8_t settings[64];
  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, 8192}, {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};
  ssize_t n = nghttp2_pack_settings_payload(settings, sizeof(settings), iv, 2);
  ASSERT_GT(n, 0);
  ASSERT_EQ(nghttp2_session_upgrade2(w.client(), settings, size_t(n), 0, nullptr), 0);
  ASSERT_EQ(nghttp2_session_upgrade2(w.server(), settings, size_t(n), 0, nullptr), 0);
  w.Respond(1, {{":status", "200"}, {"content-type", "text/plain"}}, "upgraded");
  w.Pump();
  std::string b64 = absl::WebSafeBase64Escape(absl::string_view(reinterpret_cast<char*>(settings), size_t(n)));

  Http2Exchange req;
  req.method = "GET";
  req.path = "/up";
  req.authority = "h:1";
  req.request_first_ts_ns = 5;
  req.request_last_ts_ns = 5;
  Http2Connection c;
  c.StartAfterUpgrade(req, b64);
  std::vector<Http2Event> ev;
  FeedAll(c, w.segments, &ev);
  ASSERT_FALSE(c.failed()) << c.failure_detail();
  auto done = Done(ev);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].stream_id, 1u);
  EXPECT_EQ(done[0].path, "/up");
  EXPECT_EQ(done[0].status, 200);
  EXPECT_EQ(done[0].request_first_ts_ns, 5u);
  EXPECT_GT(done[0].response_last_ts_ns, 5u);

  Http2Connection bad;
  bad.StartAfterUpgrade(req, "!!!");
  EXPECT_EQ(bad.failure(), Http2Connection::Failure::kProtocol);
}

TEST(Http2Test, TooManyStreamsAreCountedNotTracked) {
  Wire w;
  for (int i = 0; i < 10; i++) w.Request(kGet);
  w.Pump();
  Http2Limits limits;
  limits.max_streams = 4;
  Http2Connection c(limits);
  std::vector<Http2Event> ev;
  FeedAll(c, w.segments, &ev);
  EXPECT_FALSE(c.failed());
  EXPECT_EQ(c.open_streams(), 4u);
  EXPECT_EQ(c.streams_dropped(), 6u);
  EXPECT_EQ(c.streams_seen(), 10u);
}

TEST(Http2Test, HpackPoolKeepsContentsAndBoundsIdleMemory) {
  HpackPool pool;
  nghttp2_mem* mem = pool.mem();
  // A block is reused for the same class, and aligned like malloc's.
  void* a = mem->malloc(40, mem->mem_user_data);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 16, 0u);
  mem->free(a, mem->mem_user_data);
  EXPECT_EQ(pool.idle_blocks(), 1u);
  void* b = mem->malloc(30, mem->mem_user_data);
  EXPECT_EQ(b, a);
  EXPECT_EQ(pool.idle_blocks(), 0u);
  // Growing across classes and into a large (malloc'd) block keeps the bytes.
  std::memset(b, 'x', 30);
  void* c = mem->realloc(b, 200, mem->mem_user_data);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(std::string(static_cast<char*>(c), 30), std::string(30, 'x'));
  std::memset(c, 'y', 200);
  void* d = mem->realloc(c, 5000, mem->mem_user_data);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(std::string(static_cast<char*>(d), 200), std::string(200, 'y'));
  // Shrinking a large block back into a class keeps what fits.
  void* e = mem->realloc(d, 100, mem->mem_user_data);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(std::string(static_cast<char*>(e), 100), std::string(100, 'y'));
  // calloc zeroes a reused block; a product that overflows is refused.
  std::memset(e, 'z', 100);
  mem->free(e, mem->mem_user_data);
  auto* z = static_cast<uint8_t*>(mem->calloc(10, 10, mem->mem_user_data));
  ASSERT_NE(z, nullptr);
  EXPECT_EQ(std::count(z, z + 100, 0), 100);
  EXPECT_EQ(mem->calloc(SIZE_MAX / 2, 4, mem->mem_user_data), nullptr);
  EXPECT_EQ(mem->malloc(SIZE_MAX - 4, mem->mem_user_data), nullptr);
  mem->free(z, mem->mem_user_data);
  mem->free(nullptr, mem->mem_user_data);
  // Idle blocks are bounded per class whatever was freed.
  std::vector<void*> many;
  for (size_t i = 0; i < 3 * HpackPool::kMaxFreePerClass; i++) many.push_back(mem->malloc(8, mem->mem_user_data));
  for (void* p : many) mem->free(p, mem->mem_user_data);
  EXPECT_LE(pool.idle_blocks(), HpackPool::kClasses * HpackPool::kMaxFreePerClass);
  EXPECT_GE(pool.idle_blocks(), HpackPool::kMaxFreePerClass);
}

}  // namespace
}  // namespace isotrace::correlate
