// Span / log record → OTLP request: every field, checked on our own generated messages
// (the independent decode is tests/unit/otlp_roundtrip_test.cc with the npm receiver).

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "exporters/otlp/encode.h"
#include "exporters/otlp/semconv.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace isotrace::otlp {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

correlate::TraceId Tid(uint8_t seed) {
  correlate::TraceId t;
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<uint8_t>(seed + i);
  return t;
}
correlate::SpanId Sid(uint8_t seed) {
  correlate::SpanId s;
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<uint8_t>(seed + i);
  return s;
}
template <size_t N>
std::string Raw(const std::array<uint8_t, N>& id) {
  return std::string(reinterpret_cast<const char*>(id.data()), N);
}

correlate::Span ServerSpan() {
  correlate::Span s;
  s.trace_id = Tid(0x10);
  s.span_id = Sid(0x30);
  s.parent_span_id = Sid(0x50);
  s.trace_flags = 1;
  s.tracestate = "vendor=abc";
  s.remote_parent = true;
  s.kind = correlate::SpanKind::kServer;
  s.start_unix_ns = 1'700'000'000'000'000'000ULL;
  s.end_unix_ns = 1'700'000'000'250'000'000ULL;
  s.method = "GET";
  s.path = "/api/items";
  s.query = "page=2";
  s.status_code = 200;
  s.protocol_version = "1.1";
  s.host_header = "shop.local:8080";
  s.client_address = "10.0.0.7";
  s.client_port = 51234;
  s.server_address = "10.0.0.1";
  s.server_port = 8080;
  s.breakdown.oncpu_ns = 1200;
  s.net.retransmits = 2;
  s.verdict = correlate::SpanVerdict{"db", "kernel", "runqueue", 0.75, "slow"};
  correlate::Incident e;
  e.kind = correlate::IncidentKind::kTcpReset;
  e.time_unix_ns = 1'700'000'000'100'000'000ULL;
  e.reset_by = correlate::Incident::ResetBy::kPeer;
  s.incidents = {e};
  return s;
}

// Attributes as key → printable value ("s:..", "i:..", "d:..", "b:..").
std::map<std::string, std::string> Attrs(
    const google::protobuf::RepeatedPtrField<otlp_common::KeyValue>& kvs) {
  std::map<std::string, std::string> out;
  for (const auto& kv : kvs) {
    const auto& v = kv.value();
    std::string s;
    switch (v.value_case()) {
      case otlp_common::AnyValue::kStringValue:
        s = "s:" + v.string_value();
        break;
      case otlp_common::AnyValue::kIntValue:
        s = "i:" + std::to_string(v.int_value());
        break;
      case otlp_common::AnyValue::kDoubleValue:
        s = "d:" + std::to_string(v.double_value());
        break;
      case otlp_common::AnyValue::kBoolValue:
        s = v.bool_value() ? "b:true" : "b:false";
        break;
      default:
        s = "?";
        break;
    }
    EXPECT_TRUE(out.emplace(kv.key(), s).second) << "duplicate key " << kv.key();
  }
  return out;
}

std::shared_ptr<const correlate::Resource> MakeResource(const std::string& service, int64_t pid) {
  auto r = std::make_shared<correlate::Resource>();
  r->attributes = {{"service.name", service}, {"process.pid", pid}};
  return r;
}

otlp_trace::Span EncodeOne(const correlate::Span& s) {
  otlp_trace::Span out;
  EncodeSpan(s, &out);
  return out;
}

