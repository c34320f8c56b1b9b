#!/usr/bin/env python3
"""Record one real h2c connection to nginx (prior knowledge) for bench/http2_bench.

    python3 bench/lib/record_h2c.py <port> <requests> <out.bin>

The client side is written here by hand (preface, empty SETTINGS, a connection WINDOW_UPDATE, a SETTINGS ACK, then
one GET at a time as h2load sends them: literal header fields, the authority and path
without indexing); the server side is whatever nginx sends, exactly as recv() returned
it. Output: records of [u8 from_client][u32 big-endian length][bytes].
"""
import socket
import struct
import sys

port, n, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = socket.create_connection(("127.0.0.1", port))
records = []


def send(b):
    s.sendall(b)
    records.append((1, b))


def frame(ftype, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def lit(index, value):  # literal header field without indexing, indexed name (RFC 7541 6.2.2)
    v = value.encode()
    assert index < 15 and len(v) < 127, value
    return bytes([index, len(v)]) + v


authority = f"127.0.0.1:{port}"
# As h2load does: the connection's receive window opened wide at once (one WINDOW_UPDATE).
send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") + frame(8, 0, 0, struct.pack(">I", 2**31 - 1 - 65535)))
buf = b""


def read_frames(until):
    """Reads until `until(frames)` holds; returns the frames (type, flags, stream)."""
    global buf
    frames = []
    while not until(frames):
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit("nginx closed the connection")
        records.append((0, chunk))
        buf += chunk
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            frames.append((buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF))
            buf = buf[9 + length:]
    return frames


# nginx's SETTINGS (and WINDOW_UPDATE), then our ACK of it.
read_frames(lambda fs: any(t == 4 and not f & 1 for t, f, _ in fs))
send(frame(4, 1, 0, b""))
for i in range(n):
    sid = 1 + 2 * i
    block = b"\x82\x86" + lit(4, "/index.html") + lit(1, authority)
    send(frame(1, 0x5, sid, block))  # END_STREAM | END_HEADERS
    read_frames(lambda fs: any(t == 0 and f & 1 and st == sid for t, f, st in fs))
s.close()
with open(out, "wb") as f:
    for from_client, b in records:
        f.write(bytes([from_client]) + struct.pack(">I", len(b)) + b)
print(f"{len(records)} segments, {sum(len(b) for _, b in records)} bytes")
