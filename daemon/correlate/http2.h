#pragma once
// HTTP/2 connection decoding from captured socket segments: both directions of one
// connection, frames → streams → one request/response exchange per stream (RFC 9113),
// header blocks through libnghttp2's HPACK inflater (RFC 7541).
//
// Why the frame layer is hand-written: libnghttp2 (Debian's libnghttp2-14) installs no
// standalone frame parser; its framer is internal to nghttp2_session, and a session is an
// endpoint, not an observer. A session validates one side's protocol state, answers
// (SETTINGS ACK, WINDOW_UPDATE, GOAWAY on errors), applies only its own local SETTINGS to
// its inflater (an observer learns them from the other direction), needs every byte of
// the stream, and cannot be told "N bytes went by that you will never see". The frame
// layer here is a 9-byte header and a per-type payload walk: an incremental state machine
// over (captured prefix, total length) segments with fixed memory, like Http1Parser.
// HPACK, the part where a hand-written decoder would go wrong subtly (Huffman, dynamic
// table eviction, size updates), is nghttp2_hd_inflate_hd2 (Debian 12 ships nghttp2
// 1.52; hd3 appeared in 1.61).
//
// Gaps. A byte that was counted but never captured (the tail of a segment beyond the
// capture limit, or a jump in a direction's byte position when events were lost) is
// harmless inside a payload whose content is not needed: DATA, padding, PING,
// WINDOW_UPDATE, PRIORITY, unknown frame types, a GOAWAY's debug data. The frame
// boundaries stay proven because the frame's length is known. Anywhere else — a frame
// header, a header block fragment, SETTINGS — the decoder cannot prove where the next
// frame starts, nor keep the HPACK dynamic table in step, so the connection is marked
// undecodable: streams in flight are dropped (counted), never emitted with guessed
// fields, and nothing more is decoded on it. A fresh dynamic table cannot decode header
// blocks that refer to entries it never saw, which is also why a connection whose start
// (the client preface and the first SETTINGS of each side) was not seen is undecodable
// from the first byte.
//
// Where the bytes come from does not matter: plaintext from a socket (h2c with prior
// knowledge, or after an HTTP/1.1 Upgrade: h2c) or plaintext read out of a TLS library
// (h2 with ALPN) are fed the same way.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nghttp2/nghttp2.h>

namespace isotrace::correlate {

// The client connection preface (RFC 9113 §3.4).
inline constexpr std::string_view kHttp2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Bounds that keep a connection's memory and work fixed whatever the peers send.
struct Http2Limits {
  size_t max_streams = 256;             // open streams tracked; beyond: not tracked (counted)
  size_t max_value_bytes = 1024;        // stored header value length; longer values are cut
  size_t max_header_block_bytes = 262144;  // one header block (HEADERS + CONTINUATION)
  // Largest SETTINGS_HEADER_TABLE_SIZE the inflaters accept. A peer allowed a larger
  // table could fill it, and a smaller inflater would evict entries the encoder still
  // refers to (wrong headers, silently): such a connection is marked undecodable.
  uint32_t max_header_table_size = 65536;
  size_t max_pending_settings = 8;  // SETTINGS frames awaiting their ACK, per side
};

// One stream's request and response as far as they were seen.
struct Http2Exchange {
  enum class End : uint8_t {
    kOpen,      // kRequest events: the response is still to come
    kComplete,  // the response ended with END_STREAM
    kReset,     // RST_STREAM from either side before the response ended
    kClosed,    // the connection ended first (Close(), or GOAWAY before the response)
  };

  uint32_t stream_id = 0;
  // Request (pseudo-)headers, values cut at Limits::max_value_bytes.
  std::string method;     // :method
  std::string scheme;     // :scheme
  std::string authority;  // :authority, else host
  std::string path;       // :path
  std::string content_type;  // request content-type
  std::string traceparent, tracestate;
  std::string user_agent;
  bool request_ended = false;  // the client sent END_STREAM

  // Response.
  int status = 0;  // :status of the final response; 0 when none was seen
  bool grpc = false;  // request content-type application/grpc[+proto|...]
  int grpc_status = -1;  // grpc-status from the trailers (or a trailers-only response); -1 none
  std::string grpc_message;
  uint32_t rst_error_code = 0;  // End::kReset: the RST_STREAM error code
  bool reset_by_client = false;
  End end = End::kOpen;

  // Timestamps of the segments holding: the first byte of the request HEADERS frame;
  // the last byte of the frame that ended the request (END_STREAM); the first byte of
  // the response HEADERS; the last byte of the frame that ended the response. 0: unseen.
  uint64_t request_first_ts_ns = 0;
  uint64_t request_last_ts_ns = 0;
  uint64_t response_first_ts_ns = 0;
  uint64_t response_last_ts_ns = 0;
  uint64_t request_bytes = 0;   // frame bytes of the stream from the client (headers incl.)
  uint64_t response_bytes = 0;  // from the server

