#pragma once
// HTTP/1.x message framing from captured socket segments.
//
// Why hand-written: the probes capture only a bounded prefix of each read/write (say the
// first 1024 bytes) while the syscall's real byte count is always known. Framing must
// therefore work on streams with holes of known length: a Content-Length or chunked body
// is skipped by counting bytes, not by looking at them, and a head cut by the capture
// limit still yields its start line and the headers that were seen. No library packaged
// by Debian does this: llhttp, picohttpparser, http-parser and friends need every byte of
// the stream (they parse chunk data, they cannot be told "N bytes you will never see
// went by"), and they offer no way to resynchronise after a hole. The parser below is an
// incremental state machine over (captured prefix, total length) segments with bounded
// memory whatever the input.
//
// One Http1Parser per direction of one connection. Each message's kind comes from its
// first bytes (a method token → request, "HTTP/1." → response); the first complete start
// line locks the parser to that kind, so a request-side parser that later sees "HTTP/"
// reports an error rather than mixing directions.

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace isotrace::correlate {

struct HttpHeader {
  std::string name;   // lowercased
  std::string value;  // OWS trimmed, obs-fold replaced by one SP, maybe cut (see Limits)
};

struct HttpMessage {
  enum class Framing : uint8_t {
    kNoBody,         // HEAD response, 101/204/304, 2xx to CONNECT, request without CL/TE
    kContentLength,  // body of exactly Content-Length bytes (0 included)
    kChunked,        // Transfer-Encoding: ..., chunked
    kUntilClose,     // response without CL/TE (HTTP/1.0 style): ends at Flush
    kUnknown,        // head cut by the capture, or chunk framing lost: ends at Flush
  };

  bool is_request = false;
  std::string method;               // request: as sent; response: the method it answers, if known
  std::string target;               // request-target as sent (a prefix when head_truncated)
  int status = 0;                   // response; 0 when not captured
  std::string version;              // "1.0", "1.1"; empty when not captured
  std::vector<HttpHeader> headers;  // in order; at most Limits::max_headers

  // The head's end was never seen: the capture cut it (start line and the complete
  // header lines before the cut are filled in), or the message began in bytes that were
  // not captured at all (then nothing but the timestamps and wire_bytes is known).
  bool head_truncated = false;
  // Close() ended the message before its framed end (Content-Length or chunked body not
  // complete, head not complete).
  bool aborted = false;

  uint64_t first_ts_ns = 0;  // ts of the segment holding the message's first byte
  uint64_t last_ts_ns = 0;   // ts of the segment holding its last byte (as far as seen)
  uint64_t wire_bytes = 0;   // head + body as transferred, captured or not
  // Bytes after the head as transferred (chunk framing included, i.e. not the decoded
  // length); 0 when head_truncated because the head's end is unknown.
  uint64_t body_bytes = 0;

  Framing framing = Framing::kUnknown;
  // Whether the connection stays open after this message (version + Connection header;
  // false for close-delimited or dubious framing). Best guess when head_truncated.
  bool keep_alive = true;

  // First header with that name (case-insensitive), as stored.
  std::optional<std::string_view> Header(std::string_view name) const;
};

std::string_view FramingName(HttpMessage::Framing framing);

// Bounds that keep a parser's memory fixed whatever the peer sends. Defined outside the
// class so it can be a default argument (nested default member initializers cannot).
struct Http1Limits {
  size_t max_head_bytes = 16384;         // start line + headers; beyond: error
  size_t max_headers = 64;               // stored headers; framing headers are read anyway
  size_t max_header_value_bytes = 4096;  // stored value length; longer values are cut
  size_t max_chunk_line_bytes = 4096;    // chunk-size line incl. extensions; beyond: error
  size_t max_pending_responses = 128;    // ExpectResponseTo queue; oldest dropped beyond
  // After a message ended by Flush, segments that do not begin with a start line are
  // skipped (they may be the rest of a body we could not frame, e.g. a large upload
  // after "100 Continue"). This many in a row and the stream is declared lost (error).
  // Skipping costs one bounded scan per segment and no memory.
  size_t max_resync_segments = 4096;
  // Headers to store (lowercase names of letters, digits and '-'); empty: every header. The framing headers are
  // read either way. The tracker stores only the few it reads: copying every header of
  // every message was the largest allocation cost of the hot path (bench/pipeline_bench).
  std::span<const std::string_view> store_only;
  // Whether responses store headers at all (the framing headers are read either way).
  bool store_response_headers = true;
};

// Where a header line sits in a head (offsets from its first byte): the name is
// [start, colon), the value with its OWS (colon, end); end is before the line's CR/LF.
struct Http1HeadLine {
  uint32_t start;
  uint32_t colon;
  uint32_t end;
};

class Http1Parser {
 public:
  using Limits = Http1Limits;

  Http1Parser() : Http1Parser(Limits()) {}
  explicit Http1Parser(const Limits& limits);

  // Response side: the method of each request on the connection, in order (pipelining).
  // Needed for framing (a HEAD response has no body, a 2xx to CONNECT opens a tunnel)
  // and copied into the response's `method`. Unknown → framed as if not HEAD.
  void ExpectResponseTo(std::string_view method);

  // One segment = one syscall: `captured` is its first bytes, `total` the bytes it really
  // transferred (captured bytes beyond `total` are ignored: they never moved; total 0 is
  // a no-op); `ts_ns` is stamped on the messages it touches.
  // Completed messages are appended to *out (1xx interim responses other than 101 are
  // consumed silently: the final response is the one that pairs with the request).
  // An error means the stream is not (or no longer) HTTP/1.x, or broke a limit: stop
  // tracking the connection; further calls return FailedPrecondition.
  absl::Status Feed(std::string_view captured, uint64_t total, uint64_t ts_ns,
                    std::vector<HttpMessage>* out);

  // `n` bytes of this direction went by that the probe lost (records it could not
  // deliver): their count is exact, their content unknown. A Content-Length body or a
  // close-delimited message absorbs them and stays in frame; a message whose end the
  // lost bytes may hold continues with unknown framing (it ends at the next start line
  // or at Flush). Returns false when messages may have begun inside the lost bytes: the
  // parser then skips to the next segment that opens with a start line.
  bool Gap(uint64_t n, uint64_t ts_ns, std::vector<HttpMessage>* out);

  // The peer started a new message in the other direction, or the connection closed:
  // a message whose end cannot be framed (kUntilClose / kUnknown) ends at the last byte
  // seen so far. Messages with a framed end still in progress are left alone (a request
  // body may legitimately follow a "100 Continue"), so calling this on the other
  // direction's parser before feeding a segment is always safe. Afterwards, segments that
  // do not open with a start line are skipped (see Limits::max_resync_segments).
  void Flush(std::vector<HttpMessage>* out);

  // The connection closed: Flush, then emit any other message in progress with
  // aborted = true. The parser accepts no more input afterwards.
  void Close(std::vector<HttpMessage>* out);

  // Switch to pass-through: everything after this is tunnel payload (the other
  // direction answered 101 Switching Protocols or a 2xx to CONNECT). A response parser
  // does this by itself when it sees such a response.
  void EnterTunnel();

  // Inside a message: the next byte belongs to it. True for kUntilClose/kUnknown
  // messages waiting for Flush too, although a segment that opens with a start line ends
  // a kUnknown message by itself.
  bool mid_message() const;
  bool tunneled() const { return state_ == State::kTunnel; }
  bool failed() const { return state_ == State::kError; }

 private:
  enum class State : uint8_t {  // the chunked-body states are contiguous (Gap relies on it)
    kIdle,         // between messages
    kHead,         // start line and header section
    kBodyLength,   // Content-Length body, counting
    kChunkSize,    // chunk-size hex digits
    kChunkExt,     // chunk extensions up to the line end
    kChunkSizeLf,  // LF after chunk-size line's CR
    kChunkData,    // chunk data, counting
    kChunkDataCr,  // CRLF after chunk data
    kChunkDataLf,
    kTrailerLineStart,  // after last-chunk: a trailer field or the final CRLF
    kTrailerLine,
    kTrailerEndLf,
    kUntilEnd,  // kUntilClose / kUnknown framing: every byte is ours until Flush
    kResync,    // lost sync: waiting for a segment that begins with a start line
    kTunnel,    // upgraded / CONNECT: ignore everything
    kClosed,
    kError,
  };
  enum class Kind : uint8_t { kUnknown, kRequest, kResponse };

  // Byte-level validator for the head: accepts only HTTP/1.x-shaped start lines and
  // header lines, and finds the empty line that ends the head. Incremental across
  // segments with O(1) state, so hostile input costs one pass and no memory.
  // The header lines whose name may matter (the framing headers, the stored ones), by a
  // hash of the name's length and first letter: the scanner records only those, so the
  // rest of a head is never looked at again. A collision only records a line more.
  struct LineFilter {
    std::array<uint64_t, 4> bits{};
    static size_t Hash(size_t len, unsigned char first) {
      return (len * 7 + (first | 0x20u)) & 255;
    }
    void Add(std::string_view name) {
      const size_t h = Hash(name.size(), static_cast<unsigned char>(name[0]));
      bits[h >> 6] |= uint64_t{1} << (h & 63);
    }
    bool Wants(size_t len, unsigned char first) const {
      const size_t h = Hash(len, first);
      return (bits[h >> 6] >> (h & 63)) & 1;
    }
  };

  struct HeadScanner {
    enum class Step : uint8_t {
      kMethod,  // method token, or "HTTP" of a status line
      kTarget,
      kReqVersion,   // "HTTP/1.d" after the target
      kRespVersion,  // "HTTP/1.d" at the start
      kStatusSp,
      kStatus,
      kReason,
      kStartEnd,  // CR or LF after the request line's version
      kStartLf,
      kLineStart,
      kName,
      kValue,
      kLineLf,
      kEndLf,
      kDone,
    };
    enum class Result : uint8_t { kNeedMore, kDone, kBad };
    using Line = Http1HeadLine;
    Step step = Step::kMethod;
    uint32_t count = 0;          // bytes of the current token
    bool maybe_http = true;      // the bytes so far are a prefix of "HTTP"
    bool any_header = false;     // obs-fold needs a header to continue
    Kind kind = Kind::kUnknown;  // in: the parser's locked kind; out: what was seen
    // An obs-fold continued a line: the recorded lines do not describe the head.
    bool folded = false;
    uint32_t pos = 0;         // head bytes consumed by earlier calls
    uint32_t line_start = 0;  // the current header line's start and colon
    uint32_t line_colon = 0;
    // Consumes from `in` up to the head's end; *consumed is how many bytes it took.
    // Each header line that ends is appended to *lines (when not null), so the head is
    // split once, here, and not searched again for its line ends and colons.
    // Only lines the filter wants are recorded by the loop that takes whole lines; the
    // byte-by-byte path records every line.
    Result Scan(std::string_view in, size_t* consumed, std::vector<Line>* lines = nullptr,
                const LineFilter* filter = nullptr);
    bool start_line_done() const { return step >= Step::kLineStart; }
  };

  absl::Status Fail(absl::Status status);
  void BeginMessage(uint64_t ts_ns);
  void Finish(std::vector<HttpMessage>* out);
  std::string PopMethod();
  Kind MessageKind() const;
  absl::Status CompleteHead(std::string_view head, std::vector<HttpMessage>* out);
  void TruncateHead(std::string_view head);
  bool BeginsWithStartLine(std::string_view captured) const;
  // `n` more bytes (captured or not) belong to the current message.
  void Consume(uint64_t n, bool body, uint64_t ts_ns);
  void StartChunkLine();

  Limits limits_;
  State state_ = State::kIdle;
  Kind kind_ = Kind::kUnknown;  // locked by the first complete start line
  absl::Status error_;
  HttpMessage cur_;
  HeadScanner scanner_;
  std::string head_buf_;    // head bytes so far when the head spans segments
  std::vector<HeadScanner::Line> lines_;  // the current head's header lines that matter
  LineFilter line_filter_;
  uint64_t remaining_ = 0;  // Content-Length body or chunk data still to come
  uint64_t chunk_size_ = 0;
  size_t line_bytes_ = 0;     // chunk-size line / trailer section length so far
  uint32_t blank_bytes_ = 0;  // CR/LF skipped before a start line
  size_t resync_segments_ = 0;
  bool tunnel_after_ = false;  // the current message is a 101 / CONNECT 2xx
  std::deque<std::string> pending_methods_;
};

}  // namespace isotrace::correlate
