#pragma once
// TLS facts read from the handshake bytes the l7 probe passes up (L7_EV_TLS_HELLO).

#include <string_view>

namespace isotrace::correlate {

// The protocol version a ServerHello negotiated, as tls.protocol.version spells it:
// "1.3" when its supported_versions extension selects 0x0304, else its legacy version
// ("1.2", "1.1", "1.0"). `bytes` start with the handshake record (0x16, with its 5-byte
// header) or with the handshake message itself (type 2). Empty when the bytes are not a
// ServerHello, or end before the extensions that decide between 1.2 and 1.3: unknown is
// left out, never guessed. The result points at a constant.
std::string_view TlsVersionFromServerHello(std::string_view bytes);

}  // namespace isotrace::correlate