  // rpc.service / rpc.method from a gRPC path "/package.Service/Method" (empty otherwise).
  std::string_view RpcService() const;
  std::string_view RpcMethod() const;
};

// Each event carries what is new, so no header value is copied: kRequest the request
// (its strings, grpc, request timestamps and bytes); kDone the stream id, grpc, the
// request's timestamps and bytes, and the whole response side, with the request strings
// empty (they went out with kRequest). The exception is stream 1 of an h2c upgrade,
// which has no kRequest event: its kDone carries the request given to StartAfterUpgrade.
struct Http2Event {
  enum class Kind : uint8_t {
    kRequest,  // the request's header block was decoded (exchange.end == kOpen)
    kDone,     // the exchange ended (kComplete, kReset or kClosed)
  };
  Kind kind = Kind::kRequest;
  Http2Exchange exchange;
};

// The canonical name of a gRPC status code ("NOT_FOUND"); the number as text when unknown.
std::string GrpcStatusName(int code);

// Memory for one HTTP/2 connection's two HPACK inflaters. nghttp2 allocates and frees a
// buffer for every literal header field and a table entry for every field it indexes (a
// typical nginx response indexes five and evicts five); with glibc's malloc/free that
// was 17.5 k instructions per exchange on bench/http2_bench's nginx connection, 15.9 k
// with this pool. Freed blocks wait in per-size free lists (at most kMaxFreePerClass
// each, so an idle connection holds little) and are handed back. Hand-written because
// libnghttp2 takes an allocator (nghttp2_mem) but ships none, and Debian's archive has
// no pool whose free() is told no size.
class HpackPool {
 public:
  HpackPool();
  HpackPool(const HpackPool&) = delete;
  HpackPool& operator=(const HpackPool&) = delete;
  ~HpackPool();
  void* Alloc(size_t size);
  void Free(void* p);
  void* Realloc(void* p, size_t size);
  // The allocator handed to nghttp2_hd_inflate_new2. The inflater keeps this pointer
  // (its context refers to it until nghttp2_hd_inflate_del), so it lives here.
  nghttp2_mem* mem() { return &mem_; }

  // Blocks waiting in the free lists.
  size_t idle_blocks() const;

  static constexpr size_t kClasses = 4;            // blocks of 64, 128, 256, 512 bytes
  static constexpr size_t kMaxFreePerClass = 256;  // idle blocks kept per class

 private:
  struct FreeBlock {
    FreeBlock* next;
  };
  FreeBlock* free_[kClasses] = {};
  uint16_t free_count_[kClasses] = {};
  nghttp2_mem mem_;
};

class Http2Connection {
 public:
  using Limits = Http2Limits;
  enum class Side : uint8_t { kClient = 0, kServer = 1 };  // who sent the bytes
  // Why a connection cannot be decoded (the first reason that struck).
  enum class Failure : uint8_t {
    kNone,
    kMissedStart,  // the client direction did not begin with the preface
    kGap,          // bytes the decoder needed were not captured (frame header, header block, SETTINGS)
    kProtocol,     // frames that break RFC 9113 framing: we are not (or no longer) in step
    kHpack,        // the inflater rejected a header block
    kLimit,        // a header block or table size beyond Limits
  };

  Http2Connection() : Http2Connection(Limits()) {}
  explicit Http2Connection(const Limits& limits);
  ~Http2Connection();
  Http2Connection(const Http2Connection&) = delete;
  Http2Connection& operator=(const Http2Connection&) = delete;

  // h2c upgrade (RFC 7540 §3.2): the HTTP/1.1 request that carried `Upgrade: h2c` was
  // answered 101 and becomes stream 1, its request side closed. `http2_settings` is its
  // HTTP2-Settings header (base64url SETTINGS payload, implicitly acknowledged by the
  // 101). Call before feeding any HTTP/2 byte; the client direction then starts with the
  // preface and the server's with its SETTINGS, as with prior knowledge. A malformed
  // HTTP2-Settings value marks the connection undecodable (kProtocol).
  void StartAfterUpgrade(Http2Exchange request, std::string_view http2_settings);

  // One segment of one direction: `captured` is its first bytes, `total` the bytes it
  // really moved (captured bytes beyond `total` are ignored; the rest of `total` is an
  // uncaptured tail); `ts_ns` is stamped on what it touches. Events are appended to *out.
  void Feed(Side from, std::string_view captured, uint64_t total, uint64_t ts_ns,
            std::vector<Http2Event>* out);
  // `bytes` of that direction went by and were never delivered (a jump in its byte
  // position). Same rules as an uncaptured tail.
  void Gap(Side from, uint64_t bytes, uint64_t ts_ns, std::vector<Http2Event>* out);
  // The connection closed: every stream whose request was seen ends as kClosed (with
  // whatever response part was seen). Nothing more is accepted.
  void Close(std::vector<Http2Event>* out);

  bool failed() const { return failure_ != Failure::kNone; }
  Failure failure() const { return failure_; }
  std::string_view failure_detail() const { return failure_detail_; }
  // Exchanges lost: in flight when the connection became undecodable, beyond
  // max_streams, or refused by GOAWAY (never processed by the server).
  uint64_t streams_dropped() const { return streams_dropped_; }
  uint64_t streams_seen() const { return streams_seen_; }
  size_t open_streams() const { return streams_.size(); }

