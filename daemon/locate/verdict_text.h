#pragma once
// One-line renderings of a verdict, shared by the daemon's log line and the OTLP log
// record's body and attributes.

#include <string>

#include "daemon/locate/verdict.h"

namespace isotrace::locate {

// "slow: svc-b kernel/runqueue explains 74% of 120.3 ms (usual 20.1 ms)"
std::string Summary(const Verdict& v);
// "svc-b/kernel/runqueue +80.1 ms (95.0 ms vs 14.9 ms); ..." (at most `max` entries)
std::string EvidenceText(const Verdict& v, size_t max = 5);
// "nginx SERVER 120.3 ms → nginx CLIENT 118.0 ms → svc-b SERVER 117.1 ms"
std::string PathText(const Verdict& v);

}  // namespace isotrace::locate
