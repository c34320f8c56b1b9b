// The YAML configuration: every key documented, unknown and duplicate keys refused with a
// suggestion, values checked with messages that name the key, the value and the fix, and
// the precedence defaults < file < OTEL_* environment < flags.

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "daemon/config/config.h"
#include "daemon/pipeline/daemon.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace isotrace::config {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string SourceDir() {
  // tests/unit/<this file> → the repository root.
  std::string f = __FILE__;
  return f.substr(0, f.rfind("/tests/unit/"));
}

std::string Message(const absl::Status& st) { return std::string(st.message()); }

absl::Status Load(const std::string& yaml, Config* c) { return LoadYamlString(yaml, c); }

TEST(ConfigKeys, EveryKeyIsDocumented) {
  std::ifstream in(SourceDir() + "/docs/configuration.md");
  ASSERT_TRUE(in) << "docs/configuration.md missing";
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  for (const auto& key : KnownKeys()) {
    EXPECT_THAT(doc, HasSubstr("`" + key + "`")) << "key " << key << " is not documented";
  }
}

TEST(ConfigKeys, AFullFileLoads) {
  Config c;
  auto st = Load(R"(
exporter:
  otlp:
    endpoint: http://collector:4317
    headers: {authorization: "Bearer x,y%z"}
    insecure: true
    compression: gzip
  batch_size: 256
  queue_size: 4096
  queue_bytes: 1048576
  timeout_ms: 2000
  interval_ms: 500
  shutdown_timeout_ms: 3000
  retry: {max_attempts: 4, initial_backoff_ms: 200, max_backoff_ms: 1000, max_server_delay_ms: 5000}
resource: {attributes: "deployment.environment=prod"}
probes: {capture_bytes: 512, ringbuf_bytes: 4096, client_write_start: false}
log: {level: debug, stats_file: /tmp/stats.json}
)",
                 &c);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(c.otlp_endpoint, "http://collector:4317");
  // The mapping form is joined with the separators escaped, so it round-trips.
  EXPECT_EQ(c.otlp_headers, "authorization=Bearer x%2Cy%25z");
  EXPECT_TRUE(c.otlp_insecure);
  EXPECT_EQ(c.otlp_compression, "gzip");
  EXPECT_EQ(c.export_queue_bytes, 1048576u);
  EXPECT_EQ(c.retry_max_attempts, 4u);
  EXPECT_EQ(c.retry_max_server_delay_ms, 5000u);
  EXPECT_EQ(c.ringbuf_bytes, 4096u);
  EXPECT_FALSE(c.client_write_start);
  EXPECT_EQ(c.stats_file, "/tmp/stats.json");
  EXPECT_TRUE(Validate(c).ok()) << Validate(c);

  auto opts = pipeline::TraceExporterOptions(c);
  ASSERT_TRUE(opts.ok()) << opts.status();
  ASSERT_EQ(opts->headers.size(), 1u);
  EXPECT_EQ(opts->headers[0].second, "Bearer x,y%z");
  EXPECT_TRUE(opts->gzip);
  EXPECT_EQ(opts->timeout, absl::Milliseconds(2000));
  EXPECT_EQ(opts->max_queue_bytes, 1048576u);
  EXPECT_EQ(opts->retry.max_attempts, 4);
}

TEST(ConfigErrors, UnknownKeySuggestsTheNearestOne) {
  Config c;
  auto st = Load("exporter:\n  queue_sise: 10\n", &c);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(Message(st), HasSubstr("'exporter.queue_sise'"));
  EXPECT_THAT(Message(st), HasSubstr("did you mean 'exporter.queue_size'"));

  // A section name is suggested too; and only one name, never the vocabulary.
  st = Load("exportr: {batch_size: 1}\n", &c);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(Message(st), HasSubstr("unknown key 'exportr'; did you mean 'exporter'?"));
  st = Load("totally_new_section: {a: 1}\n", &c);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(Message(st), HasSubstr("unknown key 'totally_new_section'; did you mean '"));
  EXPECT_THAT(Message(st), Not(HasSubstr(", "))) << "lists keys: " << Message(st);
  st = Load("exporter: {otlp: {endpiont: 'http://c:4317'}}\n", &c);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(Message(st), HasSubstr("did you mean 'exporter.otlp.endpoint'?"));
  EXPECT_THAT(Message(st), Not(HasSubstr("headers")));
  // The fields of a layer rule likewise.
  st = Load("layers: {rules: [{layer: sandbox, name: x, executabel: x}]}\n", &c);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(Message(st), HasSubstr("unknown key 'layers.rules[0].executabel'; did you mean 'executable'?"));
  EXPECT_THAT(Message(st), Not(HasSubstr("wasm_import"))) << Message(st);
}

