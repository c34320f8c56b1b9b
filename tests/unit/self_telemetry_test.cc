// Self-telemetry from the probes' own counters to the two wire formats: every loss a
// probe counts (the l7 probe's and the proc probe's) is an isotrace.probe.events.lost
// series with its `probe` and `reason`, in /metrics and in OTLP metrics alike.

#include <string>

#include "daemon/api/services.h"
#include "exporters/otlp/metrics_encode.h"
#include "exporters/prometheus/text.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace isotrace::api {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

metrics::Snapshot Collect(const metrics::SelfStats& s) {
  metrics::AggregatorOptions ao;
  ao.process_stats = false;
  ao.now_unix_ns = [] { return uint64_t{5000}; };
  metrics::Aggregator agg(std::move(ao));
  agg.UpdateSelf(s);
  return agg.Collect();
}

probes::L7Counters L7() {
  probes::L7Counters l7;
  l7.received = 100;
  l7.ringbuf_drops = 1;
  return l7;
}

probes::ProcCounters Proc() {
  probes::ProcCounters proc;
  proc.received = 40;
  proc.ringbuf_drops = 2;
  proc.path_too_long = 3;
  proc.inflight_full = 4;
  proc.malformed = 5;
  return proc;
}

TEST(SelfTelemetry, ProcProbeLossesReachPrometheusText) {
  const probes::ProcCounters proc = Proc();
  const std::string text =
      prometheus::RenderText(Collect(SelfStatsFrom(L7(), &proc, correlate::TrackerStats{}, nullptr)));
  EXPECT_THAT(text, HasSubstr("isotrace_probe_events_total{probe=\"proc\",service_name=\"isotraced\"} 40"));
  EXPECT_THAT(text, HasSubstr("isotrace_probe_events_lost_total{probe=\"proc\",reason=\"ringbuf_full\",service_name=\"isotraced\"} 2"));
  EXPECT_THAT(text, HasSubstr("isotrace_probe_events_lost_total{probe=\"proc\",reason=\"path_too_long\",service_name=\"isotraced\"} 3"));
  EXPECT_THAT(text, HasSubstr("isotrace_probe_events_lost_total{probe=\"proc\",reason=\"inflight_full\",service_name=\"isotraced\"} 4"));
  EXPECT_THAT(text, HasSubstr("isotrace_probe_events_lost_total{probe=\"proc\",reason=\"malformed\",service_name=\"isotraced\"} 5"));
  EXPECT_THAT(text, HasSubstr("isotrace_probe_events_lost_total{probe=\"l7\",reason=\"ringbuf_full\",service_name=\"isotraced\"} 1"));
}

TEST(SelfTelemetry, ProcProbeLossesReachOtlp) {
  const probes::ProcCounters proc = Proc();
  otlp::otlp_collector_metrics::ExportMetricsServiceRequest req;
  ASSERT_TRUE(otlp::EncodeMetrics(Collect(SelfStatsFrom(L7(), &proc, correlate::TrackerStats{}, nullptr)),
                                  otlp::Scope{}, &req)
                  .ok());
  std::map<std::string, int64_t> lost;  // "<probe>/<reason>" → value
  for (const auto& rm : req.resource_metrics())
    for (const auto& sm : rm.scope_metrics())
      for (const auto& m : sm.metrics()) {
        if (m.name() != "isotrace.probe.events.lost") continue;
        EXPECT_TRUE(m.sum().is_monotonic());
        for (const auto& p : m.sum().data_points()) {
          std::string probe, reason;
          for (const auto& a : p.attributes()) {
            if (a.key() == "probe") probe = a.value().string_value();
            if (a.key() == "reason") reason = a.value().string_value();
          }
          lost[probe + "/" + reason] = p.as_int();
        }
      }
  EXPECT_EQ(lost["proc/ringbuf_full"], 2);
  EXPECT_EQ(lost["proc/path_too_long"], 3);
  EXPECT_EQ(lost["proc/inflight_full"], 4);
  EXPECT_EQ(lost["proc/malformed"], 5);
  EXPECT_EQ(lost["l7/ringbuf_full"], 1);
}

// Without a proc probe (it is optional) there is no proc series, rather than zeros that
// would claim it ran and lost nothing.
TEST(SelfTelemetry, NoProcProbeNoProcSeries) {
  const std::string text =
      prometheus::RenderText(Collect(SelfStatsFrom(L7(), nullptr, correlate::TrackerStats{}, nullptr)));
  EXPECT_THAT(text, Not(HasSubstr("probe=\"proc\"")));
  EXPECT_THAT(text, HasSubstr("isotrace_probe_events_total{probe=\"l7\",service_name=\"isotraced\"} 100"));
}

}  // namespace
}  // namespace isotrace::api