TEST(OtlpEncode, ServerSpanFields) {
  const auto span = EncodeOne(ServerSpan());
  EXPECT_EQ(span.trace_id(), Raw(Tid(0x10)));
  EXPECT_EQ(span.span_id(), Raw(Sid(0x30)));
  EXPECT_EQ(span.parent_span_id(), Raw(Sid(0x50)));
  EXPECT_EQ(span.trace_state(), "vendor=abc");
  EXPECT_EQ(span.flags(), 0x1u | 0x100u | 0x200u);  // sampled, remoteness known, remote
  EXPECT_EQ(span.name(), "GET");
  EXPECT_EQ(span.kind(), otlp_trace::Span::SPAN_KIND_SERVER);
  EXPECT_EQ(span.start_time_unix_nano(), 1'700'000'000'000'000'000ULL);
  EXPECT_EQ(span.end_time_unix_nano(), 1'700'000'000'250'000'000ULL);
  EXPECT_FALSE(span.has_status());  // 200: UNSET

  std::vector<std::string> keys;
  for (const auto& kv : span.attributes()) keys.push_back(kv.key());
  EXPECT_THAT(keys,
              ElementsAre("http.request.method", "url.path", "url.query", "url.scheme",
                          "http.response.status_code", "network.protocol.name",
                          "network.protocol.version", "server.address", "server.port",
                          "client.address", "client.port", "isotrace.app.oncpu_ns",
                          "isotrace.net.retransmits", "isotrace.verdict.service",
                          "isotrace.verdict.layer", "isotrace.verdict.cause",
                          "isotrace.verdict.share", "isotrace.verdict.reason"));
  const auto a = Attrs(span.attributes());
  EXPECT_EQ(a.at("http.request.method"), "s:GET");
  EXPECT_EQ(a.at("url.path"), "s:/api/items");
  EXPECT_EQ(a.at("url.query"), "s:page=2");
  EXPECT_EQ(a.at("url.scheme"), "s:http");
  EXPECT_EQ(a.at("http.response.status_code"), "i:200");
  EXPECT_EQ(a.at("network.protocol.name"), "s:http");
  EXPECT_EQ(a.at("network.protocol.version"), "s:1.1");
  EXPECT_EQ(a.at("server.address"), "s:10.0.0.1");
  EXPECT_EQ(a.at("server.port"), "i:8080");
  EXPECT_EQ(a.at("client.address"), "s:10.0.0.7");
  EXPECT_EQ(a.at("client.port"), "i:51234");
  EXPECT_EQ(a.at("isotrace.app.oncpu_ns"), "i:1200");
  EXPECT_EQ(a.at("isotrace.net.retransmits"), "i:2");
  EXPECT_EQ(a.at("isotrace.verdict.service"), "s:db");
  EXPECT_EQ(a.at("isotrace.verdict.layer"), "s:kernel");
  EXPECT_EQ(a.at("isotrace.verdict.cause"), "s:runqueue");
  EXPECT_EQ(a.at("isotrace.verdict.share"), "d:0.750000");
  EXPECT_EQ(a.at("isotrace.verdict.reason"), "s:slow");
  // Measures the span does not carry are absent, not zero.
  EXPECT_EQ(a.count("isotrace.kernel.runq_ns"), 0u);
  EXPECT_EQ(a.count("isotrace.kernel.memstall_ns"), 0u);
  EXPECT_EQ(a.count("isotrace.net.srtt_us"), 0u);
  EXPECT_EQ(a.count("error.type"), 0u);
  EXPECT_EQ(a.count("url.full"), 0u);

  ASSERT_EQ(span.events_size(), 1);
  EXPECT_EQ(span.events(0).name(), "tcp_reset");
  EXPECT_EQ(span.events(0).time_unix_nano(), 1'700'000'000'100'000'000ULL);
  EXPECT_THAT(Attrs(span.events(0).attributes()),
              ElementsAre(Pair("isotrace.net.reset_by", "s:peer"), Pair("isotrace.verdict.layer", "s:network")));
}

TEST(OtlpEncode, RootSpanHasNoParentAndNoOptionalFields) {
  auto s = ServerSpan();
  s.parent_span_id = {};
  s.remote_parent = false;
  s.trace_flags = 0;
  s.tracestate.clear();
  s.query.clear();
  s.status_code = 0;
  s.protocol_version.clear();
  s.client_port = 0;
  s.breakdown = {};
  s.net = {};
  s.verdict.reset();
  s.incidents.clear();
  const auto span = EncodeOne(s);
  EXPECT_TRUE(span.parent_span_id().empty());
  EXPECT_TRUE(span.trace_state().empty());
  EXPECT_EQ(span.flags(), 0x100u);
  const auto a = Attrs(span.attributes());
  EXPECT_EQ(a.count("url.query"), 0u);
  EXPECT_EQ(a.count("http.response.status_code"), 0u);
  EXPECT_EQ(a.count("network.protocol.version"), 0u);
  EXPECT_EQ(a.count("client.port"), 0u);
  EXPECT_EQ(span.events_size(), 0);
}

