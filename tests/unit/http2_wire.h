#pragma once
// Real HTTP/2 byte streams for tests and benchmarks: a client and a server nghttp2_session
// talk to each other in memory and every chunk either one serialises is recorded, in
// order, as a segment. libnghttp2's session and deflater are an encoder independent of
// the decoder under test (which uses only nghttp2's inflater, and frames by hand).

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace isotrace::testing_h2 {

struct Segment {
  bool from_client;
  std::string bytes;
};

struct WireOptions {
  // SETTINGS_HEADER_TABLE_SIZE each side announces (0xffffffff: not announced).
  uint32_t client_table_size = 0xffffffffu;
  uint32_t server_table_size = 0xffffffffu;
  // Largest dynamic table each side's encoder is willing to use (nghttp2 uses 4096).
  size_t client_deflate_max = 4096;
  size_t server_deflate_max = 4096;
  size_t pad_to = 0;  // >0: pad HEADERS and DATA payloads up to a multiple of this
};

class Wire {
 public:
  using Headers = std::vector<std::pair<std::string, std::string>>;

  explicit Wire(const WireOptions& o = {}) : opts_(o) {
    nghttp2_session_callbacks* cbs;
    nghttp2_session_callbacks_new(&cbs);
    if (o.pad_to) nghttp2_session_callbacks_set_select_padding_callback(cbs, &Wire::Pad);
    nghttp2_option* copt;
    nghttp2_option* sopt;
    nghttp2_option_new(&copt);
    nghttp2_option_new(&sopt);
    nghttp2_option_set_max_deflate_dynamic_table_size(copt, o.client_deflate_max);
    nghttp2_option_set_max_deflate_dynamic_table_size(sopt, o.server_deflate_max);
    nghttp2_session_client_new2(&client_, cbs, this, copt);
    nghttp2_session_server_new2(&server_, cbs, this, sopt);
    nghttp2_option_del(copt);
    nghttp2_option_del(sopt);
    nghttp2_session_callbacks_del(cbs);
    Settings(client_, o.client_table_size);
    Settings(server_, o.server_table_size);
  }
  ~Wire() {
    nghttp2_session_del(client_);
    nghttp2_session_del(server_);
  }
  Wire(const Wire&) = delete;
  Wire& operator=(const Wire&) = delete;

  // The client sends a request; `body` non-empty: DATA follows (END_STREAM on the last).
  int32_t Request(const Headers& h, std::string body = "", const nghttp2_priority_spec* pri = nullptr) {
    auto nv = Nv(h);
    if (body.empty()) return nghttp2_submit_request(client_, pri, nv.data(), nv.size(), nullptr, nullptr);
    nghttp2_data_provider prd = Provider(std::move(body));
    return nghttp2_submit_request(client_, pri, nv.data(), nv.size(), &prd, nullptr);
  }
  // The server answers: headers, optional body, optional trailers (END_STREAM on the last).
  void Respond(int32_t id, const Headers& h, std::string body = "", const Headers& trailers = {}) {
    auto nv = Nv(h);
    const bool headers_end = body.empty() && trailers.empty();
    nghttp2_submit_headers(server_, headers_end ? NGHTTP2_FLAG_END_STREAM : NGHTTP2_FLAG_NONE, id, nullptr,
                           nv.data(), nv.size(), nullptr);
    if (!body.empty() || !trailers.empty()) {
      // Trailers go out from the data source at EOF (nghttp2_submit_trailer), after the
      // DATA; a HEADERS submitted now would overtake the queued DATA.
      nghttp2_data_provider prd = Provider(std::move(body), trailers);
      nghttp2_submit_data(server_, NGHTTP2_FLAG_END_STREAM, id, &prd);
    }
  }
  nghttp2_session* client() { return client_; }
  nghttp2_session* server() { return server_; }

  // Runs both sessions until neither has anything to send. Every mem_send chunk is a
  // segment of its own (nghttp2 hands out about one frame per chunk).
  void Pump() {
    for (int round = 0; round < 1000; round++) {
      bool any = Drain(client_, server_, true);
      any |= Drain(server_, client_, false);
      if (!any) return;
    }
  }

  std::vector<Segment> segments;

 private:
  struct Body {
    std::string data;
    Headers trailers;
    size_t off = 0;
  };

  bool Drain(nghttp2_session* from, nghttp2_session* to, bool from_client) {
    bool any = false;
    for (;;) {
      const uint8_t* p;
      ssize_t n = nghttp2_session_mem_send(from, &p);
      if (n <= 0) break;
      any = true;
      segments.push_back({from_client, std::string(reinterpret_cast<const char*>(p), size_t(n))});
      nghttp2_session_mem_recv(to, p, size_t(n));
    }
    return any;
  }

  static std::vector<nghttp2_nv> Nv(const Headers& h) {
    std::vector<nghttp2_nv> nv;
    for (const auto& [k, v] : h)
      nv.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(k.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), k.size(), v.size(),
                    NGHTTP2_NV_FLAG_NONE});
    return nv;
  }

  nghttp2_data_provider Provider(std::string body, const Headers& trailers = {}) {
    bodies_.push_back(std::make_unique<Body>(Body{std::move(body), trailers}));
    nghttp2_data_provider prd;
    prd.source.ptr = bodies_.back().get();
    prd.read_callback = [](nghttp2_session* session, int32_t stream, uint8_t* buf, size_t len, uint32_t* flags,
                           nghttp2_data_source* src, void*) -> ssize_t {
      auto* b = static_cast<Body*>(src->ptr);
      size_t k = std::min(len, b->data.size() - b->off);
      std::copy_n(b->data.data() + b->off, k, buf);
      b->off += k;
      if (b->off == b->data.size()) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (!b->trailers.empty()) {
          *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
          auto tv = Nv(b->trailers);
          nghttp2_submit_trailer(session, stream, tv.data(), tv.size());
        }
      }
      return ssize_t(k);
    };
    return prd;
  }

  static void Settings(nghttp2_session* s, uint32_t table_size) {
    std::vector<nghttp2_settings_entry> iv;
    if (table_size != 0xffffffffu) iv.push_back({NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, table_size});
    iv.push_back({NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100});
    nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, iv.data(), iv.size());
  }

  static ssize_t Pad(nghttp2_session*, const nghttp2_frame* frame, size_t max_payloadlen, void* user) {
    auto* w = static_cast<Wire*>(user);
    size_t len = frame->hd.length;
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return ssize_t(len);
    size_t padded = (len / w->opts_.pad_to + 1) * w->opts_.pad_to;
    return ssize_t(std::min(padded, max_payloadlen));
  }

  WireOptions opts_;
  nghttp2_session* client_ = nullptr;
  nghttp2_session* server_ = nullptr;
  std::vector<std::unique_ptr<Body>> bodies_;
};

}  // namespace isotrace::testing_h2
