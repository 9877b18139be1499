"""ctlsock.py: requests to a JSON-lines socket (a VM's control socket, the pool's), for the
tests and the scripts that drive ufvm (tools/demo_swap.py)."""
import json
import socket


def requests(path, reqs, timeout=60):
    """Send reqs (dicts, or lines as they are) at once on a connection of their own; the
    answers as dicts, in order (fewer if the server closed before answering them all)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(b''.join((r if isinstance(r, str) else json.dumps(r)).encode() + b'\n'
                           for r in reqs))
        buf = b''
        while buf.count(b'\n') < len(reqs):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    return [json.loads(line) for line in buf.split(b'\n')[:len(reqs)] if line]


def request(path, req, timeout=60):
    """One request; its answer as a dict, or None if the server closed without answering."""
    got = requests(path, [req], timeout)
    return got[0] if got else None
