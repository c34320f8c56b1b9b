// HTTP/1.x framing from (captured prefix, total length) segments: every case asserts the
// exact fields and timestamps the connection tracker relies on.

#include "daemon/correlate/http1.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace isotrace::correlate {
namespace {

using Framing = HttpMessage::Framing;

class Http1Test : public ::testing::Test {
 protected:
  // A segment whose every byte was captured.
  absl::Status Feed(std::string_view bytes, uint64_t ts) {
    return parser_.Feed(bytes, bytes.size(), ts, &out_);
  }
  // A segment of `total` bytes of which only `captured` were copied.
  absl::Status FeedPartial(std::string_view captured, uint64_t total, uint64_t ts) {
    return parser_.Feed(captured, total, ts, &out_);
  }

  Http1Parser parser_;
  std::vector<HttpMessage> out_;
};

constexpr std::string_view kGet =
    "GET /api/v1/items?id=7 HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "User-Agent: curl/7.88\r\n"
    "Accept: */*\r\n"
    "\r\n";

// --- requests -------------------------------------------------------------------

TEST_F(Http1Test, SimpleGetInOneSegment) {
  ASSERT_TRUE(Feed(kGet, 100).ok());
  ASSERT_EQ(out_.size(), 1u);
  const HttpMessage& m = out_[0];
  EXPECT_TRUE(m.is_request);
  EXPECT_EQ(m.method, "GET");
  EXPECT_EQ(m.target, "/api/v1/items?id=7");
  EXPECT_EQ(m.version, "1.1");
  EXPECT_EQ(m.status, 0);
  ASSERT_EQ(m.headers.size(), 3u);
  EXPECT_EQ(m.headers[0].name, "host");
  EXPECT_EQ(m.headers[0].value, "example.com");
  EXPECT_EQ(m.headers[2].name, "accept");
  EXPECT_EQ(m.framing, Framing::kNoBody);
  EXPECT_TRUE(m.keep_alive);
  EXPECT_FALSE(m.head_truncated);
  EXPECT_FALSE(m.aborted);
  EXPECT_EQ(m.first_ts_ns, 100u);
  EXPECT_EQ(m.last_ts_ns, 100u);
  EXPECT_EQ(m.wire_bytes, kGet.size());
  EXPECT_EQ(m.body_bytes, 0u);
  EXPECT_FALSE(parser_.mid_message());
}

TEST_F(Http1Test, HeaderLookupIsCaseInsensitiveAndValuesAreTrimmed) {
  ASSERT_TRUE(Feed("GET / HTTP/1.1\r\nX-Trace-ID:   abc def \t\r\nHOST: h\r\n\r\n", 1).ok());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].headers[0].name, "x-trace-id");
  EXPECT_EQ(out_[0].Header("X-TRACE-ID"), "abc def");
  EXPECT_EQ(out_[0].Header("host"), "h");
  EXPECT_FALSE(out_[0].Header("cookie").has_value());
}

TEST_F(Http1Test, HeadSplitByteByByte) {
  const std::string req = std::string(kGet);
  for (size_t i = 0; i + 1 < req.size(); ++i) {
    ASSERT_TRUE(Feed(req.substr(i, 1), 1000 + i).ok()) << "byte " << i;
    ASSERT_TRUE(out_.empty()) << "byte " << i;
    ASSERT_TRUE(parser_.mid_message());
  }
  ASSERT_TRUE(Feed(req.substr(req.size() - 1), 5000).ok());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].method, "GET");
  EXPECT_EQ(out_[0].target, "/api/v1/items?id=7");
  EXPECT_EQ(out_[0].headers.size(), 3u);
  EXPECT_EQ(out_[0].first_ts_ns, 1000u);
  EXPECT_EQ(out_[0].last_ts_ns, 5000u);
  EXPECT_EQ(out_[0].wire_bytes, req.size());
}

TEST_F(Http1Test, HeadSplitAtEveryPositionGivesTheSameMessage) {
  const std::string req = "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
  for (size_t cut = 1; cut < req.size(); ++cut) {
    Http1Parser parser;
    std::vector<HttpMessage> out;
    ASSERT_TRUE(parser.Feed(req.substr(0, cut), cut, 1, &out).ok()) << cut;
    ASSERT_TRUE(parser.Feed(req.substr(cut), req.size() - cut, 2, &out).ok()) << cut;
    ASSERT_EQ(out.size(), 1u) << cut;
    EXPECT_EQ(out[0].method, "POST");
    EXPECT_EQ(out[0].Header("content-length"), "5");
    EXPECT_EQ(out[0].body_bytes, 5u);
    EXPECT_EQ(out[0].first_ts_ns, 1u);
    EXPECT_EQ(out[0].last_ts_ns, 2u) << cut;
  }
}

TEST_F(Http1Test, ThreePipelinedRequestsInOneSegment) {
  const std::string seg =
      "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
      "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz"
      "DELETE /c HTTP/1.1\r\nHost: h\r\n\r\n";
  ASSERT_TRUE(Feed(seg, 42).ok());
  ASSERT_EQ(out_.size(), 3u);
  EXPECT_EQ(out_[0].method, "GET");
  EXPECT_EQ(out_[0].target, "/a");
  EXPECT_EQ(out_[1].method, "POST");
  EXPECT_EQ(out_[1].target, "/b");
  EXPECT_EQ(out_[1].framing, Framing::kContentLength);
  EXPECT_EQ(out_[1].body_bytes, 3u);
  EXPECT_EQ(out_[2].method, "DELETE");
  EXPECT_EQ(out_[2].target, "/c");
  uint64_t sum = 0;
  for (const auto& m : out_) {
    EXPECT_EQ(m.first_ts_ns, 42u);
    EXPECT_EQ(m.last_ts_ns, 42u);
    sum += m.wire_bytes;
  }
  EXPECT_EQ(sum, seg.size());
}