// A value that is no endpoint at all fails where it was written (file, environment, flag,
// a signal's own variable), saying what to write, not at the first export.
TEST(ConfigErrors, AnEndpointThatIsNoUrlIsRefused) {
  Config c;
  auto st = ApplyEnvironment({{"OTEL_EXPORTER_OTLP_ENDPOINT", "not a url"}}, &c);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(Message(st), HasSubstr("environment OTEL_EXPORTER_OTLP_ENDPOINT: OTLP endpoint \"not a url\" is not an endpoint"));
  EXPECT_THAT(Message(st), HasSubstr("write scheme://host:port, e.g. http://otel-collector:4317"));
  st = ApplyEnvironment({{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://ok:4317"},
                         {"OTEL_EXPORTER_OTLP_ENDPOINT", "collector,other:4317"}},
                        &c);
  EXPECT_THAT(Message(st), HasSubstr("OTEL_EXPORTER_OTLP_ENDPOINT")) << "the generic one is checked too";
  st = Load("exporter: {otlp: {endpoint: 'not a url'}}", &c);
  EXPECT_THAT(Message(st), HasSubstr("config key 'exporter.otlp.endpoint'"));
  EXPECT_THAT(Message(st), HasSubstr("is not an endpoint"));

  Config flag;
  flag.otlp_endpoint = "not a url";  // --otlp-endpoint
  auto opts = pipeline::TraceExporterOptions(flag);
  ASSERT_FALSE(opts.ok());
  EXPECT_THAT(Message(opts.status()), HasSubstr("--otlp-endpoint"));

  setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "not a url", 1);
  opts = pipeline::ExporterOptionsFor(Config{}, otlp::Signal::kMetrics);
  unsetenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT");
  ASSERT_FALSE(opts.ok());
  EXPECT_THAT(Message(opts.status()), HasSubstr("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: OTLP endpoint \"not a url\""));

  // Real hosts still pass: names with '-', '_' and digits, IPv4, IPv6 with a zone.
  for (const char* ok : {"http://otel-collector_1.ns.svc:4317", "10.0.0.1:4317", "https://[fe80::1%eth0]:4317",
                         "unix:/run/otel.sock"})
    EXPECT_TRUE(ApplyEnvironment({{"OTEL_EXPORTER_OTLP_ENDPOINT", ok}}, &c).ok()) << ok;
}

TEST(ConfigErrors, DuplicateKeysAreRefused) {
  Config c;
  auto st = Load("log:\n  level: info\n  level: debug\n", &c);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(Message(st), HasSubstr("'log.level' appears twice"));
}

// Found by fuzz.config: a mapping or list used as a key inside a layer rule or the
// headers mapping threw out of yaml-cpp and ended the daemon.
TEST(ConfigErrors, KeysThatAreNotNamesAreRefused) {
  Config c;
  for (const char* text : {"layers:\n  rules:\n    - {[a]: b}\n",
                           "exporter:\n  otlp:\n    headers: {[a]: b}\n", "{[a]: b}\n"}) {
    auto st = Load(text, &c);
    ASSERT_FALSE(st.ok()) << text;
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(Message(st), HasSubstr("not a plain name")) << text;
  }
}

TEST(ConfigErrors, ValuesNameKeyValueAndFix) {
  struct Case {
    const char* yaml;
    const char* want;
  } cases[] = {
      {"exporter: {queue_size: -5}", "'exporter.queue_size': value '-5' is not valid; write a non-negative integer"},
      {"exporter: {queue_size: lots}", "value 'lots'"},
      {"exporter: {queue_size: [1, 2]}", "value '<a list>'"},
      {"exporter: {otlp: {insecure: maybe}}", "'exporter.otlp.insecure': value 'maybe' is not valid; write true or false"},
      {"exporter: {otlp: {compression: zstd}}", "value 'zstd' is not valid; write gzip or none"},
      {"exporter: {otlp: {endpoint: 'ftp://x:1'}}", "'exporter.otlp.endpoint'"},
      {"exporter: {otlp: {endpoint: 'http://x:4318/v1/traces'}}", "OTLP/HTTP"},
      {"exporter: {otlp: {headers: 'novalue'}}", "'exporter.otlp.headers'"},
      {"exporter: {otlp: {certificate: /nonexistent/ca.pem}}",
       "'exporter.otlp.certificate': file '/nonexistent/ca.pem' cannot be read"},
      {"exporter: 5", "'exporter' must be a mapping"},
  };
  for (const auto& k : cases) {
    Config c;
    auto st = Load(k.yaml, &c);
    EXPECT_FALSE(st.ok()) << k.yaml;
    EXPECT_THAT(Message(st), HasSubstr(k.want)) << k.yaml;
  }
}

