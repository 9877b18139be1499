"""ctlsock.py: one request to a JSON-lines socket (a VM's control socket, the pool's), for the
tests and the scripts that drive ufvm (tools/demo_swap.py)."""
import json
import socket


def request(path, req, timeout=60):
    """Send req (a dict, or a line as it is) on a connection of its own; the first line
    of the answer as a dict, or None if the server closed without answering."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall((req if isinstance(req, str) else json.dumps(req)).encode() + b'\n')
        buf = b''
        while b'\n' not in buf:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    line = buf.split(b'\n')[0]
    return json.loads(line) if line else None