TEST_F(Http1Test, KeepAliveRequestResponseSequence) {
  Http1Parser responses;
  std::vector<HttpMessage> resp_out;
  for (int i = 0; i < 3; ++i) {
    const uint64_t t = 1000 * (i + 1);
    ASSERT_TRUE(Feed("GET /r" + std::to_string(i) + " HTTP/1.1\r\nHost: h\r\n\r\n", t).ok());
    ASSERT_EQ(out_.size(), static_cast<size_t>(i + 1));
    responses.ExpectResponseTo(out_.back().method);
    const std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    ASSERT_TRUE(responses.Feed(resp, resp.size(), t + 10, &resp_out).ok());
    ASSERT_EQ(resp_out.size(), static_cast<size_t>(i + 1));
    const HttpMessage& r = resp_out.back();
    EXPECT_FALSE(r.is_request);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.method, "GET");
    EXPECT_TRUE(r.keep_alive);
    EXPECT_EQ(r.first_ts_ns, t + 10);
    EXPECT_EQ(r.last_ts_ns, t + 10);
    EXPECT_EQ(out_.back().target, "/r" + std::to_string(i));
  }
}

TEST_F(Http1Test, LeadingEmptyLinesBeforeRequestAreSkipped) {
  ASSERT_TRUE(Feed("\r\n\r\nGET / HTTP/1.1\r\n\r\n", 3).ok());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].method, "GET");
  EXPECT_EQ(out_[0].wire_bytes, 18u);  // the skipped CRLFs belong to no message
}

// The tracker's setting: a few request headers stored, none of a response. The scanner
// then records only the lines its name filter wants; framing headers are still read,
// whatever their case, and the result is the same wherever the segments are cut.
TEST(Http1StoreOnlyTest, StoresOnlyListedRequestHeadersAndStillFramesResponses) {
  static constexpr std::string_view kKeep[] = {"host", "traceparent", "x-request-id"};
  Http1Limits limits;
  limits.store_only = kKeep;
  limits.store_response_headers = false;
  const std::string req =
      "POST /p HTTP/1.1\r\n"
      "User-Agent: u\r\n"
      "HoSt:  a.example:80 \r\n"
      "X_Odd.Name: y\r\n"
      "CONTENT-LENGTH: 5\r\n"
      "X-Request-Id: r1\r\n"
      "Traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
      "\r\nhello";
  const std::string resp =
      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nconnection: close\r\n"
      "Content-Length: 3\r\n\r\nabc";
  for (size_t cut = 1; cut <= req.size(); ++cut) {
    Http1Parser parser(limits);
    std::vector<HttpMessage> out;
    ASSERT_TRUE(parser.Feed(req.substr(0, cut), cut, 1, &out).ok()) << cut;
    if (cut < req.size()) {
      ASSERT_TRUE(parser.Feed(req.substr(cut), req.size() - cut, 2, &out).ok()) << cut;
    }
    ASSERT_EQ(out.size(), 1u) << cut;
    const HttpMessage& m = out[0];
    ASSERT_EQ(m.headers.size(), 3u) << cut;
    EXPECT_EQ(m.headers[0].name, "host");
    EXPECT_EQ(m.headers[0].value, "a.example:80");
    EXPECT_EQ(m.headers[1].name, "x-request-id");
    EXPECT_EQ(m.headers[1].value, "r1");
    EXPECT_EQ(m.headers[2].name, "traceparent");
    EXPECT_EQ(m.framing, HttpMessage::Framing::kContentLength) << cut;
    EXPECT_EQ(m.body_bytes, 5u) << cut;
  }
  Http1Parser parser(limits);
  std::vector<HttpMessage> out;
  ASSERT_TRUE(parser.Feed(resp, resp.size(), 1, &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].headers.empty());
  EXPECT_EQ(out[0].status, 200);
  EXPECT_EQ(out[0].body_bytes, 3u);
  EXPECT_FALSE(out[0].keep_alive);  // "connection: close" read without being stored
}

TEST_F(Http1Test, ValuesWithTabsAndHighBytesAreTakenWhole) {
  // The value scanner skips 16 and 8 bytes at a time; HTAB and bytes >= 0x80 must not
  // end a value, DEL and other control bytes must fail it, wherever they fall.
  for (size_t pad = 0; pad < 40; ++pad) {
    Http1Parser parser;
    std::vector<HttpMessage> out;
    const std::string value = std::string(pad + 1, 'v') + "\t\xc3\xa9" + std::string(pad % 17 + 1, 'w');
    const std::string req = "GET / HTTP/1.1\r\nX-V: " + value + "\r\n\r\n";
    ASSERT_TRUE(parser.Feed(req, req.size(), 1, &out).ok()) << pad;
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].Header("x-v"), value) << pad;
    for (char bad : {'\x7f', '\x01', '\0'}) {
      Http1Parser p2;
      std::vector<HttpMessage> o2;
      std::string b = req;
      b[req.find("X-V: ") + 6 + pad] = bad;
      EXPECT_FALSE(p2.Feed(b, b.size(), 1, &o2).ok()) << pad << " " << int(bad);
    }
  }
}