TEST(OtlpEncode, ServerStatusFollowsHttpConventions) {
  auto s = ServerSpan();
  s.status_code = 404;
  EXPECT_FALSE(EncodeOne(s).has_status()) << "4xx is the client's error, not the server's";
  s.status_code = 503;
  s.error_type = "503";
  auto span = EncodeOne(s);
  EXPECT_EQ(span.status().code(), otlp_trace::Status::STATUS_CODE_ERROR);
  EXPECT_TRUE(span.status().message().empty());
  EXPECT_EQ(Attrs(span.attributes()).at("error.type"), "s:503");
  s.status_code = 0;
  s.error_type = "connection_reset";
  EXPECT_EQ(EncodeOne(s).status().code(), otlp_trace::Status::STATUS_CODE_ERROR);
}

TEST(OtlpEncode, ClientSpanAddressesTheServerAsTheClientNamedIt) {
  correlate::Span s = ServerSpan();
  s.kind = correlate::SpanKind::kClient;
  s.host_header = "inventory.svc:9090";
  s.server_address = "10.0.0.9";
  s.server_port = 9090;
  s.client_address = "10.0.0.1";
  s.client_port = 40000;
  s.status_code = 200;
  s.breakdown = {};
  s.net = {};
  s.verdict.reset();
  s.incidents.clear();
  auto span = EncodeOne(s);
  EXPECT_EQ(span.kind(), otlp_trace::Span::SPAN_KIND_CLIENT);
  EXPECT_EQ(span.name(), "GET");
  auto a = Attrs(span.attributes());
  EXPECT_EQ(a.at("server.address"), "s:inventory.svc");
  EXPECT_EQ(a.at("server.port"), "i:9090");
  EXPECT_EQ(a.at("url.full"), "s:http://inventory.svc:9090/api/items?page=2");
  EXPECT_EQ(a.count("client.address"), 0u);
  EXPECT_EQ(a.count("client.port"), 0u);
  EXPECT_FALSE(span.has_status());

  s.status_code = 404;
  EXPECT_EQ(EncodeOne(s).status().code(), otlp_trace::Status::STATUS_CODE_ERROR);
  s.status_code = 0;
  s.error_type = "timeout";
  EXPECT_EQ(EncodeOne(s).status().code(), otlp_trace::Status::STATUS_CODE_ERROR);

  // No Host header: the connected address, IPv6 bracketed in url.full.
  s.error_type.clear();
  s.status_code = 200;
  s.host_header.clear();
  s.server_address = "fd00::5";
  s.server_port = 80;
  s.query.clear();
  a = Attrs(EncodeOne(s).attributes());
  EXPECT_EQ(a.at("server.address"), "s:fd00::5");
  EXPECT_EQ(a.at("server.port"), "i:80");
  EXPECT_EQ(a.at("url.full"), "s:http://[fd00::5]/api/items");
}

TEST(OtlpEncode, UnknownMethodIsOther) {
  auto s = ServerSpan();
  s.method = "PROPFIND";
  auto span = EncodeOne(s);
  EXPECT_EQ(span.name(), "HTTP");
  auto a = Attrs(span.attributes());
  EXPECT_EQ(a.at("http.request.method"), "s:_OTHER");
  EXPECT_EQ(a.at("http.request.method_original"), "s:PROPFIND");
  EXPECT_EQ(SpanName(ServerSpan()), "GET");
}

TEST(OtlpEncode, InvalidUtf8IsRepairedNotPropagated) {
  EXPECT_TRUE(IsValidUtf8("plain /path"));
  EXPECT_TRUE(IsValidUtf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xC3"));          // truncated
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));  // surrogate
  EXPECT_EQ(SanitizeUtf8("a\xFF"
                         "b\xC3\xA9"),
            "a\xEF\xBF\xBD"
            "b\xC3\xA9");
  auto s = ServerSpan();
  s.path = "/bad\x80path";
  auto span = EncodeOne(s);
  EXPECT_EQ(Attrs(span.attributes()).at("url.path"), "s:/bad\xEF\xBF\xBDpath");
  std::string wire;
  ASSERT_TRUE(span.SerializeToString(&wire));
  otlp_trace::Span back;
  ASSERT_TRUE(back.ParseFromString(wire));
}

