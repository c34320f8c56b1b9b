#pragma once
// Attribute keys and fixed values the OTLP encoder writes, in one place. The HTTP ones
// follow the stable OpenTelemetry HTTP semantic conventions (v1.23+); changing one is a
// change of the public contract in DESIGN.md.

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

// Values.
inline constexpr std::string_view kSchemeHttp = "http";
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