TEST_F(Http1Test, BareLfLineEndingsAreAccepted) {
  ASSERT_TRUE(Feed("GET /lf HTTP/1.0\nHost: x\n\n", 3).ok());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].target, "/lf");
  EXPECT_EQ(out_[0].version, "1.0");
  EXPECT_EQ(out_[0].Header("host"), "x");
  EXPECT_FALSE(out_[0].keep_alive);  // HTTP/1.0 without Connection: keep-alive
}

TEST_F(Http1Test, ObsFoldIsJoinedWithOneSpace) {
  ASSERT_TRUE(Feed("GET / HTTP/1.1\r\nX-Long: part one\r\n   part two\r\nHost: h\r\n\r\n", 1).ok());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].Header("x-long"), "part one part two");
  EXPECT_EQ(out_[0].Header("host"), "h");
}

TEST_F(Http1Test, ConnectionHeaderDecidesKeepAlive) {
  ASSERT_TRUE(Feed("GET /1 HTTP/1.1\r\nConnection: close\r\n\r\n"
                   "GET /2 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
                   "GET /3 HTTP/1.0\r\n\r\n"
                   "GET /4 HTTP/1.1\r\nConnection: Upgrade, keep-alive\r\n\r\n",
                   1)
                  .ok());
  ASSERT_EQ(out_.size(), 4u);
  EXPECT_FALSE(out_[0].keep_alive);
  EXPECT_TRUE(out_[1].keep_alive);
  EXPECT_FALSE(out_[2].keep_alive);
  EXPECT_TRUE(out_[3].keep_alive);
}

TEST_F(Http1Test, RequestBodyAcrossSegmentsAndFlushDoesNotCutIt) {
  // Expect: 100-continue: the body arrives only after the server's interim response;
  // the tracker flushes this side when that response starts, which must not end it.
  ASSERT_TRUE(
      Feed("PUT /up HTTP/1.1\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n", 1).ok());
  EXPECT_TRUE(out_.empty());
  EXPECT_TRUE(parser_.mid_message());
  parser_.Flush(&out_);
  EXPECT_TRUE(out_.empty());
  ASSERT_TRUE(Feed("01234", 5).ok());
  ASSERT_TRUE(Feed("56789", 9).ok());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].Header("expect"), "100-continue");
  EXPECT_EQ(out_[0].first_ts_ns, 1u);
  EXPECT_EQ(out_[0].last_ts_ns, 9u);
  EXPECT_EQ(out_[0].body_bytes, 10u);
}

TEST_F(Http1Test, HeadersBeyondTheLimitAreDroppedButFramingHeadersStillCount) {
  std::string req = "POST /many HTTP/1.1\r\n";
  for (int i = 0; i < 70; ++i) req += "X-H" + std::to_string(i) + ": v\r\n";
  req += "Content-Length: 4\r\n\r\nbody";
  ASSERT_TRUE(Feed(req, 7).ok());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].headers.size(), 64u);
  EXPECT_EQ(out_[0].headers.back().name, "x-h63");
  EXPECT_EQ(out_[0].framing, Framing::kContentLength);
  EXPECT_EQ(out_[0].body_bytes, 4u);
}

TEST_F(Http1Test, LongHeaderValueIsCut) {
  const std::string big(6000, 'c');
  ASSERT_TRUE(Feed("GET / HTTP/1.1\r\nCookie: " + big + "\r\n\r\n", 1).ok());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].Header("cookie")->size(), Http1Limits().max_header_value_bytes);
}

// --- responses ------------------------------------------------------------------

TEST_F(Http1Test, ResponseSplitAcrossManyWrites) {
  parser_.ExpectResponseTo("GET");
  ASSERT_TRUE(Feed("HTTP/1.1 200 OK\r\nContent-Le", 10).ok());
  ASSERT_TRUE(Feed("ngth: 12\r\n\r\nhello", 20).ok());
  ASSERT_TRUE(Feed(" ", 30).ok());
  EXPECT_TRUE(out_.empty());
  ASSERT_TRUE(Feed("world!", 40).ok());
  ASSERT_EQ(out_.size(), 1u);
  const HttpMessage& r = out_[0];
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.version, "1.1");
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.framing, Framing::kContentLength);
  EXPECT_EQ(r.first_ts_ns, 10u);
  EXPECT_EQ(r.last_ts_ns, 40u);
  EXPECT_EQ(r.body_bytes, 12u);
}

TEST_F(Http1Test, StatusLineWithoutReasonPhrase) {
  ASSERT_TRUE(Feed("HTTP/1.1 503\r\nContent-Length: 0\r\n\r\n", 1).ok());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].status, 503);
  EXPECT_EQ(out_[0].framing, Framing::kContentLength);
  EXPECT_EQ(out_[0].body_bytes, 0u);
}