TEST(OtlpEncode, BatchGroupsByResourceInFirstSeenOrder) {
  auto web = MakeResource("web", 100);
  auto db = MakeResource("db", 200);
  std::vector<SpanItem> batch;
  for (int i = 0; i < 4; ++i) {
    auto s = ServerSpan();
    s.span_id = Sid(static_cast<uint8_t>(0x80 + i));
    batch.push_back({i % 2 == 0 ? web : db, s});
  }
  batch.push_back({nullptr, ServerSpan()});

  otlp_collector_trace::ExportTraceServiceRequest req;
  Scope scope;
  ASSERT_TRUE(EncodeSpans(batch, scope, &req).ok());
  ASSERT_EQ(req.resource_spans_size(), 3);
  const auto& rs0 = req.resource_spans(0);
  EXPECT_THAT(Attrs(rs0.resource().attributes()),
              ElementsAre(Pair("process.pid", "i:100"), Pair("service.name", "s:web")));
  ASSERT_EQ(rs0.scope_spans_size(), 1);
  EXPECT_EQ(rs0.scope_spans(0).scope().name(), "isotrace");
  EXPECT_EQ(rs0.scope_spans(0).scope().version(), Version());
  EXPECT_FALSE(Version().empty());
  EXPECT_EQ(rs0.scope_spans(0).schema_url(), semconv::kSchemaUrl);
  ASSERT_EQ(rs0.scope_spans(0).spans_size(), 2);
  EXPECT_EQ(rs0.scope_spans(0).spans(0).span_id(), Raw(Sid(0x80)));
  EXPECT_EQ(rs0.scope_spans(0).spans(1).span_id(), Raw(Sid(0x82)));
  const auto& rs1 = req.resource_spans(1);
  EXPECT_EQ(Attrs(rs1.resource().attributes()).at("service.name"), "s:db");
  ASSERT_EQ(rs1.scope_spans(0).spans_size(), 2);
  EXPECT_EQ(rs1.scope_spans(0).spans(0).span_id(), Raw(Sid(0x81)));
  EXPECT_EQ(req.resource_spans(2).resource().attributes_size(), 0);

  // Survives the wire.
  std::string wire;
  ASSERT_TRUE(req.SerializeToString(&wire));
  otlp_collector_trace::ExportTraceServiceRequest back;
  ASSERT_TRUE(back.ParseFromString(wire));
  EXPECT_EQ(back.resource_spans(1).scope_spans(0).spans(1).span_id(), Raw(Sid(0x83)));
}

TEST(OtlpEncode, InvalidSpanFailsTheBatchWithoutTouchingOutput) {
  auto s = ServerSpan();
  s.trace_id = {};
  EXPECT_FALSE(ValidateSpan(s).ok());
  std::vector<SpanItem> batch = {{nullptr, ServerSpan()}, {nullptr, s}};
  otlp_collector_trace::ExportTraceServiceRequest req;
  auto st = EncodeSpans(batch, Scope{}, &req);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(req.resource_spans_size(), 0);
  s = ServerSpan();
  s.span_id = {};
  EXPECT_FALSE(ValidateSpan(s).ok());
}

TEST(OtlpEncode, BreakdownMeasuresAbsentStayAbsentZeroStaysZero) {
  auto s = ServerSpan();
  s.breakdown = {};
  s.net = {};
  s.verdict.reset();
  s.breakdown.oncpu_ns = 0;
  s.breakdown.runq_ns = 7;
  s.breakdown.throttled_ns = 0;
  s.breakdown.blkio_ns = 0;
  s.breakdown.offcpu_other_ns = 9;
  s.breakdown.downstream_unseen_ns = 0;
  s.breakdown.downstream_ns = 11;
  s.net.srtt_us = 42;  // memstall, steal, retransmits, connect: absent (no kernel hook)
  s.net.listen_drops = 0;  // asked and none: present as 0
  const auto a = Attrs(EncodeOne(s).attributes());
  EXPECT_EQ(a.at("isotrace.app.oncpu_ns"), "i:0");
  EXPECT_EQ(a.at("isotrace.kernel.runq_ns"), "i:7");
  EXPECT_EQ(a.at("isotrace.offcpu_other_ns"), "i:9");
  EXPECT_EQ(a.at("isotrace.downstream.unseen_ns"), "i:0");
  EXPECT_EQ(a.at("isotrace.downstream_ns"), "i:11");
  EXPECT_EQ(a.at("isotrace.net.srtt_us"), "i:42");
  EXPECT_EQ(a.at("isotrace.net.listen_drops"), "i:0");
  for (const char* absent : {"isotrace.kernel.memstall_ns", "isotrace.vm.steal_ns",
                             "isotrace.net.retransmits", "isotrace.net.connect_ns",
                             "isotrace.verdict.layer"})
    EXPECT_EQ(a.count(absent), 0u) << absent;
}

