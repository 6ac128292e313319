"""The fan-out floor: a server that answers the WebSocket handshake with a fixed
response and writes one prebuilt frame per update to every socket with a plain
``sock.send``. Nothing a real server could skip is left to skip.

Updates are driven over stdin: a line ``N`` makes it send the state with seq N.
"""

from __future__ import annotations

import argparse
import contextlib
import selectors
import socket
import sys

HANDSHAKE = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: placeholder\r\n\r\n"
)


def frame(text: bytes) -> bytes:
    assert len(text) < 126
    return bytes([0x81, len(text)]) + text


def main(port: int) -> None:
    listener = socket.create_server(("127.0.0.1", port), backlog=4096)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(sys.stdin, selectors.EVENT_READ)
    clients: list[socket.socket] = []
    print(f"listening on 127.0.0.1:{port}", flush=True)
    while True:
        for key, _ in selector.select():
            if key.fileobj is listener:
                while True:
                    try:
                        sock, _ = listener.accept()
                    except BlockingIOError:
                        break
                    sock.recv(4096)  # the request: read and ignored
                    sock.sendall(HANDSHAKE + frame(b'{"type":"total","seq":0,"total":0}'))
                    sock.setblocking(False)
                    clients.append(sock)
            else:
                line = sys.stdin.readline()
                if not line:
                    return
                seq = int(line)
                data = frame(
                    b'{"type":"total","counter":"default","total":%d,"seq":%d}' % (seq, seq)
                )
                for sock in clients:
                    # A full or closed socket just misses this update.
                    with contextlib.suppress(BlockingIOError, ConnectionError):
                        sock.send(data)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    main(parser.parse_args().port)