TEST_F(Http1Test, ContentLengthBodyNotCaptured) {
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
  ASSERT_TRUE(FeedPartial(head, head.size() + 100000, 50).ok());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].body_bytes, 100000u);
  EXPECT_EQ(out_[0].wire_bytes, head.size() + 100000);
  EXPECT_EQ(out_[0].last_ts_ns, 50u);
  // The framer is still in sync: the next response parses.
  ASSERT_TRUE(Feed("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 60).ok());
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_EQ(out_[1].status, 404);
}

TEST_F(Http1Test, ContentLengthBodyOverSeveralUncapturedSegments) {
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n";
  const std::string first = head + std::string(1024 - head.size(), 'a');
  ASSERT_TRUE(FeedPartial(first, head.size() + 1000, 1).ok());  // 1000 body bytes
  ASSERT_TRUE(FeedPartial("", 1500, 2).ok());                   // nothing captured
  EXPECT_TRUE(out_.empty());
  // The last 500 body bytes, then a pipelined response the capture also cut.
  const std::string tail = std::string(500, 'b') + "HTTP/1.1 204 No Content\r\n\r\n";
  ASSERT_TRUE(FeedPartial(tail, tail.size(), 3).ok());
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_EQ(out_[0].first_ts_ns, 1u);
  EXPECT_EQ(out_[0].last_ts_ns, 3u);
  EXPECT_EQ(out_[0].body_bytes, 3000u);
  EXPECT_EQ(out_[1].status, 204);
  EXPECT_EQ(out_[1].first_ts_ns, 3u);
}

TEST_F(Http1Test, ResponseToHeadHasNoBody) {
  parser_.ExpectResponseTo("HEAD");
  parser_.ExpectResponseTo("GET");
  ASSERT_TRUE(Feed("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
                   "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                   5)
                  .ok());
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_EQ(out_[0].method, "HEAD");
  EXPECT_EQ(out_[0].framing, Framing::kNoBody);
  EXPECT_EQ(out_[0].body_bytes, 0u);
  EXPECT_EQ(out_[1].method, "GET");
  EXPECT_EQ(out_[1].body_bytes, 2u);
}

TEST_F(Http1Test, Status204And304HaveNoBodyDespiteHeaders) {
  ASSERT_TRUE(Feed("HTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n"
                   "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
                   9)
                  .ok());
  ASSERT_EQ(out_.size(), 3u);
  EXPECT_EQ(out_[0].status, 204);
  EXPECT_EQ(out_[0].framing, Framing::kNoBody);
  EXPECT_EQ(out_[1].status, 304);
  EXPECT_EQ(out_[1].framing, Framing::kNoBody);
  EXPECT_EQ(out_[2].status, 200);
  EXPECT_EQ(out_[2].body_bytes, 1u);
}

TEST_F(Http1Test, InterimContinueIsSkippedAndFinalResponsePairs) {
  parser_.ExpectResponseTo("PUT");
  parser_.ExpectResponseTo("GET");
  ASSERT_TRUE(Feed("HTTP/1.1 100 Continue\r\n\r\n", 10).ok());
  EXPECT_TRUE(out_.empty());
  EXPECT_FALSE(parser_.mid_message());
  ASSERT_TRUE(Feed("HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
                   "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
                   20)
                  .ok());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].status, 201);
  EXPECT_EQ(out_[0].method, "PUT");  // the interim responses consumed no method
  EXPECT_EQ(out_[0].first_ts_ns, 20u);
  ASSERT_TRUE(Feed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 30).ok());
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_EQ(out_[1].method, "GET");
}

TEST_F(Http1Test, CloseDelimitedResponseEndsAtFlush) {
  ASSERT_TRUE(Feed("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nabc", 1).ok());
  ASSERT_TRUE(FeedPartial("def", 5000, 2).ok());
  EXPECT_TRUE(out_.empty());
  EXPECT_TRUE(parser_.mid_message());
  parser_.Flush(&out_);
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].framing, Framing::kUntilClose);
  EXPECT_FALSE(out_[0].keep_alive);
  EXPECT_EQ(out_[0].first_ts_ns, 1u);
  EXPECT_EQ(out_[0].last_ts_ns, 2u);
  EXPECT_EQ(out_[0].body_bytes, 5003u);
  EXPECT_FALSE(out_[0].aborted);
  EXPECT_FALSE(parser_.mid_message());
}

TEST_F(Http1Test, CloseDelimitedResponseIsNotEndedByAStartLineLookalike) {
  ASSERT_TRUE(Feed("HTTP/1.1 200 OK\r\n\r\nfirst part", 1).ok());
  ASSERT_TRUE(Feed("HTTP/1.1 200 OK\r\n\r\n", 2).ok());  // body bytes, by definition
  EXPECT_TRUE(out_.empty());
  parser_.Close(&out_);
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].last_ts_ns, 2u);
  EXPECT_FALSE(out_[0].aborted);
}

TEST_F(Http1Test, UpgradeSwitchesToTunnel) {
  parser_.ExpectResponseTo("GET");
  ASSERT_TRUE(Feed("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\n\r\n\x81\x05hello",
                   7)
                  .ok());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].status, 101);
  EXPECT_FALSE(out_[0].keep_alive);
  EXPECT_TRUE(parser_.tunneled());
  ASSERT_TRUE(Feed("\x16\x03\x01 anything at all", 8).ok());
  EXPECT_EQ(out_.size(), 1u);
}