TEST(OtlpEncode, EveryIncidentKindAsASpanEvent) {
  auto s = ServerSpan();
  s.incidents.clear();
  correlate::Incident r;
  r.kind = correlate::IncidentKind::kTcpRetransmit;
  r.time_unix_ns = 5;
  s.incidents.push_back(r);
  r.peer_side = true;  // seen on the connection's other end
  s.incidents.push_back(r);
  correlate::Incident t;
  t.kind = correlate::IncidentKind::kThrottling;
  t.time_unix_ns = 6;
  t.throttled_ns = 3000;
  t.throttle_count = 2;
  s.incidents.push_back(t);
  correlate::Incident o;
  o.kind = correlate::IncidentKind::kOomKill;
  o.time_unix_ns = 7;
  o.victim_pid = 321;
  o.victim_comm = "worker";
  s.incidents.push_back(o);
  correlate::Incident reset;
  reset.kind = correlate::IncidentKind::kTcpReset;
  reset.reset_by = correlate::Incident::ResetBy::kLocal;
  s.incidents.push_back(reset);
  const auto span = EncodeOne(s);
  ASSERT_EQ(span.events_size(), 5);
  EXPECT_EQ(span.events(0).name(), "tcp_retransmit");
  EXPECT_THAT(Attrs(span.events(0).attributes()), ElementsAre(Pair("isotrace.verdict.layer", "s:network")));
  EXPECT_THAT(Attrs(span.events(1).attributes()),
              ElementsAre(Pair("isotrace.net.side", "s:peer"), Pair("isotrace.verdict.layer", "s:network")));
  EXPECT_EQ(span.events(2).name(), "throttling");
  EXPECT_THAT(Attrs(span.events(2).attributes()),
              ElementsAre(Pair("isotrace.container.throttle_count", "i:2"),
                          Pair("isotrace.container.throttled_ns", "i:3000"),
                          Pair("isotrace.verdict.layer", "s:container")));
  EXPECT_EQ(span.events(3).name(), "oom_kill");
  EXPECT_THAT(Attrs(span.events(3).attributes()),
              ElementsAre(Pair("isotrace.verdict.layer", "s:container"), Pair("process.executable.name", "s:worker"),
                          Pair("process.pid", "i:321")));
  EXPECT_EQ(span.events(4).time_unix_nano(), 0u);
  EXPECT_THAT(Attrs(span.events(4).attributes()),
              ElementsAre(Pair("isotrace.net.reset_by", "s:local"), Pair("isotrace.verdict.layer", "s:network")));
}

// The wire encoder writes what protobuf's own serializer writes for the same message:
// parsing its bytes and serialising them again gives the same bytes (canonical lengths,
// field order), also for spans over 127 bytes, 16 KiB strings and repaired UTF-8.
TEST(OtlpEncode, WireBytesAreCanonicalProtobuf) {
  auto web = MakeResource("web", 100);
  std::vector<SpanItem> batch;
  for (int i = 0; i < 300; ++i) {
    auto s = ServerSpan();
    s.span_id = Sid(static_cast<uint8_t>(i + 1));
    if (i % 3 == 0) s.path = "/" + std::string(static_cast<size_t>(i) * 55, 'p');
    if (i % 7 == 0) s.query = "q=\xFF\xFE" + std::to_string(i);
    if (i % 2 == 0) s.kind = correlate::SpanKind::kClient;
    if (i % 5 == 0) s.verdict.reset();
    batch.push_back({i % 4 == 0 ? nullptr : web, s});
  }
  std::string wire;
  ASSERT_TRUE(EncodeSpansWire(batch, Scope{}, &wire).ok());
  otlp_collector_trace::ExportTraceServiceRequest req;
  ASSERT_TRUE(req.ParseFromString(wire));
  EXPECT_EQ(req.SerializeAsString(), wire);
  ASSERT_EQ(req.resource_spans_size(), 2);
  EXPECT_EQ(req.resource_spans(0).scope_spans(0).spans_size() + req.resource_spans(1).scope_spans(0).spans_size(),
            300);
  // Appends: what was in the buffer stays in front.
  std::string more = "prefix";
  ASSERT_TRUE(EncodeSpansWire(batch, Scope{}, &more).ok());
  EXPECT_EQ(more, "prefix" + wire);
}