TEST(ConfigErrors, ValidateNamesTheKeyAndTheFix) {
  struct Case {
    void (*mutate)(Config*);
    const char* want;
  } cases[] = {
      {[](Config* c) { c->ringbuf_bytes = 5000; }, "probes.ringbuf_bytes = 5000 must be a power of two"},
      {[](Config* c) { c->capture_bytes = 9000; }, "probes.capture_bytes = 9000"},
      {[](Config* c) { c->export_queue_size = 10; }, "exporter.queue_size (10) must be ≥ exporter.batch_size"},
      {[](Config* c) { c->export_queue_bytes = 100; }, "exporter.queue_bytes = 100"},
      {[](Config* c) { c->export_timeout_ms = 0; }, "exporter.timeout_ms"},
      {[](Config* c) { c->retry_max_attempts = 0; }, "use 1 for no retries"},
      {[](Config* c) { c->retry_max_backoff_ms = 1; }, "exporter.retry.initial_backoff_ms"},
      {[](Config* c) { c->otlp_client_key = "/k.pem"; }, "must be set together"},
      {[](Config* c) { c->log_level = "loud"; }, "log.level = 'loud'"},
  };
  for (const auto& k : cases) {
    Config c;
    k.mutate(&c);
    auto st = Validate(c);
    EXPECT_FALSE(st.ok()) << k.want;
    EXPECT_THAT(Message(st), HasSubstr(k.want));
  }
  EXPECT_TRUE(Validate(Config{}).ok()) << "the defaults must validate";
}