  // Cheap test of a connection's first captured bytes (the daemon joined late or lost
  // the start): whether they are a run of well-formed HTTP/2 frame headers that ends
  // exactly at the capture's end or runs past it. Used to count such connections as
  // HTTP/2 that cannot be decoded rather than as "not HTTP".
  static bool LooksLikeFrames(std::string_view captured);
  // Whether `captured` begins with the client preface (or a prefix of it, when the
  // capture is shorter than the preface).
  static bool LooksLikePreface(std::string_view captured);
  // Whether `captured` begins with a SETTINGS frame header (a server's first bytes).
  static bool LooksLikeSettings(std::string_view captured);

  static std::string_view FailureName(Failure f);

 private:
  // Per-direction frame walk.
  struct Dir {
    enum class St : uint8_t { kPreface, kFrameHeader, kPayload };
    St st = St::kFrameHeader;
    size_t preface_matched = 0;
    bool first_frame = true;  // the first frame must be a non-ACK SETTINGS
    uint8_t hdr[9];
    size_t hdr_len = 0;
    // Current frame.
    uint32_t length = 0;
    uint8_t type = 0;
    uint8_t flags = 0;
    uint32_t stream = 0;
    uint32_t offset = 0;  // payload bytes of the current frame consumed so far
    uint64_t frame_first_ts = 0;
    // HEADERS / PUSH_PROMISE / CONTINUATION layout of the current frame's payload:
    // [prefix_len bytes: pad length, priority, promised id][fragment][padding].
    uint32_t prefix_len = 0;
    uint32_t pad_len = 0;  // known once the pad-length byte was read
    bool pad_known = true;
    uint8_t small[8];  // first bytes of payloads read whole (prefix, RST_STREAM, GOAWAY)
    size_t small_len = 0;
    // SETTINGS in progress.
    uint8_t setting[6];
    size_t setting_len = 0;
    std::optional<uint32_t> settings_table_size;  // HEADER_TABLE_SIZE in this SETTINGS
    uint32_t max_frame_size_seen = 16384;  // largest MAX_FRAME_SIZE this side announced
    // Header block in progress (HEADERS/PUSH_PROMISE until END_HEADERS).
    bool in_block = false;
    uint32_t block_stream = 0;
    bool block_end_stream = false;
    bool block_push = false;
    uint64_t block_bytes = 0;  // fragment bytes (the limit)
    uint64_t block_wire = 0;   // frame bytes, headers and padding included
    uint64_t block_first_ts = 0;
    // SETTINGS this side sent, not acknowledged yet: their HEADER_TABLE_SIZE if any.
    std::deque<std::optional<uint32_t>> unacked;
    uint32_t early_acks = 0;  // the peer's ACKs seen before this side's SETTINGS (event order)
    nghttp2_hd_inflater* inflater = nullptr;  // decodes this side's header blocks
  };

  void Fail(Failure f, std::string_view detail);
  void Consume(Side from, const uint8_t* p, size_t n, uint64_t ts, std::vector<Http2Event>* out);
  void Skip(Side from, uint64_t n, uint64_t ts, std::vector<Http2Event>* out);
  bool BeginFrame(Side from, uint64_t ts);
  void Payload(Side from, const uint8_t* p, size_t n);
  void EndFrame(Side from, uint64_t ts, std::vector<Http2Event>* out);
  static bool Skippable(const Dir& d, uint64_t n);
  void Inflate(Side from, const uint8_t* p, size_t n, bool final);
  void EndBlock(Side from, uint64_t ts, std::vector<Http2Event>* out);
  void OnSetting(Side from, uint16_t id, uint32_t value);
  void ApplyAck(Side acker);
  void EndStream(uint32_t id, Http2Exchange::End end, std::vector<Http2Event>* out);
  void OnHeader(std::string_view name, std::string_view value);
  void Reset(Side from, uint32_t stream, uint32_t code, std::vector<Http2Event>* out);
  void GoAway(Side from, uint32_t last_stream, std::vector<Http2Event>* out);
  void StreamData(Side from, uint64_t ts, std::vector<Http2Event>* out);

  HpackPool pool_;  // before dirs_: destroyed after the inflaters
  Limits limits_;
  Dir dirs_[2];
  Failure failure_ = Failure::kNone;
  std::string failure_detail_;
  bool closed_ = false;
  std::unordered_map<uint32_t, Http2Exchange> streams_;  // open streams by id
  uint32_t last_client_stream_ = 0;  // highest client-initiated stream id seen
  uint64_t streams_dropped_ = 0;
  uint64_t streams_seen_ = 0;
  // The header block being decoded: what it says, kept until END_HEADERS.
  struct Block {
    std::string method, scheme, authority, host, path, status, content_type, grpc_status,
        grpc_message, traceparent, tracestate, user_agent;
    void Clear();
  } block_;
};

}  // namespace isotrace::correlate