TEST_F(Http1Test, ConnectSuccessSwitchesToTunnel) {
  parser_.ExpectResponseTo("CONNECT");
  ASSERT_TRUE(Feed("HTTP/1.1 200 Connection Established\r\n\r\n\x16\x03\x03", 7).ok());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].method, "CONNECT");
  EXPECT_EQ(out_[0].framing, Framing::kNoBody);
  EXPECT_TRUE(parser_.tunneled());
}

TEST_F(Http1Test, RequestSideEntersTunnelOnRequest) {
  ASSERT_TRUE(Feed("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", 1).ok());
  parser_.EnterTunnel();
  EXPECT_TRUE(Feed("\x81\x85garbage", 2).ok());
  EXPECT_EQ(out_.size(), 1u);
}

// --- chunked --------------------------------------------------------------------

TEST_F(Http1Test, ChunkedInOneSegment) {
  const std::string body =
      "4\r\nWiki\r\n5;name=val\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n";
  ASSERT_TRUE(Feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body +
                       "HTTP/1.1 204 No Content\r\n\r\n",
                   11)
                  .ok());
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_EQ(out_[0].framing, Framing::kChunked);
  EXPECT_EQ(out_[0].body_bytes, body.size());
  EXPECT_EQ(out_[0].last_ts_ns, 11u);
  EXPECT_EQ(out_[1].status, 204);
}

TEST_F(Http1Test, ChunkedAcrossSegmentsAtAwkwardBoundaries) {
  ASSERT_TRUE(Feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1", 1).ok());
  ASSERT_TRUE(Feed("0\r", 2).ok());           // chunk size 0x10, CR
  ASSERT_TRUE(Feed("\n0123456789", 3).ok());  // LF, 10 data bytes
  ASSERT_TRUE(Feed("abcdef\r", 4).ok());      // 6 data bytes, CR
  ASSERT_TRUE(Feed("\n0\r\n", 5).ok());       // LF, last-chunk
  EXPECT_TRUE(out_.empty());
  ASSERT_TRUE(Feed("\r", 6).ok());
  EXPECT_TRUE(out_.empty());
  ASSERT_TRUE(Feed("\n", 7).ok());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].framing, Framing::kChunked);
  EXPECT_EQ(out_[0].first_ts_ns, 1u);
  EXPECT_EQ(out_[0].last_ts_ns, 7u);
  EXPECT_EQ(out_[0].body_bytes, 1u + 2 + 11 + 7 + 4 + 1 + 1);
}

TEST_F(Http1Test, ChunkedWithTrailers) {
  ASSERT_TRUE(Feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "3\r\nabc\r\n0\r\nX-Checksum: 1234\r\nX-Other: y\r\n\r\n",
                   3)
                  .ok());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].framing, Framing::kChunked);
  EXPECT_FALSE(out_[0].Header("x-checksum").has_value());  // trailers are not headers
  EXPECT_FALSE(parser_.mid_message());
}

TEST_F(Http1Test, ChunkedDataUncapturedButChunkLinesCaptured) {
  // How Node.js writes: size line, data, CRLF in separate syscalls.
  ASSERT_TRUE(Feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 1).ok());
  ASSERT_TRUE(Feed("2000\r\n", 2).ok());
  ASSERT_TRUE(FeedPartial(std::string(1024, 'x'), 0x2000, 3).ok());
  ASSERT_TRUE(Feed("\r\n", 4).ok());
  ASSERT_TRUE(Feed("0\r\n\r\n", 5).ok());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].last_ts_ns, 5u);
  EXPECT_EQ(out_[0].body_bytes, 6u + 0x2000 + 2 + 5);
}

TEST_F(Http1Test, ChunkedCrlfAndLastChunkEndInUncapturedTail) {
  // One write: size line, data, and the trailing CRLF beyond the capture.
  const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string seg = head + "10\r\n0123456789abcdef\r\n0\r\n\r\n";
  ASSERT_TRUE(FeedPartial(seg.substr(0, seg.size() - 2), seg.size(), 1).ok());
  ASSERT_EQ(out_.size(), 1u);  // the uncaptured final CRLF is assumed
  EXPECT_EQ(out_[0].framing, Framing::kChunked);
  EXPECT_EQ(out_[0].wire_bytes, seg.size());
  // The data's CRLF uncaptured, the next size line in the next segment.
  ASSERT_TRUE(FeedPartial(head + "3\r\nabc", head.size() + 8, 2).ok());
  ASSERT_TRUE(Feed("0\r\n\r\n", 3).ok());
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_EQ(out_[1].framing, Framing::kChunked);
  EXPECT_EQ(out_[1].last_ts_ns, 3u);
}

TEST_F(Http1Test, ChunkSizeLineNotCapturedFallsBackToUnknown) {
  const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string captured = head + "400\r\n" + std::string(100, 'd');
  // 0x400 data bytes, CRLF, then a chunk-size line nobody captured.
  ASSERT_TRUE(FeedPartial(captured, head.size() + 5 + 0x400 + 2 + 200, 1).ok());
  ASSERT_TRUE(FeedPartial("", 777, 2).ok());
  EXPECT_TRUE(out_.empty());
  EXPECT_TRUE(parser_.mid_message());
  parser_.Flush(&out_);
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].framing, Framing::kUnknown);
  EXPECT_FALSE(out_[0].head_truncated);
  EXPECT_EQ(out_[0].status, 200);
  EXPECT_EQ(out_[0].last_ts_ns, 2u);
  EXPECT_EQ(out_[0].body_bytes, 5u + 0x400 + 2 + 200 + 777);
  // Back in sync at the next start line.
  ASSERT_TRUE(Feed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 3).ok());
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_EQ(out_[1].first_ts_ns, 3u);
}

