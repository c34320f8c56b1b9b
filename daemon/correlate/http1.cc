#include "daemon/correlate/http1.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "daemon/util/ascii.h"

namespace isotrace::correlate {

namespace {

// RFC 9110 §5.6.2 token characters, as a table: this sits on the per-byte path.
constexpr std::array<bool, 256> MakeTcharTable() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = t[c - 32] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr std::array<bool, 256> kTchar = MakeTcharTable();
constexpr bool IsTchar(unsigned char c) { return kTchar[c]; }

// request-target: visible ASCII; bytes >= 0x80 are tolerated because some clients send
// raw UTF-8 paths and servers accept them. Never SP or a control character.
constexpr bool IsTargetByte(unsigned char c) { return c > 0x20 && c != 0x7f; }

// field-value / reason-phrase / chunk-ext: anything but control characters (HTAB is
// fine). NUL, bare CR and LF inside a value are what makes smuggling work: reject.
constexpr bool IsValueByte(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

using util::EqualsIgnoreCase;

// The scanner's inner loops, 8 bytes at a time: a word with no byte below `below` and
// no DEL is skipped whole (SWAR "has less" / "has zero" tests). In a word that has one,
// the lowest flagged byte is exact (a borrow only runs upwards from a true hit), so the
// loop jumps to it: it ends the run unless kOk still accepts it (HTAB in a value).
// Heads are mostly printable ASCII, so this is where the scanner spends its time.
constexpr uint64_t kOnes = 0x0101010101010101ull;
constexpr uint64_t kHighs = 0x8080808080808080ull;
inline uint64_t BytesBelow(uint64_t x, uint8_t below) { return (x - kOnes * below) & ~x & kHighs; }
inline uint64_t DelBytes(uint64_t x) {
  const uint64_t y = x ^ (kOnes * 0x7f);
  return (y - kOnes) & ~y & kHighs;
}
template <bool (*kOk)(unsigned char), uint8_t kBelow>
[[gnu::always_inline]] inline size_t SkipWhile(const unsigned char* p, size_t n) {
  size_t i = 0;
#if defined(__SSE2__)
  // The same test 16 bytes at a time (signed compares: a byte >= 0x80 is negative and
  // is not "below").
  const __m128i below = _mm_set1_epi8(static_cast<char>(kBelow));
  const __m128i minus_one = _mm_set1_epi8(-1);
  const __m128i del = _mm_set1_epi8(0x7f);
  while (i + 16 <= n) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    const __m128i low = _mm_and_si128(_mm_cmplt_epi8(v, below), _mm_cmpgt_epi8(v, minus_one));
    const unsigned flagged =
        static_cast<unsigned>(_mm_movemask_epi8(_mm_or_si128(low, _mm_cmpeq_epi8(v, del))));
    if (flagged == 0) {
      i += 16;
      continue;
    }
    i += static_cast<size_t>(__builtin_ctz(flagged));
    if (!kOk(p[i])) return i;
    ++i;
  }
#endif
  while (i + 8 <= n) {
    uint64_t x;
    std::memcpy(&x, p + i, 8);
    const uint64_t flagged = BytesBelow(x, kBelow) | DelBytes(x);
    if (flagged == 0) {
      i += 8;
      continue;
    }
    i += static_cast<size_t>(__builtin_ctzll(flagged)) >> 3;
    if (!kOk(p[i])) return i;
    ++i;
  }
  while (i < n && kOk(p[i])) ++i;
  return i;
}


constexpr int HexValue(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

constexpr std::string_view kVersionPrefix = "HTTP/1.";
constexpr uint32_t kMaxMethodBytes = 32;
// CR/LF tolerated before a start line (RFC 9112 §2.2: at least one empty line; some
// clients add CRLF after a POST body). More than this is not an HTTP peer.
constexpr uint32_t kMaxBlankBytes = 8;
// A head buffer grown beyond this is released after its message, so an idle
// connection that once saw a large head does not pin 16 KiB.
constexpr size_t kKeepHeadCapacity = 2048;
// Likewise for the record of a head's lines (12 bytes each).
constexpr size_t kKeepHeadLines = 48;

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls fn(element) for each OWS-trimmed element of a comma-separated list
// (RFC 9110 §5.6.1), empty ones included so callers can decide about them.
template <typename Fn>
void ForEachListElement(std::string_view value, Fn fn) {
  while (true) {
    size_t comma = value.find(',');
    fn(TrimOws(value.substr(0, comma)));
    if (comma == std::string_view::npos) return;
    value.remove_prefix(comma + 1);
  }
}

// What the header section says about framing and persistence.
struct FramingInfo {
  bool has_cl = false;
  bool cl_invalid = false;  // not 1*DIGIT, overflow, or conflicting values
  uint64_t cl = 0;
  bool has_te = false;
  int te_codings = 0;
  bool te_saw_chunked = false;
  bool te_chunked_last = false;
  bool te_invalid = false;  // chunked applied twice
  bool conn_close = false;
  bool conn_keep_alive = false;
};

// RFC 9112 §6.3 item 5 / RFC 9110 §8.6: a list of identical values is that value;
// anything else (empty, sign, non-digit, overflow, disagreement) is unrecoverable.
void ParseContentLength(std::string_view value, FramingInfo* info) {
  ForEachListElement(value, [&](std::string_view e) {
    if (e.empty()) {
      info->cl_invalid = true;
      return;
    }
    uint64_t v = 0;
    for (unsigned char c : e) {
      if (c < '0' || c > '9' || v > (std::numeric_limits<uint64_t>::max() - (c - '0')) / 10) {
        info->cl_invalid = true;
        return;
      }
      v = v * 10 + (c - '0');
    }
    if (info->has_cl && v != info->cl) info->cl_invalid = true;
    info->has_cl = true;
    info->cl = v;
  });
  info->has_cl = true;
}

void ParseTransferEncoding(std::string_view value, FramingInfo* info) {
  info->has_te = true;
  ForEachListElement(value, [&](std::string_view e) {
    if (e.empty()) return;  // list syntax allows empty elements
    std::string_view coding = TrimOws(e.substr(0, e.find(';')));
    ++info->te_codings;
    if (EqualsIgnoreCase(coding, "chunked")) {
      if (info->te_saw_chunked) info->te_invalid = true;
      info->te_saw_chunked = true;
      info->te_chunked_last = true;
    } else {
      info->te_chunked_last = false;
    }
  });
}

void ParseConnection(std::string_view value, FramingInfo* info) {
  ForEachListElement(value, [&](std::string_view e) {
    if (EqualsIgnoreCase(e, "close")) info->conn_close = true;
    if (EqualsIgnoreCase(e, "keep-alive")) info->conn_keep_alive = true;
  });
}

// Whether a header name the scanner accepted (a token) is `lower`, ignoring case.
// Exact when `lower` is lowercase letters, digits and '-' (every name compared here):
// b | 0x20 is such a byte only for that byte in either case, or for a control byte,
// which no token holds. Eight bytes at a time: this runs for every header line.
bool TokenIs(std::string_view token, std::string_view lower) {
  const size_t n = token.size();
  if (n != lower.size()) return false;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t a, b;
    std::memcpy(&a, token.data() + i, 8);
    std::memcpy(&b, lower.data() + i, 8);
    if ((a | kOnes * 0x20) != b) return false;
  }
  for (; i < n; ++i) {
    if ((static_cast<unsigned char>(token[i]) | 0x20) != static_cast<unsigned char>(lower[i])) {
      return false;
    }
  }
  return true;
}

void CommitHeader(std::string_view name, std::string_view value, const Http1Limits& limits,
                  HttpMessage* msg, FramingInfo* info) {
  switch (name.size()) {  // the framing headers, by length first
    case 14:
      if (TokenIs(name, "content-length")) ParseContentLength(value, info);
      break;
    case 17:
      if (TokenIs(name, "transfer-encoding")) ParseTransferEncoding(value, info);
      break;
    case 10:
      if (TokenIs(name, "connection")) ParseConnection(value, info);
      break;
    default:
      break;
  }
  if (msg->headers.size() >= limits.max_headers) return;
  if (!msg->is_request && !limits.store_response_headers) return;
  if (limits.store_only.empty()) {
    HttpHeader& h = msg->headers.emplace_back();
    h.name.resize(name.size());
    std::transform(name.begin(), name.end(), h.name.begin(), util::Lower);
    h.value = std::string(value.substr(0, limits.max_header_value_bytes));
    return;
  }
  for (std::string_view keep : limits.store_only) {
    if (keep.size() != name.size() || !TokenIs(name, keep)) continue;
    if (msg->headers.empty()) msg->headers.reserve(limits.store_only.size());
    msg->headers.push_back(
        {std::string(keep), std::string(value.substr(0, limits.max_header_value_bytes))});
    return;
  }
}

// Fills msg from a head the scanner accepted. `head` is either complete (ends with its
// empty line) or the captured part of one; then only its complete lines are used, and
// the start line as far as it goes. `lines`, when not null, are the scanner's record of
// the head's header lines (complete heads without obs-fold): the head is then not
// searched again.
void ParseHead(std::string_view head, bool is_request, const Http1Limits& limits, HttpMessage* msg,
               FramingInfo* info, const std::vector<Http1HeadLine>* lines = nullptr) {
  size_t eol = head.find('\n');
  std::string_view line = head.substr(0, eol);
  if (eol != std::string_view::npos && !line.empty() && line.back() == '\r') {
    line.remove_suffix(1);
  }
  if (is_request) {
    // METHOD SP target SP HTTP/1.d; a cut line keeps what is complete.
    if (size_t sp1 = line.find(' '); sp1 != std::string_view::npos) {
      msg->method = std::string(line.substr(0, sp1));
      std::string_view rest = line.substr(sp1 + 1);
      size_t sp2 = rest.find(' ');
      msg->target = std::string(rest.substr(0, sp2));
      if (sp2 != std::string_view::npos && rest.size() - sp2 - 1 == kVersionPrefix.size() + 1) {
        msg->version = std::string(rest.substr(sp2 + 1 + 5, 3));
      }
    }
  } else {
    // HTTP/1.d SP 3DIGIT [SP reason]
    if (line.size() >= 8) msg->version = std::string(line.substr(5, 3));
    if (line.size() >= 12) {
      msg->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    }
  }
  if (eol == std::string_view::npos) return;
  if (lines != nullptr) {
    if (limits.store_only.empty()) msg->headers.reserve(std::min(lines->size(), limits.max_headers));
    for (const Http1HeadLine& l : *lines) {
      CommitHeader(head.substr(l.start, l.colon - l.start),
                   TrimOws(head.substr(l.colon + 1, l.end - l.colon - 1)), limits, msg, info);
    }
    return;
  }
  // One allocation for the header vector instead of a growth series per message (none
  // when only listed headers are stored: CommitHeader reserves on the first one).
  if (limits.store_only.empty()) {
    const size_t lines = static_cast<size_t>(std::count(head.begin() + eol + 1, head.end(), '\n'));
    msg->headers.reserve(std::min(lines, limits.max_headers));
  }

  std::string_view name;
  std::string_view value;  // into `head`, or into `folded` once obs-fold joined lines
  std::string folded;
  bool have = false;
  size_t pos = eol + 1;
  while (pos < head.size()) {
    eol = head.find('\n', pos);
    if (eol == std::string_view::npos) break;  // cut by the capture
    line = head.substr(pos, eol - pos);
    pos = eol + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;  // end of the head
    if (line.front() == ' ' || line.front() == '\t') {
      // obs-fold (RFC 9112 §5.2): replaced by SP, as a user agent must.
      std::string_view more = TrimOws(line);
      if (have && !more.empty()) {
        if (value.data() != folded.data()) folded.assign(value);
        if (!folded.empty()) folded += ' ';
        folded.append(more);
        value = folded;
      }
      continue;
    }
    if (have) CommitHeader(name, value, limits, msg, info);
    size_t colon = line.find(':');
    name = line.substr(0, colon);
    value = TrimOws(line.substr(colon + 1));
    have = true;
  }
  if (have) CommitHeader(name, value, limits, msg, info);
}

bool KeepAlive(std::string_view version, const FramingInfo& info) {
  if (version == "1.0") return info.conn_keep_alive && !info.conn_close;
  return !info.conn_close;
}

}  // namespace

std::optional<std::string_view> HttpMessage::Header(std::string_view name) const {
  for (const HttpHeader& h : headers) {
    if (EqualsIgnoreCase(h.name, name)) return std::string_view(h.value);
  }
  return std::nullopt;
}

std::string_view FramingName(HttpMessage::Framing framing) {
  switch (framing) {
    case HttpMessage::Framing::kNoBody:
      return "no_body";
    case HttpMessage::Framing::kContentLength:
      return "content_length";
    case HttpMessage::Framing::kChunked:
      return "chunked";
    case HttpMessage::Framing::kUntilClose:
      return "until_close";
    case HttpMessage::Framing::kUnknown:
      return "unknown";
  }
  return "unknown";
}

Http1Parser::HeadScanner::Result Http1Parser::HeadScanner::Scan(std::string_view in,
                                                                size_t* consumed,
                                                                std::vector<Line>* lines,
                                                                const LineFilter* filter) {
  const auto* data = reinterpret_cast<const unsigned char*>(in.data());
  const size_t n = in.size();
  size_t i = 0;
  auto bad = [&] {
    *consumed = i;
    return Result::kBad;
  };
  auto at = [&](size_t k) { return pos + static_cast<uint32_t>(k); };
  auto done = [&](size_t used) {
    *consumed = used;
    pos += static_cast<uint32_t>(used);
    return Result::kDone;
  };
  for (; i < n; ++i) {
    unsigned char c = data[i];
    switch (step) {
      case Step::kMethod:
        if (IsTchar(c)) {
          if (maybe_http && (count >= 4 || c != "HTTP"[count])) maybe_http = false;
          // A response-side stream fails on its first byte that cannot be "HTTP/".
          if (kind == Kind::kResponse && !maybe_http) return bad();
          if (++count > kMaxMethodBytes) return bad();
        } else if (c == '/' && maybe_http && count == 4 && kind != Kind::kRequest) {
          kind = Kind::kResponse;
          step = Step::kRespVersion;
          count = 5;
        } else if (c == ' ' && count > 0 && kind != Kind::kResponse) {
          kind = Kind::kRequest;
          step = Step::kTarget;
          count = 0;
        } else {
          return bad();
        }
        break;
      case Step::kTarget:
        {
          const size_t k = SkipWhile<IsTargetByte, 0x21>(data + i, n - i);
          i += k;
          count += static_cast<uint32_t>(k);
        }
        if (i == n) break;
        if (data[i] != ' ' || count == 0) return bad();
        step = Step::kReqVersion;
        count = 0;
        break;
      case Step::kReqVersion:
      case Step::kRespVersion:
        if (count < kVersionPrefix.size()) {
          if (c != static_cast<unsigned char>(kVersionPrefix[count])) return bad();
          ++count;
        } else {
          if (c < '0' || c > '9') return bad();
          step = step == Step::kReqVersion ? Step::kStartEnd : Step::kStatusSp;
          count = 0;
        }
        break;
      case Step::kStatusSp:
        if (c != ' ') return bad();
        step = Step::kStatus;
        break;
      case Step::kStatus:
        if (count < 3) {
          if (c < (count == 0 ? '1' : '0') || c > '9') return bad();
          ++count;
        } else if (c == ' ') {
          step = Step::kReason;
        } else if (c == '\r') {
          step = Step::kStartLf;
        } else if (c == '\n') {
          step = Step::kLineStart;
        } else {
          return bad();
        }
        break;
      case Step::kReason:
      case Step::kValue:
        i += SkipWhile<IsValueByte, 0x20>(data + i, n - i);
        if (i == n) break;
        if (data[i] != '\r' && data[i] != '\n') return bad();
        if (step == Step::kValue && lines != nullptr) {
          lines->push_back({line_start, line_colon, at(i)});
        }
        if (data[i] == '\r') {
          step = step == Step::kReason ? Step::kStartLf : Step::kLineLf;
        } else {
          step = Step::kLineStart;
        }
        break;
      case Step::kStartEnd:
        if (c == '\r') {
          step = Step::kStartLf;
        } else if (c == '\n') {
          step = Step::kLineStart;
        } else {
          return bad();
        }
        break;
      case Step::kStartLf:
      case Step::kLineLf:
        if (c != '\n') return bad();
        step = Step::kLineStart;
        break;
      case Step::kLineStart:
        // Whole "name:value CRLF" lines in the buffer are taken in one loop, without a
        // dispatch per step: they are most of a head. Anything else (a line cut by the
        // buffer's end, a bare LF, obs-fold, a bad byte) goes on byte by byte below.
        {
          unsigned char b = c;
          while (IsTchar(b)) {
            size_t j = i + 1;
            while (j < n && IsTchar(data[j])) ++j;
            if (j == n || data[j] != ':') break;
            size_t e = j + 1;
            e += SkipWhile<IsValueByte, 0x20>(data + e, n - e);
            if (n - e < 3 || data[e] != '\r' || data[e + 1] != '\n') break;
            if (lines != nullptr && (filter == nullptr || filter->Wants(j - i, data[i]))) {
              lines->push_back({at(i), at(j), at(e)});
            }
            any_header = true;
            i = e + 2;
            b = data[i];
          }
          c = b;
        }
        if (IsTchar(c)) {
          line_start = at(i);
          step = Step::kName;
        } else if ((c == ' ' || c == '\t') && any_header) {
          folded = true;
          step = Step::kValue;  // obs-fold
        } else if (c == '\r') {
          step = Step::kEndLf;
        } else if (c == '\n') {
          step = Step::kDone;
          return done(i + 1);
        } else {
          return bad();
        }
        break;
      case Step::kName:
        while (i < n && IsTchar(data[i])) ++i;
        if (i == n) break;
        // No whitespace before the colon (RFC 9112 §5.1): a classic smuggling vector.
        if (data[i] == ':') {
          line_colon = at(i);
          step = Step::kValue;
          any_header = true;
        } else {
          return bad();
        }
        break;
      case Step::kEndLf:
        if (c != '\n') return bad();
        step = Step::kDone;
        return done(i + 1);
      case Step::kDone:
        return done(i);
    }
  }
  *consumed = n;
  pos += static_cast<uint32_t>(n);
  return Result::kNeedMore;
}

Http1Parser::Http1Parser(const Limits& limits) : limits_(limits) {
  if (limits_.store_only.empty()) {
    line_filter_.bits.fill(~uint64_t{0});  // every header is stored
    return;
  }
  for (std::string_view name : {"content-length", "transfer-encoding", "connection"}) {
    line_filter_.Add(name);
  }
  for (std::string_view name : limits_.store_only) {
    if (!name.empty()) line_filter_.Add(name);
  }
}

void Http1Parser::ExpectResponseTo(std::string_view method) {
  pending_methods_.emplace_back(method.substr(0, kMaxMethodBytes));
  // A response side that fell behind keeps the newest methods: the oldest requests are
  // the ones whose responses we most likely lost already.
  while (pending_methods_.size() > limits_.max_pending_responses) pending_methods_.pop_front();
}

std::string Http1Parser::PopMethod() {
  if (pending_methods_.empty()) return {};
  std::string m = std::move(pending_methods_.front());
  pending_methods_.pop_front();
  return m;
}

Http1Parser::Kind Http1Parser::MessageKind() const {
  if (scanner_.kind != Kind::kUnknown) return scanner_.kind;
  if (kind_ != Kind::kUnknown) return kind_;
  // Only a few bytes of the start line were captured: "HTT" guesses a response.
  return scanner_.maybe_http ? Kind::kResponse : Kind::kRequest;
}

absl::Status Http1Parser::Fail(absl::Status status) {
  state_ = State::kError;
  error_ = status;
  cur_ = HttpMessage();
  std::string().swap(head_buf_);
  std::vector<HeadScanner::Line>().swap(lines_);
  return status;
}

void Http1Parser::BeginMessage(uint64_t ts_ns) {
  cur_ = HttpMessage();
  cur_.first_ts_ns = ts_ns;
  cur_.last_ts_ns = ts_ns;
  scanner_ = HeadScanner();
  scanner_.kind = kind_;
  head_buf_.clear();
  lines_.clear();
  tunnel_after_ = false;
}

void Http1Parser::Finish(std::vector<HttpMessage>* out) {
  out->push_back(std::move(cur_));
  cur_ = HttpMessage();
  if (head_buf_.capacity() > kKeepHeadCapacity) {
    std::string().swap(head_buf_);
  } else {
    head_buf_.clear();
  }
  if (lines_.capacity() > kKeepHeadLines) {
    std::vector<HeadScanner::Line>().swap(lines_);
  } else {
    lines_.clear();
  }
  blank_bytes_ = 0;
  state_ = tunnel_after_ ? State::kTunnel : State::kIdle;
  tunnel_after_ = false;
}

void Http1Parser::Consume(uint64_t n, bool body, uint64_t ts_ns) {
  if (n == 0) return;
  cur_.wire_bytes += n;
  if (body) cur_.body_bytes += n;
  cur_.last_ts_ns = ts_ns;
}

void Http1Parser::StartChunkLine() {
  state_ = State::kChunkSize;
  chunk_size_ = 0;
  line_bytes_ = 0;
}

void Http1Parser::TruncateHead(std::string_view head) {
  const Kind kind = MessageKind();
  if (scanner_.kind != Kind::kUnknown) kind_ = scanner_.kind;
  FramingInfo info;
  cur_.is_request = kind == Kind::kRequest;
  ParseHead(head, cur_.is_request, limits_, &cur_, &info);
  if (!cur_.is_request) cur_.method = PopMethod();
  cur_.head_truncated = true;
  cur_.framing = HttpMessage::Framing::kUnknown;
  cur_.keep_alive = KeepAlive(cur_.version, info);
  head_buf_.clear();
  state_ = State::kUntilEnd;
}

absl::Status Http1Parser::CompleteHead(std::string_view head, std::vector<HttpMessage>* out) {
  using Framing = HttpMessage::Framing;
  kind_ = scanner_.kind;  // the scanner only completes a head whose kind it knows
  FramingInfo info;
  cur_.is_request = kind_ == Kind::kRequest;
  ParseHead(head, cur_.is_request, limits_, &cur_, &info, scanner_.folded ? nullptr : &lines_);
  cur_.keep_alive = KeepAlive(cur_.version, info);

  if (cur_.is_request) {
    // RFC 9112 §6.3: a request whose Transfer-Encoding does not end in chunked, or an
    // invalid Content-Length, cannot be framed; the server answers 400 and closes.
    if (info.has_te) {
      if (info.te_codings == 0 || info.te_invalid || !info.te_chunked_last) {
        return absl::InvalidArgumentError("HTTP/1.x request: unframeable Transfer-Encoding");
      }
      cur_.framing = Framing::kChunked;
    } else if (info.has_cl) {
      if (info.cl_invalid) {
        return absl::InvalidArgumentError("HTTP/1.x request: invalid Content-Length");
      }
      cur_.framing = Framing::kContentLength;
    } else {
      cur_.framing = Framing::kNoBody;
    }
  } else {
    const int status = cur_.status;
    if (status < 200 && status != 101) {
      // Interim (100 Continue, 103 Early Hints): not the answer; the final response
      // that follows pairs with the request. No body, so the next byte starts it.
      cur_ = HttpMessage();
      head_buf_.clear();
      blank_bytes_ = 0;
      state_ = State::kIdle;
      return absl::OkStatus();
    }
    cur_.method = PopMethod();
    if (status == 101 || (cur_.method == "CONNECT" && status / 100 == 2)) {
      // The connection stops carrying HTTP/1.x after this head.
      cur_.framing = Framing::kNoBody;
      cur_.keep_alive = false;
      tunnel_after_ = true;
    } else if (cur_.method == "HEAD" || status == 204 || status == 304) {
      cur_.framing = Framing::kNoBody;
    } else if (info.has_te) {
      if (info.te_codings == 0 || info.te_invalid) {
        return absl::InvalidArgumentError("HTTP/1.x response: invalid Transfer-Encoding");
      }
      // A response may end a non-chunked coding by closing the connection.
      cur_.framing = info.te_chunked_last ? Framing::kChunked : Framing::kUntilClose;
    } else if (info.has_cl) {
      if (info.cl_invalid) {
        return absl::InvalidArgumentError("HTTP/1.x response: invalid Content-Length");
      }
      cur_.framing = Framing::kContentLength;
    } else {
      cur_.framing = Framing::kUntilClose;
    }
  }
  // Both TE and CL (a smuggling attempt) or TE in HTTP/1.0: framing is dubious and the
  // peer must close after this message (RFC 9112 §6.1, §6.3).
  if (info.has_te && (info.has_cl || cur_.version == "1.0")) cur_.keep_alive = false;

  switch (cur_.framing) {
    case Framing::kNoBody:
      Finish(out);
      break;
    case Framing::kContentLength:
      remaining_ = info.cl;
      if (remaining_ == 0) {
        Finish(out);
      } else {
        state_ = State::kBodyLength;
      }
      break;
    case Framing::kChunked:
      StartChunkLine();
      break;
    case Framing::kUntilClose:
      cur_.keep_alive = false;
      state_ = State::kUntilEnd;
      break;
    case Framing::kUnknown:
      state_ = State::kUntilEnd;
      break;
  }
  return absl::OkStatus();
}

bool Http1Parser::BeginsWithStartLine(std::string_view captured) const {
  HeadScanner s;
  s.kind = kind_;
  size_t used = 0;
  captured = captured.substr(0, limits_.max_head_bytes);
  return s.Scan(captured, &used) != HeadScanner::Result::kBad && s.start_line_done();
}

absl::Status Http1Parser::Feed(std::string_view captured, uint64_t total, uint64_t ts_ns,
                               std::vector<HttpMessage>* out) {
  if (state_ == State::kError) {
    return absl::FailedPreconditionError("HTTP/1.x parser stopped: " +
                                         std::string(error_.message()));
  }
  if (state_ == State::kClosed) return absl::FailedPreconditionError("HTTP/1.x parser closed");
  // Only the first `total` bytes moved (a short write, or a capture taken from the user
  // buffer before the syscall failed with EAGAIN): bytes beyond them were never sent.
  if (captured.size() > total) captured = captured.substr(0, total);
  if (total == 0) return absl::OkStatus();

  // Decisions only a segment boundary allows: applications write a new message with a
  // new syscall, so a segment that opens with a well-formed start line is the best
  // evidence we get that an unframeable message is over.
  if (state_ == State::kResync) {
    if (!BeginsWithStartLine(captured)) {
      if (++resync_segments_ > limits_.max_resync_segments) {
        return Fail(absl::DataLossError("HTTP/1.x stream lost: no start line to resync on"));
      }
      return absl::OkStatus();
    }
    state_ = State::kIdle;
    blank_bytes_ = 0;
  } else if (state_ == State::kUntilEnd && cur_.framing == HttpMessage::Framing::kUnknown &&
             BeginsWithStartLine(captured)) {
    Finish(out);
  }

  const size_t cap = captured.size();
  const auto byte = [&](uint64_t p) { return static_cast<unsigned char>(captured[p]); };
  uint64_t p = 0;
  while (p < total) {
    switch (state_) {
      case State::kIdle: {
        if (p < cap) {
          const unsigned char c = byte(p);
          if (c == '\r' || c == '\n') {
            if (++blank_bytes_ > kMaxBlankBytes) {
              return Fail(absl::InvalidArgumentError("not HTTP/1.x: blank lines"));
            }
            ++p;
            break;
          }
          BeginMessage(ts_ns);
          state_ = State::kHead;
          break;
        }
        // A message begins in bytes that were not captured. Report it anyway (so
        // requests and responses still pair one to one) if we know its kind.
        if (kind_ == Kind::kUnknown) {
          state_ = State::kResync;
          resync_segments_ = 0;
          p = total;
          break;
        }
        BeginMessage(ts_ns);
        cur_.is_request = kind_ == Kind::kRequest;
        if (!cur_.is_request) cur_.method = PopMethod();
        cur_.head_truncated = true;
        cur_.framing = HttpMessage::Framing::kUnknown;
        state_ = State::kUntilEnd;
        break;
      }

      case State::kHead: {
        if (p >= cap) {
          // The capture cut the head: keep what is complete, frame nothing.
          TruncateHead(head_buf_);
          break;
        }
        const size_t room = limits_.max_head_bytes - static_cast<size_t>(cur_.wire_bytes);
        const size_t avail = cap - p;
        const std::string_view in = captured.substr(p, std::min(avail, room));
        size_t used = 0;
        const HeadScanner::Result r = scanner_.Scan(in, &used, &lines_, &line_filter_);
        if (r == HeadScanner::Result::kBad) {
          return Fail(absl::InvalidArgumentError("not HTTP/1.x: malformed message head"));
        }
        const std::string_view bytes = in.substr(0, used);
        Consume(used, /*body=*/false, ts_ns);
        p += used;
        if (r == HeadScanner::Result::kDone) {
          std::string_view head = bytes;  // whole head in this segment: no copy
          if (!head_buf_.empty()) {
            head_buf_.append(bytes);
            head = head_buf_;
          }
          if (absl::Status s = CompleteHead(head, out); !s.ok()) return Fail(std::move(s));
          break;
        }
        if (used < avail) {
          return Fail(absl::ResourceExhaustedError("HTTP/1.x head exceeds max_head_bytes"));
        }
        head_buf_.append(bytes);
        break;
      }

      case State::kBodyLength: {
        const uint64_t n = std::min(remaining_, total - p);
        Consume(n, /*body=*/true, ts_ns);
        p += n;
        remaining_ -= n;
        if (remaining_ == 0) Finish(out);
        break;
      }

      case State::kChunkSize:
      case State::kChunkExt:
      case State::kChunkSizeLf: {
        bool line_done = false;
        if (p >= cap) {
          if (state_ != State::kChunkSizeLf) {
            // The chunk-size line was not captured: the body's end is unknowable.
            cur_.framing = HttpMessage::Framing::kUnknown;
            state_ = State::kUntilEnd;
            break;
          }
          line_done = true;  // after CR only LF can follow
        } else {
          const unsigned char c = byte(p);
          if (++line_bytes_ > limits_.max_chunk_line_bytes) {
            return Fail(absl::ResourceExhaustedError("HTTP/1.x chunk-size line too long"));
          }
          if (state_ == State::kChunkSize) {
            const int d = HexValue(c);
            if (d >= 0) {
              if (chunk_size_ >> 60) {
                return Fail(absl::InvalidArgumentError("HTTP/1.x chunk size overflows"));
              }
              chunk_size_ = chunk_size_ << 4 | static_cast<uint64_t>(d);
            } else if (line_bytes_ == 1) {
              return Fail(absl::InvalidArgumentError("HTTP/1.x: bad chunk size"));
            } else if (c == ';' || c == ' ' || c == '\t') {
              state_ = State::kChunkExt;
            } else if (c == '\r') {
              state_ = State::kChunkSizeLf;
            } else if (c == '\n') {
              line_done = true;
            } else {
              return Fail(absl::InvalidArgumentError("HTTP/1.x: bad chunk size"));
            }
          } else if (state_ == State::kChunkExt) {
            if (c == '\r') {
              state_ = State::kChunkSizeLf;
            } else if (c == '\n') {
              line_done = true;
            } else if (!IsValueByte(c)) {
              return Fail(absl::InvalidArgumentError("HTTP/1.x: bad chunk extension"));
            }
          } else if (c == '\n') {
            line_done = true;
          } else {
            return Fail(absl::InvalidArgumentError("HTTP/1.x: bad chunk-size line end"));
          }
        }
        Consume(1, /*body=*/true, ts_ns);
        ++p;
        if (line_done) {
          line_bytes_ = 0;
          if (chunk_size_ == 0) {
            state_ = State::kTrailerLineStart;
          } else {
            remaining_ = chunk_size_;
            state_ = State::kChunkData;
          }
        }
        break;
      }

      case State::kChunkData: {
        // Counted, never looked at: uncaptured chunk data costs nothing.
        const uint64_t n = std::min(remaining_, total - p);
        Consume(n, /*body=*/true, ts_ns);
        p += n;
        remaining_ -= n;
        if (remaining_ == 0) state_ = State::kChunkDataCr;
        break;
      }

      case State::kChunkDataCr:
      case State::kChunkDataLf: {
        // Uncaptured: assume the CRLF the grammar requires.
        if (p < cap) {
          const unsigned char c = byte(p);
          if (c == '\n') {
            StartChunkLine();
          } else if (c == '\r' && state_ == State::kChunkDataCr) {
            state_ = State::kChunkDataLf;
          } else {
            return Fail(absl::InvalidArgumentError("HTTP/1.x: chunk data not followed by CRLF"));
          }
        } else if (state_ == State::kChunkDataCr) {
          state_ = State::kChunkDataLf;
        } else {
          StartChunkLine();
        }
        Consume(1, /*body=*/true, ts_ns);
        ++p;
        break;
      }

      case State::kTrailerLineStart:
      case State::kTrailerLine:
      case State::kTrailerEndLf: {
        bool done = false;
        if (p >= cap) {
          if (state_ == State::kTrailerLine) {
            cur_.framing = HttpMessage::Framing::kUnknown;
            state_ = State::kUntilEnd;
            break;
          }
          // Trailers are rare: an uncaptured trailer section is taken to be the bare
          // CRLF that ends almost every chunked body.
          if (state_ == State::kTrailerLineStart) {
            state_ = State::kTrailerEndLf;
          } else {
            done = true;
          }
        } else {
          const unsigned char c = byte(p);
          if (++line_bytes_ > limits_.max_head_bytes) {
            return Fail(absl::ResourceExhaustedError("HTTP/1.x trailer section too long"));
          }
          if (state_ == State::kTrailerLineStart) {
            if (c == '\r') {
              state_ = State::kTrailerEndLf;
            } else if (c == '\n') {
              done = true;
            } else if (IsTchar(c)) {
              state_ = State::kTrailerLine;
            } else {
              return Fail(absl::InvalidArgumentError("HTTP/1.x: bad trailer field"));
            }
          } else if (state_ == State::kTrailerLine) {
            if (c == '\n') {
              state_ = State::kTrailerLineStart;
            } else if (c != '\r' && !IsValueByte(c)) {
              return Fail(absl::InvalidArgumentError("HTTP/1.x: bad trailer field"));
            }
          } else if (c == '\n') {
            done = true;
          } else {
            return Fail(absl::InvalidArgumentError("HTTP/1.x: bad end of chunked body"));
          }
        }
        Consume(1, /*body=*/true, ts_ns);
        ++p;
        if (done) Finish(out);
        break;
      }

      case State::kUntilEnd:
        Consume(total - p, /*body=*/!cur_.head_truncated, ts_ns);
        p = total;
        break;

      case State::kResync:
      case State::kTunnel:
        p = total;
        break;

      case State::kClosed:
      case State::kError:
        return absl::InternalError("HTTP/1.x parser in a terminal state mid-segment");
    }
  }
  return absl::OkStatus();
}

bool Http1Parser::Gap(uint64_t n, uint64_t ts_ns, std::vector<HttpMessage>* out) {
  if (n == 0) return true;
  if (state_ == State::kBodyLength) {
    if (n <= remaining_) {
      Consume(n, /*body=*/true, ts_ns);
      remaining_ -= n;
      if (remaining_ == 0) Finish(out);  // the next byte starts a message: in frame
      return true;
    }
    // The message ended inside the lost bytes; what followed it is unknown.
    Consume(remaining_, /*body=*/true, ts_ns);
    remaining_ = 0;
    Finish(out);
  } else if (state_ == State::kUntilEnd) {
    Consume(n, /*body=*/!cur_.head_truncated, ts_ns);
    return true;
  } else if (state_ == State::kHead || (state_ >= State::kChunkSize && state_ <= State::kTrailerEndLf)) {
    // Framing lost mid-message (head or chunked body): it goes on with unknown framing,
    // ending at the next start line or at Flush, like a message whose head the capture cut.
    if (state_ == State::kHead) {
      TruncateHead(head_buf_);
    } else {
      cur_.framing = HttpMessage::Framing::kUnknown;
      state_ = State::kUntilEnd;
    }
    Consume(n, /*body=*/!cur_.head_truncated, ts_ns);
    return true;
  } else if (state_ != State::kIdle) {
    return true;  // resyncing, tunnelled or stopped: nothing to keep in frame
  }
  state_ = State::kResync;
  resync_segments_ = 0;
  return false;
}

void Http1Parser::Flush(std::vector<HttpMessage>* out) {
  if (state_ != State::kUntilEnd) return;
  Finish(out);
  // Whatever follows may still be the tail of what we just ended (an unframeable body):
  // only a segment that opens with a start line resumes parsing.
  state_ = State::kResync;
  resync_segments_ = 0;
}

void Http1Parser::Close(std::vector<HttpMessage>* out) {
  switch (state_) {
    case State::kUntilEnd:
      Finish(out);
      break;
    case State::kHead:
      TruncateHead(head_buf_);
      cur_.aborted = true;
      Finish(out);
      break;
    case State::kBodyLength:
    case State::kChunkSize:
    case State::kChunkExt:
    case State::kChunkSizeLf:
    case State::kChunkData:
    case State::kChunkDataCr:
    case State::kChunkDataLf:
    case State::kTrailerLineStart:
    case State::kTrailerLine:
    case State::kTrailerEndLf:
      cur_.aborted = true;
      Finish(out);
      break;
    default:
      break;
  }
  cur_ = HttpMessage();
  std::string().swap(head_buf_);
  pending_methods_.clear();
  state_ = State::kClosed;
}

void Http1Parser::EnterTunnel() {
  if (state_ == State::kError || state_ == State::kClosed) return;
  cur_ = HttpMessage();
  std::string().swap(head_buf_);
  state_ = State::kTunnel;
}

bool Http1Parser::mid_message() const {
  switch (state_) {
    case State::kHead:
    case State::kBodyLength:
    case State::kChunkSize:
    case State::kChunkExt:
    case State::kChunkSizeLf:
    case State::kChunkData:
    case State::kChunkDataCr:
    case State::kChunkDataLf:
    case State::kTrailerLineStart:
    case State::kTrailerLine:
    case State::kTrailerEndLf:
    case State::kUntilEnd:
      return true;
    default:
      return false;
  }
}

}  // namespace isotrace::correlate
