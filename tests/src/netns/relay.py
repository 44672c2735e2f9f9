"""Runs a command inside a fresh network namespace whose only way out is a
set of Unix sockets.

Usage: relay.py ADDR:PORT=UNIX_SOCKET [...] -- COMMAND [ARGS...]

Brings the namespace's loopback up, listens on ADDR:PORT (a loopback address:
all of 127.0.0.0/8 is the namespace's own) for each pair
and forwards every connection, byte for byte, to the Unix socket (which the
test process serves from outside the namespace: a Unix socket is a file, so it
crosses network namespaces where TCP cannot). Then runs COMMAND and exits with
its status. Nothing here can reach any other address: the namespace has no
other interface.
"""

import fcntl
import os
import socket
import struct
import subprocess
import sys
import threading

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def loopback_up():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serve(listener, unix_path):
    while True:
        conn, _ = listener.accept()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(unix_path)
        except OSError:
            conn.close()
            upstream.close()
            continue
        threading.Thread(target=pump, args=(conn, upstream), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, conn), daemon=True).start()


def main():
    args = sys.argv[1:]
    split = args.index("--")
    routes, command = args[:split], args[split + 1 :]
    loopback_up()
    for route in routes:
        address, unix_path = route.split("=", 1)
        host, port = address.rsplit(":", 1)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, int(port)))
        listener.listen(64)
        threading.Thread(target=serve, args=(listener, unix_path), daemon=True).start()
    sys.stdout.flush()
    os._exit(subprocess.call(command))


if __name__ == "__main__":
    main()
