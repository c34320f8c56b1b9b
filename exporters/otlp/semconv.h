#pragma once
// Every attribute key (and fixed value) isotrace writes, in one place. The span's own
// measures travel typed (correlate::Span's breakdown, net, incidents, verdict); these
// names are attached only where a record leaves the daemon: the OTLP encoders, the local
// API's conversion and the metrics' series labels. The HTTP ones follow the stable
// OpenTelemetry HTTP semantic conventions (v1.23+); changing any name is a change of the
// public contract in DESIGN.md.

#include <string_view>

namespace isotrace::otlp::semconv {

// Span attributes (HTTP semantic conventions).
inline constexpr std::string_view kHttpRequestMethod = "http.request.method";
inline constexpr std::string_view kHttpRequestMethodOriginal = "http.request.method_original";
inline constexpr std::string_view kHttpResponseStatusCode = "http.response.status_code";
inline constexpr std::string_view kUrlPath = "url.path";
inline constexpr std::string_view kUrlQuery = "url.query";
inline constexpr std::string_view kUrlScheme = "url.scheme";
inline constexpr std::string_view kUrlFull = "url.full";
inline constexpr std::string_view kNetworkProtocolName = "network.protocol.name";
inline constexpr std::string_view kNetworkProtocolVersion = "network.protocol.version";
inline constexpr std::string_view kServerAddress = "server.address";
inline constexpr std::string_view kServerPort = "server.port";
inline constexpr std::string_view kClientAddress = "client.address";
inline constexpr std::string_view kClientPort = "client.port";
inline constexpr std::string_view kErrorType = "error.type";

// Span attributes (RPC semantic conventions; gRPC over HTTP/2).
inline constexpr std::string_view kRpcSystem = "rpc.system";
inline constexpr std::string_view kRpcService = "rpc.service";
inline constexpr std::string_view kRpcMethod = "rpc.method";
inline constexpr std::string_view kRpcGrpcStatusCode = "rpc.grpc.status_code";

// isotrace's span attributes (integers in ns unless named otherwise; DESIGN.md).
inline constexpr std::string_view kAppOncpuNs = "isotrace.app.oncpu_ns";
inline constexpr std::string_view kKernelRunqNs = "isotrace.kernel.runq_ns";
inline constexpr std::string_view kContainerThrottledNs = "isotrace.container.throttled_ns";
inline constexpr std::string_view kKernelBlkioNs = "isotrace.kernel.blkio_ns";
inline constexpr std::string_view kKernelMemstallNs = "isotrace.kernel.memstall_ns";
inline constexpr std::string_view kVmStealNs = "isotrace.vm.steal_ns";
inline constexpr std::string_view kOffcpuOtherNs = "isotrace.offcpu_other_ns";
inline constexpr std::string_view kDownstreamNs = "isotrace.downstream_ns";
inline constexpr std::string_view kDownstreamUnseenNs = "isotrace.downstream.unseen_ns";
inline constexpr std::string_view kNetConnectNs = "isotrace.net.connect_ns";
inline constexpr std::string_view kNetRetransmits = "isotrace.net.retransmits";
inline constexpr std::string_view kNetSrttUs = "isotrace.net.srtt_us";
inline constexpr std::string_view kNetListenDrops = "isotrace.net.listen_drops";
// Spans seen at a sandbox's network edge (docs/layers.md): where the span was observed
// ("sandbox_edge"; absent: at the process's sockets) and the breakdown's scope
// ("sandbox": the parts are the sandbox's threads' time in the window, not the request's).
inline constexpr std::string_view kObservedAt = "isotrace.observed_at";
inline constexpr std::string_view kBreakdownScope = "isotrace.breakdown.scope";
inline constexpr std::string_view kVerdictService = "isotrace.verdict.service";
inline constexpr std::string_view kVerdictLayer = "isotrace.verdict.layer";
inline constexpr std::string_view kVerdictCause = "isotrace.verdict.cause";
inline constexpr std::string_view kVerdictShare = "isotrace.verdict.share";
inline constexpr std::string_view kVerdictReason = "isotrace.verdict.reason";

// Span event (kernel incident) names and their attributes. Every incident carries
// isotrace.verdict.layer: the layer it belongs to.
inline constexpr std::string_view kEventTcpRetransmit = "tcp_retransmit";
inline constexpr std::string_view kEventTcpReset = "tcp_reset";
inline constexpr std::string_view kEventPacketDrop = "packet_drop";
inline constexpr std::string_view kEventOomKill = "oom_kill";
inline constexpr std::string_view kEventThrottling = "throttling";
inline constexpr std::string_view kNetResetBy = "isotrace.net.reset_by";  // peer | local
inline constexpr std::string_view kNetSide = "isotrace.net.side";         // peer
inline constexpr std::string_view kContainerThrottleCount = "isotrace.container.throttle_count";

// Verdict log records (one per trace verdict), besides the kVerdict* keys above.
inline constexpr std::string_view kEventName = "event.name";
inline constexpr std::string_view kEventNameVerdict = "isotrace.verdict";
inline constexpr std::string_view kVerdictRootService = "isotrace.verdict.root_service";
inline constexpr std::string_view kVerdictDurationNs = "isotrace.verdict.duration_ns";
inline constexpr std::string_view kVerdictBaselineNs = "isotrace.verdict.baseline_ns";
inline constexpr std::string_view kVerdictValueNs = "isotrace.verdict.value_ns";
inline constexpr std::string_view kVerdictExcessNs = "isotrace.verdict.excess_ns";
inline constexpr std::string_view kVerdictEvidence = "isotrace.verdict.evidence";
inline constexpr std::string_view kVerdictPath = "isotrace.verdict.path";
inline constexpr std::string_view kVerdictSpans = "isotrace.verdict.spans";

// Resource attributes (daemon/layers builds them once per process).
inline constexpr std::string_view kServiceName = "service.name";
inline constexpr std::string_view kServiceVersion = "service.version";
inline constexpr std::string_view kHostName = "host.name";
inline constexpr std::string_view kProcessPid = "process.pid";
inline constexpr std::string_view kProcessParentPid = "process.parent_pid";
inline constexpr std::string_view kProcessExecutableName = "process.executable.name";
inline constexpr std::string_view kProcessExecutablePath = "process.executable.path";
inline constexpr std::string_view kProcessCommand = "process.command";
inline constexpr std::string_view kProcessCommandLine = "process.command_line";
inline constexpr std::string_view kProcessCommandArgs = "process.command_args";
inline constexpr std::string_view kProcessCreationTime = "process.creation.time";
inline constexpr std::string_view kContainerId = "container.id";
inline constexpr std::string_view kContainerRuntime = "container.runtime";
inline constexpr std::string_view kContainerName = "container.name";
inline constexpr std::string_view kK8sPodUid = "k8s.pod.uid";
inline constexpr std::string_view kK8sPodName = "k8s.pod.name";
inline constexpr std::string_view kK8sNamespaceName = "k8s.namespace.name";
inline constexpr std::string_view kK8sContainerName = "k8s.container.name";
inline constexpr std::string_view kCloudProvider = "cloud.provider";
inline constexpr std::string_view kCloudPlatform = "cloud.platform";
inline constexpr std::string_view kStack = "isotrace.stack";
inline constexpr std::string_view kK8sQosClass = "isotrace.k8s.qos_class";
inline constexpr std::string_view kSystemdUnit = "isotrace.systemd.unit";
inline constexpr std::string_view kSandboxKind = "isotrace.sandbox.kind";
inline constexpr std::string_view kWasmRuntime = "isotrace.wasm.runtime";
inline constexpr std::string_view kWasmModule = "isotrace.wasm.module";
inline constexpr std::string_view kWasmModuleCount = "isotrace.wasm.module_count";
inline constexpr std::string_view kVmHypervisor = "isotrace.vm.hypervisor";
inline constexpr std::string_view kVmVmm = "isotrace.vm.vmm";

// Metric point attributes (daemon/metrics; docs/metrics.md).
inline constexpr std::string_view kLayer = "isotrace.layer";
inline constexpr std::string_view kCause = "isotrace.cause";
inline constexpr std::string_view kIncident = "isotrace.incident";
inline constexpr std::string_view kStatusClass = "isotrace.status_class";
inline constexpr std::string_view kSpanKind = "span.kind";
inline constexpr std::string_view kCpuMode = "cpu.mode";
inline constexpr std::string_view kMetricOverflow = "otel.metric.overflow";
inline constexpr std::string_view kProbe = "probe";      // self-telemetry: which probe
inline constexpr std::string_view kReason = "reason";    // ... why lost or dropped
inline constexpr std::string_view kOutcome = "outcome";  // ... links and locate outcomes

// Values.
inline constexpr std::string_view kSchemeHttp = "http";
inline constexpr std::string_view kSchemeHttps = "https";
inline constexpr std::string_view kTlsProtocolVersion = "tls.protocol.version";
inline constexpr std::string_view kProtocolHttp = "http";
// A method outside the registered set is reported as "_OTHER" (original kept in
// http.request.method_original) and the span is named "HTTP".
inline constexpr std::string_view kMethodOther = "_OTHER";
inline constexpr std::string_view kSpanNameUnknownMethod = "HTTP";

// The instrumentation scope every isotrace span and log record carries.
inline constexpr std::string_view kScopeName = "isotrace";

// Schema of the conventions above; written as schema_url on every ScopeSpans/ScopeLogs.
inline constexpr std::string_view kSchemaUrl = "https://opentelemetry.io/schemas/1.26.0";

}  // namespace isotrace::otlp::semconv