// The exporter's queue holds spans shared with the span store: encoded from there they
// give the very bytes of the same spans held by value; a missing span fails the batch.
TEST(OtlpEncode, SharedSpansEncodeLikeOwnedOnesAndANullOneIsRefused) {
  auto web = MakeResource("web", 100);
  std::vector<SpanItem> owned;
  std::vector<SharedSpanItem> shared;
  for (int i = 0; i < 20; ++i) {
    auto s = ServerSpan();
    s.span_id = Sid(static_cast<uint8_t>(i + 1));
    if (i % 2 == 0) s.kind = correlate::SpanKind::kClient;
    owned.push_back({i % 3 == 0 ? nullptr : web, s});
    shared.push_back({i % 3 == 0 ? nullptr : web, std::make_shared<const correlate::Span>(s)});
  }
  std::string a, b;
  ASSERT_TRUE(EncodeSpansWire(owned, Scope{}, &a).ok());
  ASSERT_TRUE(EncodeSpansWire(shared, Scope{}, &b).ok());
  EXPECT_EQ(a, b);
  shared[7].record = nullptr;
  std::string c = "x";
  EXPECT_FALSE(EncodeSpansWire(shared, Scope{}, &c).ok());
  EXPECT_EQ(c, "x");
}

TEST(OtlpEncode, LogRecordFields) {
  LogRecord r;
  r.time_unix_ns = 111;
  r.observed_time_unix_ns = 222;
  r.severity_number = 13;
  r.severity_text = "WARN";
  r.body = "verdict: kernel runqueue";
  r.attributes = {{"isotrace.verdict.layer", std::string("kernel")},
                  {"isotrace.verdict.share", 0.5}};
  r.trace_id = Tid(1);
  r.span_id = Sid(2);
  r.trace_flags = 1;
  LogRecord bare;  // no trace context
  std::vector<LogItem> batch = {{MakeResource("web", 1), r}, {MakeResource("web", 1), bare}};
  otlp_collector_logs::ExportLogsServiceRequest req;
  ASSERT_TRUE(EncodeLogs(batch, Scope{}, &req).ok());
  // Two distinct Resource objects: two groups (grouping is by object, not content).
  ASSERT_EQ(req.resource_logs_size(), 2);
  const auto& sl = req.resource_logs(0).scope_logs(0);
  EXPECT_EQ(sl.scope().name(), "isotrace");
  ASSERT_EQ(sl.log_records_size(), 1);
  const auto& lr = sl.log_records(0);
  EXPECT_EQ(lr.time_unix_nano(), 111u);
  EXPECT_EQ(lr.observed_time_unix_nano(), 222u);
  EXPECT_EQ(lr.severity_number(), otlp_logs::SEVERITY_NUMBER_WARN);
  EXPECT_EQ(lr.severity_text(), "WARN");
  EXPECT_EQ(lr.body().string_value(), "verdict: kernel runqueue");
  EXPECT_EQ(lr.trace_id(), Raw(Tid(1)));
  EXPECT_EQ(lr.span_id(), Raw(Sid(2)));
  EXPECT_EQ(lr.flags(), 1u);
  EXPECT_THAT(Attrs(lr.attributes()), ElementsAre(Pair("isotrace.verdict.layer", "s:kernel"),
                                                  Pair("isotrace.verdict.share", "d:0.500000")));
  const auto& lr2 = req.resource_logs(1).scope_logs(0).log_records(0);
  EXPECT_TRUE(lr2.trace_id().empty());
  EXPECT_TRUE(lr2.span_id().empty());
  EXPECT_FALSE(lr2.has_body());

  bare.severity_number = 99;
  otlp_collector_logs::ExportLogsServiceRequest bad;
  EXPECT_FALSE(EncodeLogs(std::vector<LogItem>{{nullptr, bare}}, Scope{}, &bad).ok());
}

}  // namespace
}  // namespace isotrace::otlp