// --- truncated heads and lost sync ---------------------------------------------

TEST_F(Http1Test, TruncatedHeadIsUnknownUntilFlush) {
  std::string req =
      "GET /big?q=1 HTTP/1.1\r\nHost: svc\r\ntraceparent: "
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nCookie: ";
  req += std::string(3000, 'k');
  req += "\r\n\r\n";
  ASSERT_TRUE(FeedPartial(req.substr(0, 1024), req.size(), 100).ok());
  EXPECT_TRUE(out_.empty());
  EXPECT_TRUE(parser_.mid_message());
  parser_.Flush(&out_);
  ASSERT_EQ(out_.size(), 1u);
  const HttpMessage& m = out_[0];
  EXPECT_TRUE(m.head_truncated);
  EXPECT_EQ(m.framing, Framing::kUnknown);
  EXPECT_EQ(m.method, "GET");
  EXPECT_EQ(m.target, "/big?q=1");
  EXPECT_EQ(m.version, "1.1");
  ASSERT_EQ(m.headers.size(), 2u);  // the cut Cookie line is not reported
  EXPECT_EQ(m.Header("traceparent"), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  EXPECT_EQ(m.first_ts_ns, 100u);
  EXPECT_EQ(m.last_ts_ns, 100u);
  EXPECT_EQ(m.wire_bytes, req.size());
  EXPECT_EQ(m.body_bytes, 0u);
  // The next request resynchronises.
  ASSERT_TRUE(Feed("GET /next HTTP/1.1\r\n\r\n", 200).ok());
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_EQ(out_[1].target, "/next");
}

TEST_F(Http1Test, TruncatedHeadSpansLaterSegmentsAndEndsAtNextStartLine) {
  const std::string head = "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Le";
  ASSERT_TRUE(FeedPartial(head, 4096, 1).ok());
  ASSERT_TRUE(FeedPartial("more body bytes", 8192, 2).ok());  // not a start line: ours
  EXPECT_TRUE(out_.empty());
  ASSERT_TRUE(Feed("GET /after HTTP/1.1\r\n\r\n", 3).ok());
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_EQ(out_[0].method, "POST");
  EXPECT_EQ(out_[0].headers.size(), 1u);
  EXPECT_EQ(out_[0].last_ts_ns, 2u);
  EXPECT_EQ(out_[0].wire_bytes, 4096u + 8192u);
  EXPECT_EQ(out_[1].target, "/after");
  EXPECT_EQ(out_[1].first_ts_ns, 3u);
}

TEST_F(Http1Test, TruncatedStartLineKeepsTheTargetPrefix) {
  const std::string req = "GET /" + std::string(2000, 'p') + " HTTP/1.1\r\n\r\n";
  ASSERT_TRUE(FeedPartial(req.substr(0, 64), req.size(), 1).ok());
  parser_.Flush(&out_);
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].method, "GET");
  EXPECT_EQ(out_[0].target, req.substr(4, 60));
  EXPECT_EQ(out_[0].version, "");
  EXPECT_TRUE(out_[0].head_truncated);
}

TEST_F(Http1Test, TruncatedResponseHeadKeepsStatusAndPairs) {
  parser_.ExpectResponseTo("POST");
  const std::string head = "HTTP/1.1 502 Bad Gateway\r\nServer: x\r\nSet-Cookie: abc";
  ASSERT_TRUE(FeedPartial(head, 2048, 4).ok());
  parser_.Flush(&out_);
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].status, 502);
  EXPECT_EQ(out_[0].method, "POST");
  EXPECT_TRUE(out_[0].head_truncated);
}

TEST_F(Http1Test, MessageStartingInUncapturedBytesIsStillReported) {
  const std::string first = "GET /one HTTP/1.1\r\n\r\n";
  // The segment also held a second pipelined request, beyond the capture.
  ASSERT_TRUE(FeedPartial(first, first.size() + 30, 5).ok());
  ASSERT_EQ(out_.size(), 1u);
  parser_.Flush(&out_);
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_TRUE(out_[1].is_request);
  EXPECT_TRUE(out_[1].head_truncated);
  EXPECT_EQ(out_[1].method, "");
  EXPECT_EQ(out_[1].wire_bytes, 30u);
  EXPECT_EQ(out_[1].first_ts_ns, 5u);
}

TEST_F(Http1Test, AfterFlushNonStartSegmentsAreSkippedUntilAStartLine) {
  ASSERT_TRUE(FeedPartial("GET /a HTTP/1.1\r\nHost", 4000, 1).ok());
  parser_.Flush(&out_);
  ASSERT_EQ(out_.size(), 1u);
  ASSERT_TRUE(Feed("tail of a body we could not frame", 2).ok());
  EXPECT_FALSE(parser_.mid_message());
  ASSERT_TRUE(Feed("GET /b HTTP/1.1\r\n\r\n", 3).ok());
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_EQ(out_[1].target, "/b");
}