TEST(ConfigEnvironment, OverridesTheFileAndNamesBadVariables) {
  Config c;
  ASSERT_TRUE(Load("exporter: {otlp: {endpoint: 'http://file:4317', compression: none}, timeout_ms: 111}", &c).ok());
  ASSERT_TRUE(ApplyEnvironment({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4317"},
                                {"OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"},
                                {"OTEL_EXPORTER_OTLP_TIMEOUT", "222"},
                                {"OTEL_BSP_MAX_QUEUE_SIZE", "3000"},
                                {"OTEL_EXPORTER_OTLP_HEADERS", ""}},  // empty = unset
                               &c)
                  .ok());
  EXPECT_EQ(c.otlp_endpoint, "http://env:4317");
  EXPECT_EQ(c.otlp_compression, "gzip");
  EXPECT_EQ(c.export_timeout_ms, 222u);
  EXPECT_EQ(c.export_queue_size, 3000u);

  // The traces-specific endpoint beats the generic one.
  ASSERT_TRUE(ApplyEnvironment({{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:1"},
                                {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:2"}},
                               &c)
                  .ok());
  EXPECT_EQ(c.otlp_endpoint, "http://traces:2");

  auto st = ApplyEnvironment({{"OTEL_EXPORTER_OTLP_INSECURE", "yes"}}, &c);
  EXPECT_THAT(Message(st), HasSubstr("OTEL_EXPORTER_OTLP_INSECURE='yes' is not valid; write true or false"));
  st = ApplyEnvironment({{"OTEL_EXPORTER_OTLP_TIMEOUT", "10s"}}, &c);
  EXPECT_THAT(Message(st), HasSubstr("OTEL_EXPORTER_OTLP_TIMEOUT='10s'"));
  st = ApplyEnvironment({{"OTEL_EXPORTER_OTLP_CERTIFICATE", "/nope.pem"}}, &c);
  EXPECT_THAT(Message(st), HasSubstr("OTEL_EXPORTER_OTLP_CERTIFICATE='/nope.pem'"));
}

// The whole chain as isotraced runs it: file, then the process environment, then a flag.
TEST(ConfigPrecedence, DefaultsFileEnvironmentFlags) {
  Config c;
  EXPECT_EQ(c.export_timeout_ms, 10000u) << "default";
  ASSERT_TRUE(Load("exporter: {timeout_ms: 1500, otlp: {endpoint: 'http://file:4317'}}", &c).ok());
  EXPECT_EQ(c.export_timeout_ms, 1500u) << "file beats default";
  ASSERT_TRUE(ApplyEnvironment({{"OTEL_EXPORTER_OTLP_TIMEOUT", "2500"}}, &c).ok());
  EXPECT_EQ(c.export_timeout_ms, 2500u) << "environment beats file";
  EXPECT_EQ(c.otlp_endpoint, "http://file:4317") << "file stays where env is silent";
  c.otlp_endpoint = "http://flag:4317";  // what main.cc does for --otlp-endpoint

  // A traces-specific variable in the process environment must still lose to the flag.
  setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces-env:4317", 1);
  setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "3500", 1);
  auto opts = pipeline::TraceExporterOptions(c);
  unsetenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  unsetenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT");
  ASSERT_TRUE(opts.ok()) << opts.status();
  EXPECT_EQ(opts->endpoint.target, "flag:4317");
  EXPECT_TRUE(opts->endpoint.insecure);
  EXPECT_EQ(opts->timeout, absl::Milliseconds(3500)) << "signal-specific variable beats generic";
}

TEST(ConfigPrecedence, SchemeLessEndpointIsTlsUnlessInsecure) {
  Config c;
  c.otlp_endpoint = "collector:4317";
  auto opts = pipeline::TraceExporterOptions(c);
  ASSERT_TRUE(opts.ok()) << opts.status();
  EXPECT_FALSE(opts->endpoint.insecure);
  c.otlp_insecure = true;
  opts = pipeline::TraceExporterOptions(c);
  ASSERT_TRUE(opts.ok()) << opts.status();
  EXPECT_TRUE(opts->endpoint.insecure);
}

TEST(ConfigLocate, KeysLoadAndBadValuesNameTheFix) {
  Config c;
  auto st = Load(R"(
locate:
  enabled: true
  slow_factor: 1.5
  shift_factor: 1.2
  lone_factor: 3
  slow_min_ms: 10
  baseline_samples: 128
  baseline_min_samples: 32
  hold_ms: 300
  max_wait_ms: 10000
  max_held_spans: 1000
  max_baselines: 100
  verdicts: 50
)",
                 &c);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_DOUBLE_EQ(c.locate_slow_factor, 1.5);
  EXPECT_DOUBLE_EQ(c.locate_shift_factor, 1.2);
  EXPECT_DOUBLE_EQ(c.locate_lone_factor, 3.0);
  EXPECT_EQ(c.locate_slow_min_ms, 10u);
  EXPECT_EQ(c.locate_baseline_min_samples, 32u);
  EXPECT_EQ(c.locate_hold_ms, 300u);
  EXPECT_EQ(c.locate_verdicts, 50u);
  EXPECT_TRUE(Validate(c).ok());

  Config bad;
  st = Load("locate: {slow_factor: 0.9}\n", &bad);
  EXPECT_THAT(Message(st), HasSubstr("locate.slow_factor"));
  EXPECT_THAT(Message(st), HasSubstr("≥ 1.0"));
  st = Load("locate: {slow_factor: fast}\n", &bad);
  EXPECT_FALSE(st.ok());
  Config z;
  st = Load("correlate: {conntrack_zones: [7, 12, 7]}\n", &z);
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(z.conntrack_zones, (std::vector<uint16_t>{7, 12}));
  for (const char* v : {"[0]", "[70000]", "[-1]", "7", "[a]", "[[1]]",
                        "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]"}) {
    st = Load(std::string("correlate: {conntrack_zones: ") + v + "}\n", &bad);
    EXPECT_THAT(Message(st), HasSubstr("correlate.conntrack_zones")) << v;
    EXPECT_THAT(Message(st), HasSubstr("1 to 65535")) << v;
  }
  st = Load("locate: {shift_factor: 0.5}\n", &bad);
  EXPECT_THAT(Message(st), HasSubstr("locate.shift_factor"));
  EXPECT_THAT(Message(st), HasSubstr("0 (off)"));
  st = Load("locate: {shift_factor: 0}\n", &bad);
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ(bad.locate_shift_factor, 0.0);
  st = Load("locate: {lone_factor: 0.5}\n", &bad);
  EXPECT_THAT(Message(st), HasSubstr("locate.lone_factor"));
  EXPECT_THAT(Message(st), HasSubstr("0 (judge every slow trace)"));
  st = Load("locate: {lone_factor: [4]}\n", &bad);
  EXPECT_THAT(Message(st), HasSubstr("locate.lone_factor"));
  st = Load("locate: {lone_factor: 0}\n", &bad);
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ(bad.locate_lone_factor, 0.0);

  Config v;
  v.locate_hold_ms = 2500;
  EXPECT_THAT(Message(Validate(v)), HasSubstr("locate.hold_ms"));
  v = Config();
  v.locate_baseline_min_samples = 300;  // more than baseline_samples (256)
  EXPECT_THAT(Message(Validate(v)), HasSubstr("locate.baseline_min_samples"));
  v = Config();
  v.locate_max_wait_ms = 100;  // below hold_ms
  EXPECT_THAT(Message(Validate(v)), HasSubstr("locate.max_wait_ms"));
}

}  // namespace
}  // namespace isotrace::config
