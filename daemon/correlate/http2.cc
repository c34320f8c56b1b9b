#include "daemon/correlate/http2.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "absl/strings/escaping.h"

namespace isotrace::correlate {

namespace {

// RFC 9113 §6: frame types and flags the decoder acts on.
enum FrameType : uint8_t {
  kData = 0,
  kHeaders = 1,
  kPriority = 2,
  kRstStream = 3,
  kSettings = 4,
  kPushPromise = 5,
  kPing = 6,
  kGoaway = 7,
  kWindowUpdate = 8,
  kContinuation = 9,
};
constexpr uint8_t kFlagEndStream = 0x1;
constexpr uint8_t kFlagAck = 0x1;
constexpr uint8_t kFlagEndHeaders = 0x4;
constexpr uint8_t kFlagPadded = 0x8;
constexpr uint8_t kFlagPriority = 0x20;
constexpr uint16_t kSettingsHeaderTableSize = 0x1;
constexpr uint16_t kSettingsMaxFrameSize = 0x5;
constexpr uint32_t kDefaultMaxFrameSize = 16384;
constexpr uint32_t kMaxMaxFrameSize = 16777215;

uint32_t Be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

struct FrameHeader {
  uint32_t length;
  uint8_t type;
  uint8_t flags;
  uint32_t stream;
  bool reserved_bit;
};

FrameHeader ParseHeader(const uint8_t* h) {
  return {uint32_t{h[0]} << 16 | uint32_t{h[1]} << 8 | h[2], h[3], h[4], Be32(h + 5) & 0x7fffffffu,
          (h[5] & 0x80) != 0};
}

// The stateless part of RFC 9113's frame rules (stream id zero or not, fixed lengths).
// Empty when the header is well formed, else what is wrong.
std::string_view CheckHeader(const FrameHeader& f) {
  switch (f.type) {
    case kData:
    case kHeaders:
    case kContinuation:
      return f.stream == 0 ? "DATA/HEADERS/CONTINUATION on stream 0" : "";
    case kPriority:
      return f.stream == 0 || f.length != 5 ? "bad PRIORITY" : "";
    case kRstStream:
      return f.stream == 0 || f.length != 4 ? "bad RST_STREAM" : "";
    case kSettings:
      if (f.stream != 0) return "SETTINGS on a stream";
      if (f.flags & kFlagAck) return f.length != 0 ? "SETTINGS ACK with a payload" : "";
      return f.length % 6 != 0 ? "SETTINGS length not a multiple of 6" : "";
    case kPushPromise:
      return f.stream == 0 || f.length < 4 ? "bad PUSH_PROMISE" : "";
    case kPing:
      return f.stream != 0 || f.length != 8 ? "bad PING" : "";
    case kGoaway:
      return f.stream != 0 || f.length < 8 ? "bad GOAWAY" : "";
    case kWindowUpdate:
      return f.length != 4 ? "bad WINDOW_UPDATE" : "";
    default:
      return "";  // extension frames are legal and ignored (RFC 9113 §5.5)
  }
}

void StoreCut(std::string* dst, std::string_view v, size_t max) { dst->assign(v.substr(0, max)); }

int ParseInt(std::string_view v, int fallback) {
  int n = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  return ec == std::errc() && ptr == v.data() + v.size() ? n : fallback;
}

}  // namespace

std::string GrpcStatusName(int code) {
  // grpc/include/grpcpp/support/status_code_enum.h; the names error.type carries.
  static constexpr std::string_view kNames[] = {
      "OK",        "CANCELLED",          "UNKNOWN",           "INVALID_ARGUMENT",    "DEADLINE_EXCEEDED",
      "NOT_FOUND", "ALREADY_EXISTS",     "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",  "FAILED_PRECONDITION",
      "ABORTED",   "OUT_OF_RANGE",       "UNIMPLEMENTED",     "INTERNAL",            "UNAVAILABLE",
      "DATA_LOSS", "UNAUTHENTICATED"};
  if (code >= 0 && code < static_cast<int>(std::size(kNames))) return std::string(kNames[code]);
  return std::to_string(code);
}

std::string_view Http2Exchange::RpcService() const {
  if (!grpc || path.size() < 4 || path[0] != '/') return {};
  size_t slash = path.find('/', 1);
  if (slash == std::string::npos || slash == 1 || slash + 1 == path.size() ||
      path.find('/', slash + 1) != std::string::npos)
    return {};
  return std::string_view(path).substr(1, slash - 1);
}

std::string_view Http2Exchange::RpcMethod() const {
  std::string_view svc = RpcService();
  if (svc.empty()) return {};
  return std::string_view(path).substr(svc.size() + 2);
}

void Http2Connection::Block::Clear() {
  for (std::string* s : {&method, &scheme, &authority, &host, &path, &status, &content_type, &grpc_status,
                         &grpc_message, &traceparent, &tracestate, &user_agent})
    s->clear();
}

// Every block starts with a 16-byte header holding its class (kClasses: a block from
// malloc, too large for a class), which keeps the payload 16-byte aligned like malloc's.
namespace {
constexpr size_t kPoolHeader = 16;
constexpr uint8_t kPoolLarge = 0xff;
constexpr size_t kPoolClasses = 4;
size_t PoolClass(size_t size) {
  const size_t need = size + kPoolHeader;
  if (need <= 64) return 0;
  if (need <= 128) return 1;
  if (need <= 256) return 2;
  if (need <= 512) return 3;
  return kPoolClasses;
}
}  // namespace

void* HpackPool::Alloc(size_t size) {
  static_assert(kClasses == kPoolClasses);
  if (size > SIZE_MAX - kPoolHeader) return nullptr;
  const size_t c = PoolClass(size);
  uint8_t* block;
  if (c < kClasses && free_[c]) {
    FreeBlock* b = free_[c];
    free_[c] = b->next;
    free_count_[c]--;
    block = reinterpret_cast<uint8_t*>(b);
  } else {
    block = static_cast<uint8_t*>(std::malloc(c < kClasses ? size_t{64} << c : size + kPoolHeader));
    if (!block) return nullptr;
  }
  block[0] = c < kClasses ? static_cast<uint8_t>(c) : kPoolLarge;
  return block + kPoolHeader;
}

void HpackPool::Free(void* p) {
  if (!p) return;
  uint8_t* block = static_cast<uint8_t*>(p) - kPoolHeader;
  const uint8_t c = block[0];
  if (c == kPoolLarge || free_count_[c] >= kMaxFreePerClass) {
    std::free(block);
    return;
  }
  auto* b = reinterpret_cast<FreeBlock*>(block);
  b->next = free_[c];
  free_[c] = b;
  free_count_[c]++;
}

void* HpackPool::Realloc(void* p, size_t size) {
  if (!p) return Alloc(size);
  if (size == 0) {
    Free(p);
    return nullptr;
  }
  uint8_t* block = static_cast<uint8_t*>(p) - kPoolHeader;
  const uint8_t c = block[0];
  if (c == kPoolLarge) {
    if (PoolClass(size) < kClasses) {  // shrinks into a class: a pool block from now on
      void* q = Alloc(size);
      if (q) {
        std::memcpy(q, p, size);
        std::free(block);
      }
      return q;
    }
    if (size > SIZE_MAX - kPoolHeader) return nullptr;
    auto* grown = static_cast<uint8_t*>(std::realloc(block, size + kPoolHeader));
    return grown ? grown + kPoolHeader : nullptr;
  }
  const size_t capacity = (size_t{64} << c) - kPoolHeader;
  if (size <= capacity) return p;
  void* q = Alloc(size);
  if (!q) return nullptr;  // p stays valid, as realloc's contract says
  std::memcpy(q, p, capacity);
  Free(p);
  return q;
}

HpackPool::HpackPool()
    : mem_{
          this,
          [](size_t size, void* pool) { return static_cast<HpackPool*>(pool)->Alloc(size); },
          [](void* p, void* pool) { static_cast<HpackPool*>(pool)->Free(p); },
          [](size_t nmemb, size_t size, void* pool) -> void* {
            if (size != 0 && nmemb > SIZE_MAX / size) return nullptr;
            void* p = static_cast<HpackPool*>(pool)->Alloc(nmemb * size);
            if (p) std::memset(p, 0, nmemb * size);
            return p;
          },
          [](void* p, size_t size, void* pool) { return static_cast<HpackPool*>(pool)->Realloc(p, size); },
      } {}

size_t HpackPool::idle_blocks() const {
  size_t n = 0;
  for (uint16_t c : free_count_) n += c;
  return n;
}

HpackPool::~HpackPool() {
  for (FreeBlock*& head : free_) {
    while (head) {
      FreeBlock* next = head->next;
      std::free(head);
      head = next;
    }
  }
}

Http2Connection::Http2Connection(const Limits& limits) : limits_(limits) {
  dirs_[static_cast<int>(Side::kClient)].st = Dir::St::kPreface;
  for (Dir& d : dirs_) {
    // Only fails on out-of-memory; a null inflater fails the first header block instead.
    if (nghttp2_hd_inflate_new2(&d.inflater, pool_.mem()) != 0) d.inflater = nullptr;
  }
}

Http2Connection::~Http2Connection() {
  for (Dir& d : dirs_)
    if (d.inflater) nghttp2_hd_inflate_del(d.inflater);
}

std::string_view Http2Connection::FailureName(Failure f) {
  switch (f) {
    case Failure::kNone: return "none";
    case Failure::kMissedStart: return "missed_start";
    case Failure::kGap: return "gap";
    case Failure::kProtocol: return "protocol";
    case Failure::kHpack: return "hpack";
    case Failure::kLimit: return "limit";
  }
  return "unknown";
}

bool Http2Connection::LooksLikePreface(std::string_view captured) {
  const size_t n = std::min(captured.size(), kHttp2Preface.size());
  return n >= 4 && captured.substr(0, n) == kHttp2Preface.substr(0, n);
}

bool Http2Connection::LooksLikeSettings(std::string_view captured) {
  if (captured.size() < 9) return false;
  FrameHeader f = ParseHeader(reinterpret_cast<const uint8_t*>(captured.data()));
  return f.type == kSettings && f.flags == 0 && !f.reserved_bit && f.length <= kDefaultMaxFrameSize &&
         CheckHeader(f).empty();
}

bool Http2Connection::LooksLikeFrames(std::string_view captured) {
  const auto* p = reinterpret_cast<const uint8_t*>(captured.data());
  size_t pos = 0;
  int frames = 0;
  while (pos + 9 <= captured.size()) {
    FrameHeader f = ParseHeader(p + pos);
    // Known types only and the default maximum frame size: random bytes pass one
    // header with odds of about 1 in 25,000.
    if (f.type > kContinuation || f.reserved_bit || f.length > kDefaultMaxFrameSize || !CheckHeader(f).empty())
      return false;
    frames++;
    pos += 9 + size_t{f.length};
  }
  return frames > 0;
}

void Http2Connection::Fail(Failure f, std::string_view detail) {
  if (failure_ != Failure::kNone) return;
  failure_ = f;
  failure_detail_ = std::string(detail);
  streams_dropped_ += streams_.size();
  streams_.clear();
}

void Http2Connection::StartAfterUpgrade(Http2Exchange request, std::string_view http2_settings) {
  std::string payload;
  if (!absl::WebSafeBase64Unescape(absl::string_view(http2_settings.data(), http2_settings.size()), &payload) || payload.size() % 6 != 0) {
    Fail(Failure::kProtocol, "malformed HTTP2-Settings");
    return;
  }
  // The client's settings, acknowledged by the 101: its HEADER_TABLE_SIZE bounds the
  // server's encoder from the first header block on.
  for (size_t i = 0; i + 6 <= payload.size(); i += 6) {
    const auto* e = reinterpret_cast<const uint8_t*>(payload.data() + i);
    uint16_t id = uint16_t(e[0] << 8 | e[1]);
    uint32_t value = Be32(e + 2);
    OnSetting(Side::kClient, id, value);
  }
  if (auto size = dirs_[0].settings_table_size) {
    dirs_[0].settings_table_size.reset();
    if (*size > limits_.max_header_table_size) {
      Fail(Failure::kLimit, "header table size above the limit");
      return;
    }
    nghttp2_hd_inflate_change_table_size(dirs_[1].inflater, *size);
  }
  request.stream_id = 1;
  request.request_ended = true;
  request.end = Http2Exchange::End::kOpen;
  request.grpc = request.content_type.rfind("application/grpc", 0) == 0;
  last_client_stream_ = 1;
  streams_seen_++;
  streams_[1] = std::move(request);
}

void Http2Connection::Feed(Side from, std::string_view captured, uint64_t total, uint64_t ts_ns,
                           std::vector<Http2Event>* out) {
  if (closed_ || failed() || total == 0) return;
  const size_t cap = static_cast<size_t>(std::min<uint64_t>(captured.size(), total));
  Consume(from, reinterpret_cast<const uint8_t*>(captured.data()), cap, ts_ns, out);
  if (total > cap) Skip(from, total - cap, ts_ns, out);
}

void Http2Connection::Gap(Side from, uint64_t bytes, uint64_t ts_ns, std::vector<Http2Event>* out) {
  if (closed_ || failed() || bytes == 0) return;
  Skip(from, bytes, ts_ns, out);
}

void Http2Connection::Consume(Side from, const uint8_t* p, size_t n, uint64_t ts,
                              std::vector<Http2Event>* out) {
  Dir& d = dirs_[static_cast<int>(from)];
  size_t i = 0;
  while (i < n && !failed()) {
    switch (d.st) {
      case Dir::St::kPreface: {
        size_t k = std::min(n - i, kHttp2Preface.size() - d.preface_matched);
        if (std::memcmp(p + i, kHttp2Preface.data() + d.preface_matched, k) != 0) {
          Fail(Failure::kMissedStart, "the client's bytes do not begin with the connection preface");
          return;
        }
        d.preface_matched += k;
        i += k;
        if (d.preface_matched == kHttp2Preface.size()) d.st = Dir::St::kFrameHeader;
        break;
      }
      case Dir::St::kFrameHeader: {
        if (d.hdr_len == 0) d.frame_first_ts = ts;
        size_t k = std::min(n - i, sizeof(d.hdr) - d.hdr_len);
        std::memcpy(d.hdr + d.hdr_len, p + i, k);
        d.hdr_len += k;
        i += k;
        if (d.hdr_len < sizeof(d.hdr)) break;
        d.hdr_len = 0;
        if (!BeginFrame(from, ts)) return;
        if (d.length == 0) {
          EndFrame(from, ts, out);
        } else {
          d.st = Dir::St::kPayload;
        }
        break;
      }
      case Dir::St::kPayload: {
        size_t k = static_cast<size_t>(std::min<uint64_t>(n - i, d.length - d.offset));
        Payload(from, p + i, k);
        i += k;
        if (!failed() && d.offset == d.length) {
          d.st = Dir::St::kFrameHeader;
          EndFrame(from, ts, out);
        }
        break;
      }
    }
  }
}

bool Http2Connection::Skippable(const Dir& d, uint64_t n) {
  switch (d.type) {
    case kHeaders:
    case kPushPromise:
    case kContinuation:
      // Only padding, whose length is known, may be missing.
      return d.pad_known && d.offset >= d.prefix_len && d.offset >= d.length - d.pad_len;
    case kSettings:
      return false;  // it may change the header table size
    default:
      // DATA, PRIORITY, PING, WINDOW_UPDATE, extensions: content not needed. RST_STREAM and
      // GOAWAY: their frame header says enough (stream, that it happened).
      return true;
  }
}

void Http2Connection::Skip(Side from, uint64_t n, uint64_t ts, std::vector<Http2Event>* out) {
  Dir& d = dirs_[static_cast<int>(from)];
  while (n > 0 && !failed()) {
    if (d.st == Dir::St::kPreface) {
      Fail(Failure::kGap, "connection preface not captured");
      return;
    }
    if (d.st == Dir::St::kFrameHeader) {
      Fail(Failure::kGap, "a frame header was not captured: frame boundaries lost");
      return;
    }
    uint64_t k = std::min<uint64_t>(n, d.length - d.offset);
    if (!Skippable(d, k)) {
      Fail(Failure::kGap, d.type == kSettings ? "SETTINGS not captured" : "header block not captured");
      return;
    }
    d.offset += static_cast<uint32_t>(k);
    n -= k;
    if (d.offset == d.length) {
      d.st = Dir::St::kFrameHeader;
      EndFrame(from, ts, out);
    }
  }
}

bool Http2Connection::BeginFrame(Side from, uint64_t ts) {
  Dir& d = dirs_[static_cast<int>(from)];
  FrameHeader f = ParseHeader(d.hdr);
  d.length = f.length;
  d.type = f.type;
  d.flags = f.flags;
  d.stream = f.stream;
  d.offset = 0;
  d.small_len = 0;
  d.setting_len = 0;
  d.prefix_len = 0;
  d.pad_len = 0;
  d.pad_known = true;
  d.settings_table_size.reset();
  if (d.first_frame) {
    // RFC 9113 §3.4: each side's preface ends with a SETTINGS frame.
    if (f.type != kSettings || (f.flags & kFlagAck)) {
      Fail(from == Side::kClient ? Failure::kProtocol : Failure::kMissedStart,
           "the first frame is not SETTINGS");
      return false;
    }
    d.first_frame = false;
  }
  // A sender keeps to the receiver's MAX_FRAME_SIZE; either side's largest announced
  // value is a safe bound for both (a larger length means we lost the frame boundaries).
  const uint32_t max_frame = std::max(dirs_[0].max_frame_size_seen, dirs_[1].max_frame_size_seen);
  if (f.length > max_frame) {
    Fail(Failure::kProtocol, "frame longer than MAX_FRAME_SIZE");
    return false;
  }
  if (std::string_view bad = CheckHeader(f); !bad.empty()) {
    Fail(Failure::kProtocol, bad);
    return false;
  }
  // RFC 9113 §6.10: a header block's frames are contiguous on the connection.
  if (d.in_block != (f.type == kContinuation) || (d.in_block && f.stream != d.block_stream)) {
    Fail(Failure::kProtocol, d.in_block ? "header block interrupted" : "CONTINUATION without a header block");
    return false;
  }
  switch (f.type) {
    case kData:
      if (f.flags & kFlagPadded) d.prefix_len = 1;
      break;
    case kHeaders:
    case kPushPromise:
      if (f.type == kPushPromise && from == Side::kClient) {
        Fail(Failure::kProtocol, "PUSH_PROMISE from the client");
        return false;
      }
      d.prefix_len = (f.flags & kFlagPadded ? 1 : 0) +
                     (f.type == kPushPromise ? 4 : (f.flags & kFlagPriority ? 5 : 0));
      d.pad_known = !(f.flags & kFlagPadded);
      if (d.prefix_len > f.length) {
        Fail(Failure::kProtocol, "header frame shorter than its fields");
        return false;
      }
      d.in_block = true;
      d.block_stream = f.stream;
      d.block_end_stream = f.type == kHeaders && (f.flags & kFlagEndStream);
      d.block_push = f.type == kPushPromise;
      d.block_bytes = 0;
      d.block_wire = 0;
      d.block_first_ts = d.frame_first_ts;
      block_.Clear();
      break;
    default:
      break;
  }
  return true;
}

void Http2Connection::Payload(Side from, const uint8_t* p, size_t n) {
  Dir& d = dirs_[static_cast<int>(from)];
  switch (d.type) {
    case kHeaders:
    case kPushPromise:
    case kContinuation:
      while (n > 0 && !failed()) {
        if (d.offset < d.prefix_len) {
          // Pad length, stream dependency + weight, promised stream id: not needed but
          // the pad length, which says where the fragment ends.
          if (d.offset == 0 && (d.flags & kFlagPadded)) {
            d.pad_len = p[0];
            d.pad_known = true;
            if (uint64_t{d.prefix_len} + d.pad_len > d.length) {
              Fail(Failure::kProtocol, "padding longer than the frame");
              return;
            }
          }
          d.offset++;
          p++;
          n--;
          continue;
        }
        const uint32_t frag_end = d.length - d.pad_len;
        if (d.offset < frag_end) {
          size_t k = std::min<size_t>(n, frag_end - d.offset);
          d.block_bytes += k;
          if (d.block_bytes > limits_.max_header_block_bytes) {
            Fail(Failure::kLimit, "header block above the limit");
            return;
          }
          Inflate(from, p, k, /*final=*/false);
          d.offset += static_cast<uint32_t>(k);
          p += k;
          n -= k;
          continue;
        }
        d.offset += static_cast<uint32_t>(n);  // padding
        n = 0;
      }
      return;
    case kSettings:
      if (d.flags & kFlagAck) break;
      for (size_t i = 0; i < n; i++) {
        d.setting[d.setting_len++] = p[i];
        if (d.setting_len == sizeof(d.setting)) {
          d.setting_len = 0;
          OnSetting(from, uint16_t(d.setting[0] << 8 | d.setting[1]), Be32(d.setting + 2));
        }
      }
      break;
    case kRstStream:
    case kGoaway:
      for (size_t i = 0; i < n && d.small_len < sizeof(d.small); i++) d.small[d.small_len++] = p[i];
      break;
    default:
      break;
  }
  d.offset += static_cast<uint32_t>(n);
}

void Http2Connection::OnSetting(Side from, uint16_t id, uint32_t value) {
  Dir& d = dirs_[static_cast<int>(from)];
  if (id == kSettingsHeaderTableSize) d.settings_table_size = value;
  if (id == kSettingsMaxFrameSize && value >= kDefaultMaxFrameSize && value <= kMaxMaxFrameSize)
    d.max_frame_size_seen = std::max(d.max_frame_size_seen, value);
}

void Http2Connection::ApplyAck(Side acker) {
  Dir& other = dirs_[1 - static_cast<int>(acker)];
  if (other.unacked.empty()) {
    // Two CPUs, one ring buffer: the ACK's read can reach us before the write of the
    // SETTINGS it acknowledges. Apply that SETTINGS when it comes.
    other.early_acks++;
    return;
  }
  std::optional<uint32_t> size = other.unacked.front();
  other.unacked.pop_front();
  if (!size) return;
  if (*size > limits_.max_header_table_size) {
    Fail(Failure::kLimit, "header table size above the limit");
    return;
  }
  // The acker's encoder now works within the other side's decoder limit: from this point
  // of the acker's byte stream on, its header blocks are decoded with that table size
  // (as nghttp2_session does for its own local settings when the ACK arrives).
  nghttp2_hd_inflater* inf = dirs_[static_cast<int>(acker)].inflater;
  if (!inf || nghttp2_hd_inflate_change_table_size(inf, *size) != 0)
    Fail(Failure::kHpack, "table size change rejected");
}

void Http2Connection::Inflate(Side from, const uint8_t* p, size_t n, bool final) {
  nghttp2_hd_inflater* inf = dirs_[static_cast<int>(from)].inflater;
  if (!inf) {
    Fail(Failure::kHpack, "no inflater (out of memory)");
    return;
  }
  for (;;) {
    nghttp2_nv nv;
    int flags = 0;
    ssize_t rv = nghttp2_hd_inflate_hd2(inf, &nv, &flags, p, n, final ? 1 : 0);
    if (rv < 0) {
      Fail(Failure::kHpack, nghttp2_strerror(static_cast<int>(rv)));
      return;
    }
    p += rv;
    n -= static_cast<size_t>(rv);
    if (flags & NGHTTP2_HD_INFLATE_EMIT)
      OnHeader(std::string_view(reinterpret_cast<const char*>(nv.name), nv.namelen),
               std::string_view(reinterpret_cast<const char*>(nv.value), nv.valuelen));
    if (flags & NGHTTP2_HD_INFLATE_FINAL) {
      nghttp2_hd_inflate_end_headers(inf);
      return;
    }
    if (!(flags & NGHTTP2_HD_INFLATE_EMIT) && n == 0) return;
  }
}

void Http2Connection::OnHeader(std::string_view name, std::string_view value) {
  // The fields spans need; names arrive lowercase (HTTP/2 forbids uppercase names).
  static constexpr struct {
    std::string_view name;
    std::string Block::*field;
  } kFields[] = {
      {":method", &Block::method},           {":path", &Block::path},
      {":authority", &Block::authority},     {":scheme", &Block::scheme},
      {":status", &Block::status},           {"content-type", &Block::content_type},
      {"grpc-status", &Block::grpc_status},  {"grpc-message", &Block::grpc_message},
      {"traceparent", &Block::traceparent},  {"tracestate", &Block::tracestate},
      {"host", &Block::host},                {"user-agent", &Block::user_agent},
  };
  // Every header of every block comes through here: the first and last letters and the
  // length rule out nearly all non-matching names before a comparison.
  if (name.size() < 4 || name.size() > 12) return;
  for (const auto& f : kFields) {
    if (f.name.size() == name.size() && f.name[1] == name[1] && f.name.back() == name.back() && f.name == name) {
      StoreCut(&(block_.*f.field), value, limits_.max_value_bytes);
      return;
    }
  }
}

void Http2Connection::EndFrame(Side from, uint64_t ts, std::vector<Http2Event>* out) {
  Dir& d = dirs_[static_cast<int>(from)];
  const uint64_t wire = 9 + uint64_t{d.length};
  switch (d.type) {
    case kHeaders:
    case kPushPromise:
    case kContinuation:
      d.block_wire += wire;  // added to the stream with the whole block
      if (d.flags & kFlagEndHeaders) EndBlock(from, ts, out);
      return;
    default:
      if (auto it = d.stream ? streams_.find(d.stream) : streams_.end(); it != streams_.end())
        (from == Side::kClient ? it->second.request_bytes : it->second.response_bytes) += wire;
      break;
  }
  switch (d.type) {
    case kData:
      if (d.flags & kFlagEndStream) StreamData(from, ts, out);
      break;
    case kSettings:
      if (d.flags & kFlagAck) {
        ApplyAck(from);
      } else {
        d.unacked.push_back(d.settings_table_size);
        if (d.unacked.size() > limits_.max_pending_settings) {
          Fail(Failure::kLimit, "too many SETTINGS awaiting an ACK");
          return;
        }
        if (d.early_acks > 0) {
          d.early_acks--;
          ApplyAck(from == Side::kClient ? Side::kServer : Side::kClient);
        }
      }
      break;
    case kRstStream:
      Reset(from, d.stream, d.small_len >= 4 ? Be32(d.small) : 0, out);
      break;
    case kGoaway:
      if (d.small_len >= 4) GoAway(from, Be32(d.small) & 0x7fffffffu, out);
      break;
    default:
      break;
  }
}

void Http2Connection::StreamData(Side from, uint64_t ts, std::vector<Http2Event>* out) {
  Dir& d = dirs_[static_cast<int>(from)];
  auto it = streams_.find(d.stream);
  if (it == streams_.end()) return;
  if (from == Side::kClient) {
    it->second.request_ended = true;
    it->second.request_last_ts_ns = ts;
  } else {
    it->second.response_last_ts_ns = ts;
    EndStream(d.stream, Http2Exchange::End::kComplete, out);
  }
}

void Http2Connection::EndBlock(Side from, uint64_t ts, std::vector<Http2Event>* out) {
  Dir& d = dirs_[static_cast<int>(from)];
  Inflate(from, nullptr, 0, /*final=*/true);
  d.in_block = false;
  if (failed() || d.block_push) return;  // pushed streams: decoded for HPACK's sake only
  const uint32_t id = d.block_stream;
  const bool end_stream = d.block_end_stream;
  auto it = streams_.find(id);
  if (from == Side::kClient) {
    if (id % 2 == 0) {
      Fail(Failure::kProtocol, "client HEADERS on an even stream");
      return;
    }
    if (it != streams_.end()) {  // request trailers
      it->second.request_bytes += d.block_wire;
      if (end_stream) {
        it->second.request_ended = true;
        it->second.request_last_ts_ns = ts;
      }
      return;
    }
    if (id <= last_client_stream_) return;  // a stream that already ended
    last_client_stream_ = id;
    streams_seen_++;
    if (block_.method.empty() || streams_.size() >= limits_.max_streams) {
      streams_dropped_++;  // not a request we can report, or too many at once
      return;
    }
    // The request goes out with kRequest, built in place; the stream keeps only what
    // its response and its kDone event need (no string is copied).
    Http2Event& e = out->emplace_back();
    e.kind = Http2Event::Kind::kRequest;
    Http2Exchange& x = e.exchange;
    x.stream_id = id;
    x.method = std::move(block_.method);
    x.scheme = std::move(block_.scheme);
    x.authority = std::move(block_.authority.empty() ? block_.host : block_.authority);
    x.path = std::move(block_.path);
    x.content_type = std::move(block_.content_type);
    x.traceparent = std::move(block_.traceparent);
    x.tracestate = std::move(block_.tracestate);
    x.user_agent = std::move(block_.user_agent);
    x.grpc = x.content_type.rfind("application/grpc", 0) == 0;
    x.request_first_ts_ns = d.block_first_ts;
    x.request_bytes = d.block_wire;
    if (end_stream) {
      x.request_ended = true;
      x.request_last_ts_ns = ts;
    }
    Http2Exchange& kept = streams_[id];
    kept.stream_id = id;
    kept.grpc = x.grpc;
    kept.request_first_ts_ns = x.request_first_ts_ns;
    kept.request_last_ts_ns = x.request_last_ts_ns;
    kept.request_bytes = x.request_bytes;
    kept.request_ended = x.request_ended;
    return;
  }
  if (it == streams_.end()) return;  // pushed, reset, or not tracked
  Http2Exchange& x = it->second;
  x.response_bytes += d.block_wire;
  if (x.response_first_ts_ns == 0) x.response_first_ts_ns = d.block_first_ts;
  if (x.status == 0) {
    const int status = ParseInt(block_.status, 0);
    if (status >= 100 && status < 200 && !end_stream) return;  // interim response
    x.status = status;
  }
  // grpc-status is in the trailers, or in the only HEADERS of a trailers-only response.
  if (!block_.grpc_status.empty()) x.grpc_status = ParseInt(block_.grpc_status, -1);
  if (!block_.grpc_message.empty()) x.grpc_message = std::move(block_.grpc_message);
  if (end_stream) {
    x.response_last_ts_ns = ts;
    EndStream(id, Http2Exchange::End::kComplete, out);
  }
}

void Http2Connection::EndStream(uint32_t id, Http2Exchange::End end, std::vector<Http2Event>* out) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  it->second.end = end;
  Http2Event& e = out->emplace_back();
  e.kind = Http2Event::Kind::kDone;
  e.exchange = std::move(it->second);
  streams_.erase(it);
}

void Http2Connection::Reset(Side from, uint32_t stream, uint32_t code, std::vector<Http2Event>* out) {
  auto it = streams_.find(stream);
  if (it == streams_.end()) return;
  it->second.rst_error_code = code;
  it->second.reset_by_client = from == Side::kClient;
  EndStream(stream, Http2Exchange::End::kReset, out);
}

void Http2Connection::GoAway(Side from, uint32_t last_stream, std::vector<Http2Event>* out) {
  if (from != Side::kServer) return;  // a client's GOAWAY concerns pushed streams only
  // Streams above the last one the server processed were refused: the client retries
  // them elsewhere, and the retry is the request that gets a span.
  for (auto it = streams_.begin(); it != streams_.end();) {
    if (it->first > last_stream) {
      streams_dropped_++;
      it = streams_.erase(it);
    } else {
      ++it;
    }
  }
}

void Http2Connection::Close(std::vector<Http2Event>* out) {
  if (closed_) return;
  closed_ = true;
  if (failed()) return;
  std::vector<uint32_t> ids;
  for (const auto& [id, x] : streams_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  for (uint32_t id : ids) EndStream(id, Http2Exchange::End::kClosed, out);
}

}  // namespace isotrace::correlate