TEST_F(Http1Test, ResyncGivesUpAfterTheLimit) {
  Http1Limits limits;
  limits.max_resync_segments = 3;
  Http1Parser parser(limits);
  std::vector<HttpMessage> out;
  ASSERT_TRUE(parser.Feed("GET / HTTP/1.1\r\nX", 100, 1, &out).ok());
  parser.Flush(&out);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(parser.Feed("junk", 4, 2, &out).ok());
  EXPECT_EQ(parser.Feed("junk", 4, 3, &out).code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(parser.failed());
}

TEST_F(Http1Test, CloseEmitsUnfinishedMessagesAsAborted) {
  ASSERT_TRUE(Feed("POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc", 1).ok());
  parser_.Close(&out_);
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_TRUE(out_[0].aborted);
  EXPECT_EQ(out_[0].body_bytes, 3u);
  EXPECT_EQ(parser_.Feed("GET / HTTP/1.1\r\n\r\n", 18, 2, &out_).code(),
            absl::StatusCode::kFailedPrecondition);

  Http1Parser mid_head;
  std::vector<HttpMessage> out;
  ASSERT_TRUE(mid_head.Feed("GET /x HTTP/1.1\r\nHo", 19, 1, &out).ok());
  mid_head.Close(&out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].aborted);
  EXPECT_TRUE(out[0].head_truncated);
  EXPECT_EQ(out[0].target, "/x");
}

// --- not HTTP, limits, malformed framing ---------------------------------------

