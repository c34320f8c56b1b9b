// The TLS pieces that need no kernel: the ServerHello version reader (correlate/tls.h)
// and how the probe finds OpenSSL files (probes/tls_targets.h), the latter on the real
// libssl of this machine.
#include "daemon/correlate/tls.h"
#include "daemon/probes/tls_targets.h"

#include <sys/stat.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace isotrace {
namespace {

using ::testing::ElementsAre;

std::string Bytes(std::initializer_list<int> b) {
  std::string s;
  for (int c : b) s.push_back(static_cast<char>(c));
  return s;
}

// A ServerHello with the given legacy version and extensions block, optionally inside its
// 5-byte record header.
std::string ServerHello(int legacy, const std::string& extensions, bool record, bool with_ext_len = true) {
  std::string body = Bytes({legacy >> 8, legacy & 0xff});
  body += std::string(32, '\x11');                    // random
  body += Bytes({32}) + std::string(32, '\x22');      // session id
  body += Bytes({0x13, 0x01, 0x00});                  // cipher suite, compression
  if (with_ext_len)
    body += Bytes({static_cast<int>(extensions.size() >> 8), static_cast<int>(extensions.size() & 0xff)}) + extensions;
  std::string hs = Bytes({2, 0, static_cast<int>(body.size() >> 8), static_cast<int>(body.size() & 0xff)}) + body;
  if (!record) return hs;
  return Bytes({0x16, 3, 3, static_cast<int>(hs.size() >> 8), static_cast<int>(hs.size() & 0xff)}) + hs;
}

const std::string kKeyShare = Bytes({0x00, 0x33, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x00});
const std::string kSupported13 = Bytes({0x00, 0x2b, 0x00, 0x02, 0x03, 0x04});
const std::string kRenegotiation = Bytes({0xff, 0x01, 0x00, 0x01, 0x00});

TEST(TlsServerHello, SupportedVersionsDecides13) {
  EXPECT_EQ(correlate::TlsVersionFromServerHello(ServerHello(0x0303, kSupported13 + kKeyShare, true)), "1.3");
  EXPECT_EQ(correlate::TlsVersionFromServerHello(ServerHello(0x0303, kKeyShare + kSupported13, false)), "1.3");
}

TEST(TlsServerHello, WithoutSupportedVersionsTheLegacyVersionHolds) {
  EXPECT_EQ(correlate::TlsVersionFromServerHello(ServerHello(0x0303, kRenegotiation, true)), "1.2");
  EXPECT_EQ(correlate::TlsVersionFromServerHello(ServerHello(0x0301, kRenegotiation, false)), "1.0");
  EXPECT_EQ(correlate::TlsVersionFromServerHello(ServerHello(0x0302, "", false, /*with_ext_len=*/false)), "1.1");
}

TEST(TlsServerHello, CutBeforeTheDecidingExtensionIsUnknownNotGuessed) {
  std::string full = ServerHello(0x0303, kKeyShare + kSupported13, true);
  // Every prefix either decides correctly or says nothing.
  for (size_t n = 0; n < full.size(); n++) {
    std::string_view v = correlate::TlsVersionFromServerHello(full.substr(0, n));
    EXPECT_TRUE(v.empty()) << n << " bytes gave " << v;
  }
}

TEST(TlsServerHello, OtherBytesAreNotAServerHello) {
  EXPECT_EQ(correlate::TlsVersionFromServerHello("GET / HTTP/1.1\r\n"), "");
  EXPECT_EQ(correlate::TlsVersionFromServerHello(Bytes({0x16, 3, 1, 0, 5, 1, 0, 0, 1})), "");  // ClientHello
  EXPECT_EQ(correlate::TlsVersionFromServerHello(ServerHello(0x0909, kRenegotiation, true)), "");
  EXPECT_EQ(correlate::TlsVersionFromServerHello(""), "");
}

TEST(TlsTargets, LibsslMappingsOncePerPath) {
  const char* maps =
      "7f00-7f10 r--p 00000000 fe:01 1234 /usr/lib/x86_64-linux-gnu/libssl.so.3\n"
      "7f10-7f20 r-xp 00010000 fe:01 1234 /usr/lib/x86_64-linux-gnu/libssl.so.3\n"
      "7f20-7f30 r--p 00000000 fe:01 99 /usr/lib/x86_64-linux-gnu/libcrypto.so.3\n"
      "7f30-7f40 r--p 00000000 fe:01 77 /opt/app/lib/libssl.so.1.1 (deleted)\n"
      "7f40-7f50 r--p 00000000 fe:01 78 /opt/my libs/libssl.so.1.1\n"
      "7ffd-7ffe rw-p 00000000 00:00 0 [stack]\n";
  EXPECT_THAT(probes::SslLibrariesInMaps(maps),
              ElementsAre("/usr/lib/x86_64-linux-gnu/libssl.so.3", "/opt/my libs/libssl.so.1.1"));
}

// The machine's own libssl3 (a build dependency through gRPC) defines every hooked function.
TEST(TlsTargets, TheRealLibsslDefinesTheHookedFunctions) {
  const std::string lib = "/usr/lib/x86_64-linux-gnu/libssl.so.3";
  struct stat st;
  if (stat(lib.c_str(), &st) != 0) GTEST_SKIP() << lib << " not on this machine";
  for (const char* fn : probes::kTlsFunctions) EXPECT_TRUE(probes::ElfDefinesFunction(lib, fn)) << fn;
  EXPECT_FALSE(probes::ElfDefinesFunction(lib, "no_such_function_here"));
  // A binary that only imports them (curl links libcurl, which links libssl) defines none.
  EXPECT_FALSE(probes::ElfDefinesFunction("/proc/self/exe", "SSL_write"));
  EXPECT_FALSE(probes::ElfDefinesFunction("/nonexistent", "SSL_write"));
}

}  // namespace
}  // namespace isotrace
