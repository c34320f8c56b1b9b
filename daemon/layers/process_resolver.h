#pragma once
// pid → process identity → OTLP resource (service.name, process.*, host.name).
// Cached by (tgid, start time); an exec (new comm) re-resolves; bounded.

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>

#include "daemon/correlate/span.h"

namespace isotrace::layers {

struct ProcessInfo {
  uint32_t pid = 0;
  std::string comm;             // as the kernel reported it with the event
  std::string executable_name;  // basename of /proc/<pid>/exe, else comm
  std::string executable_path;
  std::string command_line;     // argv joined by spaces (bounded)
  std::string service_name;     // OTEL_SERVICE_NAME from the process environment, else executable
  bool exited = false;          // /proc/<pid> was gone when resolved: only comm is known
};

class ProcessResolver {
 public:
  explicit ProcessResolver(std::string proc_root = "/proc", size_t max_entries = 8192);

  // The resource for a process, resolved once per (tgid, start time, comm).
  std::shared_ptr<const correlate::Resource> Resolve(const correlate::ProcessKey& key,
                                                     std::string_view comm);
  ProcessInfo ReadProcess(uint32_t pid, std::string_view comm) const;

  const std::string& host_name() const { return host_name_; }
  size_t size() const { return cache_.size(); }
  // Extra resource attributes on every resource (OTEL_RESOURCE_ATTRIBUTES).
  void SetCommonAttributes(std::vector<correlate::Attribute> attrs) { common_ = std::move(attrs); }

 private:
  struct Entry {
    correlate::ProcessKey key;
    std::string comm;
    std::shared_ptr<const correlate::Resource> resource;
    std::list<uint64_t>::iterator lru;
  };
  static uint64_t Hash(const correlate::ProcessKey& k) {
    return (uint64_t{k.tgid} << 40) ^ k.start_ns;
  }
  std::string proc_root_;
  size_t max_entries_;
  std::string host_name_;
  std::vector<correlate::Attribute> common_;
  std::unordered_map<uint64_t, Entry> cache_;
  std::list<uint64_t> lru_;
};

// Parses OTEL_RESOURCE_ATTRIBUTES ("k1=v1,k2=v2", values percent-decoded).
std::vector<correlate::Attribute> ParseResourceAttributes(std::string_view value);

}  // namespace isotrace::layers
