#pragma once
// A protobuf wire-format writer for the OTLP encoders' hot path: bytes go straight into
// one growing buffer, no message objects in between (building ExportTraceServiceRequest
// objects and serialising them cost ~4x more per span; bench/pipeline_bench.cc measures
// both). Hand-written because protobuf's CodedOutputStream needs every nested message's
// length up front, which would mean a sizing pass over every span; here a nested message
// reserves one length byte and End() widens it in place when the body turned out longer
// than 127 bytes (a memmove of that body), so the output is the canonical encoding the
// generated code would produce for the same fields in field-number order.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace isotrace::otlp::wire {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "fixed64/fixed32 are written as memory");

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5 };

constexpr size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

class Writer {
 public:
  // Appends to *out (its current contents stay in front).
  explicit Writer(std::string* out) : out_(out), n_(out->size()), room_(out->size()) {}
  ~Writer() { Finish(); }
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Trims the buffer to what was written; the writer can go on afterwards.
  void Finish() {
    out_->resize(n_);
    room_ = n_;
  }
  size_t size() const { return n_; }

  // Makes room for `bytes` more. Every write below checks its own room too (one
  // predictable compare); reserving a record's worth up front saves the regrowth steps.
  void Reserve(size_t bytes) {
    if (__builtin_expect(n_ + bytes > room_, 0)) Grow(bytes);
  }

  // Low-level form for runs of small writes: Cursor makes room for `bytes` and returns
  // where to write; Put* write there and return the next position; Commit takes the
  // position after the last byte written. One room check for the whole run.
  char* Cursor(size_t bytes) {
    Reserve(bytes);
    return out_->data() + n_;
  }
  void Commit(char* p) { n_ = static_cast<size_t>(p - out_->data()); }
  static char* PutVarint(char* p, uint64_t v) {
    while (v >= 0x80) {
      *p++ = static_cast<char>(v | 0x80);
      v >>= 7;
    }
    *p++ = static_cast<char>(v);
    return p;
  }
  static char* PutTag(char* p, uint32_t field, WireType type) {
    return PutVarint(p, (uint64_t{field} << 3) | type);
  }
  static char* PutBytes(char* p, std::string_view v) {
    if (!v.empty()) std::memcpy(p, v.data(), v.size());
    return p + v.size();
  }

  void Varint(uint64_t v) { Commit(PutVarint(Cursor(10), v)); }
  void Tag(uint32_t field, WireType type) { Varint((uint64_t{field} << 3) | type); }
  void Raw(std::string_view v) {
    Reserve(v.size());
    if (!v.empty()) std::memcpy(out_->data() + n_, v.data(), v.size());
    n_ += v.size();
  }
  void Bytes(uint32_t field, std::string_view v) {
    char* p = Cursor(20 + v.size());  // tag (≤ 5) + length (≤ 10) + bytes
    p = PutTag(p, field, kLen);
    p = PutVarint(p, v.size());
    Commit(PutBytes(p, v));
  }
  void Int(uint32_t field, int64_t v) {
    char* p = PutTag(Cursor(15), field, kVarint);
    Commit(PutVarint(p, static_cast<uint64_t>(v)));
  }
  void Fixed64(uint32_t field, uint64_t v) {
    char* p = PutTag(Cursor(13), field, kFixed64);
    std::memcpy(p, &v, 8);
    Commit(p + 8);
  }
  void Fixed32(uint32_t field, uint32_t v) {
    char* p = PutTag(Cursor(9), field, kFixed32);
    std::memcpy(p, &v, 4);
    Commit(p + 4);
  }
  void Double(uint32_t field, double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, 8);
    Fixed64(field, bits);
  }

  // A nested message: Begin returns where its body starts, End fixes its length.
  size_t Begin(uint32_t field) {
    char* p = PutTag(Cursor(6), field, kLen);
    *p++ = 0;
    Commit(p);
    return n_;
  }
  void End(size_t body) {
    const size_t len = n_ - body;
    if (len < 0x80) {
      out_->data()[body - 1] = static_cast<char>(len);
      return;
    }
    const size_t extra = VarintSize(len) - 1;
    Reserve(extra);
    char* d = out_->data();
    std::memmove(d + body + extra, d + body, len);
    n_ = body - 1;
    Varint(len);
    n_ = body + extra + len;
  }

 private:
  [[gnu::noinline]] void Grow(size_t bytes) {
    out_->resize(std::max(out_->size() * 2, n_ + bytes + 256));
    room_ = out_->size();
  }

  std::string* out_;
  size_t n_;     // bytes written
  size_t room_;  // out_->size(): what may be written without growing
};

}  // namespace isotrace::otlp::wire