TEST_F(Http1Test, TlsClientHelloIsRejectedOnTheFirstSegment) {
  const std::string hello("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
  absl::Status s = FeedPartial(hello, 517, 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(parser_.failed());
  EXPECT_EQ(Feed("GET / HTTP/1.1\r\n\r\n", 2).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(Http1Test, BinaryAndOtherProtocolsAreRejected) {
  const std::vector<std::string> inputs = {
      std::string("\x00\x01", 2),
      "*1\r\n$4\r\nPING\r\n",                              // redis RESP
      "PING\r\n",                                          // redis inline
      "SET key value\r\n",                                 // looks like a method
      std::string("\x00\x00\x00\x08\x04\xd2\x16\x2f", 8),  // postgres SSLRequest
      "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",                  // h2 preface
      "GET / HTTP/1.1 extra\r\n\r\n",                      // junk after version
      "get / http/1.1\r\n\r\n",                            // version is case-sensitive
      "GET  / HTTP/1.1\r\n\r\n",                           // two spaces
      "HTTP/1.1 20 OK\r\n\r\n",                            // two-digit status
      "HTTP/1.1 099 Odd\r\n\r\n",                          // status below 100
  };
  for (const std::string& in : inputs) {
    Http1Parser parser;
    std::vector<HttpMessage> out;
    EXPECT_FALSE(parser.Feed(in, in.size(), 1, &out).ok()) << in;
    EXPECT_TRUE(out.empty());
  }
}

TEST_F(Http1Test, RandomBytesAreRejected) {
  std::mt19937 rng(12345);
  for (int round = 0; round < 200; ++round) {
    std::string junk(256, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    Http1Parser parser;
    std::vector<HttpMessage> out;
    EXPECT_FALSE(parser.Feed(junk, junk.size(), 1, &out).ok()) << round;
  }
}

TEST_F(Http1Test, MalformedHeaderLinesAreRejected) {
  const std::vector<std::string> inputs = {
      "GET / HTTP/1.1\r\nHost : h\r\n\r\n",                  // space before colon
      "GET / HTTP/1.1\r\nNoColon\r\n\r\n",                   // no colon
      std::string("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 26),  // NUL in value
      "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",                   // bare CR
      "GET / HTTP/1.1\r\n folded-first\r\n\r\n",             // obs-fold with nothing to fold
      "GET / HTTP/1.1\r\n\r\r\n",                            // CR not followed by LF
  };
  for (const std::string& in : inputs) {
    Http1Parser parser;
    std::vector<HttpMessage> out;
    EXPECT_EQ(parser.Feed(in, in.size(), 1, &out).code(), absl::StatusCode::kInvalidArgument) << in;
  }
}

TEST_F(Http1Test, DirectionIsLockedByTheFirstMessage) {
  ASSERT_TRUE(Feed("GET / HTTP/1.1\r\n\r\n", 1).ok());
  EXPECT_FALSE(Feed("HTTP/1.1 200 OK\r\n\r\n", 2).ok());

  Http1Parser responses;
  std::vector<HttpMessage> out;
  ASSERT_TRUE(responses.Feed("HTTP/1.1 204 No\r\n\r\n", 19, 1, &out).ok());
  EXPECT_FALSE(responses.Feed("HEAD / HTTP/1.1\r\n\r\n", 19, 2, &out).ok());
}

TEST_F(Http1Test, OversizeHeadIsAnError) {
  std::string req = "GET / HTTP/1.1\r\n";
  while (req.size() < 20000) req += "X-Filler: 0123456789abcdef0123456789abcdef\r\n";
  EXPECT_EQ(Feed(req, 1).code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(Http1Test, OversizeHeadAcrossSegmentsIsAnError) {
  ASSERT_TRUE(Feed("GET / HTTP/1.1\r\n", 1).ok());
  const std::string line = "X-Filler: " + std::string(1000, 'f') + "\r\n";
  absl::Status s;
  for (int i = 0; i < 20 && s.ok(); ++i) s = Feed(line, 2 + i);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(Http1Test, ContentLengthOverflowIsAnError) {
  EXPECT_EQ(Feed("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 1).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(Http1Test, LargestContentLengthStillFrames) {
  ASSERT_TRUE(
      FeedPartial("HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\n", 1ull << 40, 1)
          .ok());
  EXPECT_TRUE(out_.empty());
  EXPECT_TRUE(parser_.mid_message());
}

TEST_F(Http1Test, ConflictingContentLengthIsAnError) {
  EXPECT_EQ(Feed("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 1).code(),
            absl::StatusCode::kInvalidArgument);
  Http1Parser list;
  std::vector<HttpMessage> out;
  const std::string in = "HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabc";
  EXPECT_FALSE(list.Feed(in, in.size(), 1, &out).ok());
}

TEST_F(Http1Test, RepeatedIdenticalContentLengthIsAccepted) {
  ASSERT_TRUE(
      Feed("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc", 1).ok());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].body_bytes, 3u);
}

TEST_F(Http1Test, InvalidContentLengthValuesAreErrors) {
  for (const char* v : {"-1", "+5", "0x10", "", "1 2", "5,"}) {
    Http1Parser parser;
    std::vector<HttpMessage> out;
    const std::string in = std::string("POST / HTTP/1.1\r\nContent-Length: ") + v + "\r\n\r\n";
    EXPECT_EQ(parser.Feed(in, in.size(), 1, &out).code(), absl::StatusCode::kInvalidArgument) << v;
  }
}

TEST_F(Http1Test, TransferEncodingOverridesContentLength) {
  ASSERT_TRUE(Feed("POST / HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "2\r\nhi\r\n0\r\n\r\n",
                   1)
                  .ok());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].framing, Framing::kChunked);
  EXPECT_FALSE(out_[0].keep_alive);  // the peer must close after such a message
}

TEST_F(Http1Test, TransferEncodingWithoutFinalChunked) {
  // A request cannot be framed: error. A response runs until close.
  EXPECT_FALSE(Feed("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 1).ok());
  Http1Parser responses;
  std::vector<HttpMessage> out;
  const std::string in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nzzz";
  ASSERT_TRUE(responses.Feed(in, in.size(), 1, &out).ok());
  responses.Flush(&out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].framing, Framing::kUntilClose);
  EXPECT_EQ(out[0].body_bytes, 3u);
  // chunked applied twice is invalid for both.
  Http1Parser twice;
  const std::string t =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
      "Transfer-Encoding: chunked\r\n\r\n";
  EXPECT_FALSE(twice.Feed(t, t.size(), 1, &out).ok());
}

TEST_F(Http1Test, HostileChunkSizesAreErrors) {
  const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  {
    Http1Parser p;
    std::vector<HttpMessage> out;
    const std::string in = head + "1ffffffffffffffff\r\n";  // 17 hex digits
    EXPECT_EQ(p.Feed(in, in.size(), 1, &out).code(), absl::StatusCode::kInvalidArgument);
  }
  {
    Http1Parser p;
    std::vector<HttpMessage> out;
    ASSERT_TRUE(p.Feed(head, head.size(), 1, &out).ok());
    absl::Status s;
    const std::string zeros(1000, '0');  // leading zeros never overflow: length bounds them
    for (int i = 0; i < 10 && s.ok(); ++i) s = p.Feed(zeros, zeros.size(), 2, &out);
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  }
  {
    Http1Parser p;
    std::vector<HttpMessage> out;
    const std::string in = head + "zz\r\n";
    EXPECT_EQ(p.Feed(in, in.size(), 1, &out).code(), absl::StatusCode::kInvalidArgument);
  }
  {
    Http1Parser p;
    std::vector<HttpMessage> out;
    const std::string in = head + "3\r\nabcX";  // data not followed by CRLF
    EXPECT_EQ(p.Feed(in, in.size(), 1, &out).code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST_F(Http1Test, CapturedBytesBeyondTotalAreIgnored) {
  // A short write: the capture holds the whole buffer, only the first 23 bytes were sent.
  ASSERT_TRUE(FeedPartial("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n", 23, 1).ok());
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].target, "/a");
  EXPECT_TRUE(parser_.mid_message());  // "GET " of the second request
  // The retry fails with EAGAIN: nothing moved, whatever the capture holds.
  ASSERT_TRUE(FeedPartial("junk that was never sent", 0, 2).ok());
  // The rest of the second request.
  ASSERT_TRUE(Feed("/b HTTP/1.1\r\n\r\n", 3).ok());
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_EQ(out_[1].target, "/b");
  EXPECT_EQ(out_[1].first_ts_ns, 1u);
  EXPECT_EQ(out_[1].last_ts_ns, 3u);
}

TEST(FramingNameTest, Names) {
  EXPECT_EQ(FramingName(Framing::kNoBody), "no_body");
  EXPECT_EQ(FramingName(Framing::kContentLength), "content_length");
  EXPECT_EQ(FramingName(Framing::kChunked), "chunked");
  EXPECT_EQ(FramingName(Framing::kUntilClose), "until_close");
  EXPECT_EQ(FramingName(Framing::kUnknown), "unknown");
}

}  // namespace
}  // namespace isotrace::correlate
