#!/usr/bin/python3
# mail-relay REHEARSAL STAND-IN for /usr/bin/cloudflared. NOT Cloudflare's binary.
#
# The rehearsal cannot install cloudflared (no network to pkg.cloudflare.com) nor reach Cloudflare's edge, so it
# replaces only this binary. It runs under the program's real unit (cloudflared-mail-relay.service: User=cloudflared, --config,
# the pushed EnvironmentFile with TUNNEL_TOKEN, Type=notify), checks that the token it got is the stack's, dials
# OUT to the rehearsal's edge the way cloudflared keeps outbound connections to Cloudflare, and for each request
# the edge sends down a connection applies the tunnel's ingress rules in order: hostname and path regex (matched, as
# cloudflared's proxy.go does, against the DECODED path, req.URL.Path) -> service
# (http://127.0.0.1:<port>), tcp://127.0.0.1:<port>, or http_status:<code>. A tcp:// service takes what the
# client side (`cloudflared access tcp`) opens for each TCP connection: a WebSocket. As cloudflared does for a
# stream-based origin, it dials the origin, answers 101 Switching Protocols, and carries the bytes between the
# WebSocket's binary messages and the origin's TCP stream; any other request to a tcp:// route gets 502.
# The rules are read from the file the unit passes with
# --config (the program's locally managed ingress), or, without one, from the rehearsal's copy of the remotely
# managed configuration. A rule with originRequest.access.required refuses (403) a request whose
# Cf-Access-Jwt-Assertion is missing, expired, or not for one of its audTag values from https://<teamName>.
# cloudflareaccess.com. Unlike cloudflared it does not verify the JWT's signature: the rehearsal has no Cloudflare keys.
import base64
import hashlib
import struct
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.parse

CONFIG = "/etc/mail-relay-rehearsal/tunnel.json"
VERSION = "cloudflared version 0.0.0-rehearsal (mail-relay rehearsal stand-in, not Cloudflare's binary)"

def notify(state):
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.connect(addr)
        s.sendall(state.encode())
    finally:
        s.close()

def read_request(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0") or 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return lines[0], headers, head + b"\r\n\r\n" + body[:length], body[length:]

def route(ingress, host, raw_path):
    # As cloudflared (proxy.go: FindMatchingRule(req.Host, req.URL.Path)): the path regex sees the DECODED path.
    path = urllib.parse.unquote(raw_path)
    for rule in ingress:
        if rule.get("hostname") and rule["hostname"] != host:
            continue
        if rule.get("path") and not re.search(rule["path"], path):
            continue
        return rule
    return {"service": "http_status:503"}

def access_refusal(rule, headers):
    """Why the request fails the rule's Access check, or None."""
    access = (rule.get("originRequest") or {}).get("access") or {}
    if not access.get("required"):
        return None
    token = headers.get("cf-access-jwt-assertion", "")
    parts = token.split(".")
    if len(parts) != 3:
        return "no Access JWT"
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return "malformed Access JWT"
    aud = payload.get("aud") or []
    aud = [aud] if isinstance(aud, str) else aud
    if not set(aud) & set(access.get("audTag") or []):
        return "Access JWT for another application"
    if payload.get("iss") != "https://%s.cloudflareaccess.com" % access.get("teamName"):
        return "Access JWT from another team"
    if int(payload.get("exp", 0)) < time.time():
        return "expired Access JWT"
    return None

def respond_status(sock, code):
    sock.sendall(("HTTP/1.1 %d \r\ncontent-length: 0\r\nconnection: close\r\n\r\n" % code).encode())

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

def read_exact(sock, n, buf):
    """n bytes from buf (bytes already read) then the socket; returns (data, rest) or (None, b"") at EOF."""
    while len(buf) < n:
        chunk = sock.recv(65536)
        if not chunk:
            return None, b""
        buf += chunk
    return buf[:n], buf[n:]

def ws_frame(opcode, payload):
    """A server-to-client frame: FIN set, unmasked."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload

def stream_tcp(sock, headers, leftover, origin, service):
    if headers.get("upgrade", "").lower() != "websocket" or not headers.get("sec-websocket-key"):
        sys.stderr.write("%s: not a WebSocket (cloudflared access tcp opens one)\n" % service)
        respond_status(sock, 502)
        return
    try:
        up = socket.create_connection(origin, timeout=30)
    except OSError as e:
        sys.stderr.write("origin %s unreachable: %s\n" % (service, e))
        respond_status(sock, 502)
        return
    up.settimeout(None)
    accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + WS_GUID).encode()).digest()).decode()
    sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
    send_lock = threading.Lock()

    def send(opcode, payload):
        with send_lock:
            sock.sendall(ws_frame(opcode, payload))

    def origin_to_client():
        try:
            while True:
                chunk = up.recv(65536)
                if not chunk:
                    break
                send(0x2, chunk)
            send(0x8, struct.pack("!H", 1000))
        except OSError:
            pass
        finally:
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    pump = threading.Thread(target=origin_to_client, daemon=True)
    pump.start()
    buf = leftover
    try:
        while True:
            head, buf = read_exact(sock, 2, buf)
            if head is None:
                break
            opcode, n = head[0] & 0x0F, head[1] & 0x7F
            masked = head[1] & 0x80
            if n == 126:
                ext, buf = read_exact(sock, 2, buf)
                n = struct.unpack("!H", ext)[0] if ext else 0
            elif n == 127:
                ext, buf = read_exact(sock, 8, buf)
                n = struct.unpack("!Q", ext)[0] if ext else 0
            if not masked:
                sys.stderr.write("%s: an unmasked client frame; closing (RFC 6455 5.1)\n" % service)
                break
            mask, buf = read_exact(sock, 4, buf)
            data, buf = read_exact(sock, n, buf)
            if mask is None or data is None:
                break
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            if opcode in (0x0, 0x1, 0x2):
                up.sendall(payload)
            elif opcode == 0x8:
                break
            elif opcode == 0x9:
                send(0xA, payload)
    except OSError as e:
        sys.stderr.write("%s: %s\n" % (service, e))
    finally:
        try:
            up.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        pump.join(30)
        up.close()

def serve(cfg, ready):
    edge = (cfg["edgeHost"], int(cfg["edgePort"]))
    while True:
        try:
            sock = socket.create_connection(edge, timeout=10)
        except OSError:
            time.sleep(1)
            continue
        try:
            sock.settimeout(None)
            sock.sendall(("CONNECTOR %s\n" % cfg["tunnelId"]).encode())
            ready.set()
            req = read_request(sock)
            if req is None:
                continue
            line, headers, raw, leftover = req
            parts = line.split(" ")
            path = parts[1].split("?")[0] if len(parts) > 1 else "/"
            host = headers.get("host", "").split(":")[0]
            rule = route(cfg["ingress"], host, path)
            service = rule["service"]
            refused = access_refusal(rule, headers)
            if refused:
                sys.stderr.write("refused %s %s: %s\n" % (host, path, refused))
                respond_status(sock, 403)
                continue
            if service.startswith("http_status:"):
                respond_status(sock, int(service.split(":")[1]))
                continue
            t = re.match(r"^tcp://([^:/]+):(\d+)$", service)
            if t:
                stream_tcp(sock, headers, leftover, (t.group(1), int(t.group(2))), service)
                continue
            m = re.match(r"^http://([^:/]+):(\d+)$", service)
            if not m:
                respond_status(sock, 502)
                continue
            try:
                up = socket.create_connection((m.group(1), int(m.group(2))), timeout=30)
            except OSError as e:
                sys.stderr.write("origin %s unreachable: %s\n" % (service, e))
                respond_status(sock, 502)
                continue
            with up:
                up.sendall(raw)
                while True:
                    chunk = up.recv(65536)
                    if not chunk:
                        break
                    sock.sendall(chunk)
        except OSError as e:
            sys.stderr.write("connection error: %s\n" % e)
        finally:
            sock.close()

def main(argv):
    if "--version" in argv or argv[1:2] == ["version"]:
        print(VERSION)
        return 0
    if "tunnel" not in argv or "run" not in argv:
        sys.stderr.write("rehearsal stand-in: only `tunnel run` and `--version` are implemented\n")
        return 2
    with open(CONFIG) as f:
        cfg = json.load(f)
    if "--config" in argv:
        # The program's config file is JSON, which is YAML; cloudflared reads it as YAML.
        with open(argv[argv.index("--config") + 1]) as f:
            local = json.load(f)
        cfg["ingress"] = local.get("ingress") or []
        sys.stderr.write("ingress from %s (%d rules)\n" % (argv[argv.index("--config") + 1], len(cfg["ingress"])))
    token = os.environ.get("TUNNEL_TOKEN", "")
    if not token:
        sys.stderr.write("TUNNEL_TOKEN is not set: the unit's EnvironmentFile did not provide it\n")
        return 1
    if hashlib.sha256(token.encode()).hexdigest() != cfg["tokenSha256"]:
        sys.stderr.write("TUNNEL_TOKEN is not the stack's tunnel token\n")
        return 1
    sys.stderr.write(VERSION + "\n")
    ready = threading.Event()
    for _ in range(int(cfg.get("connections", 8))):
        threading.Thread(target=serve, args=(cfg, ready), daemon=True).start()
    if not ready.wait(50):
        sys.stderr.write("could not reach the edge at %s:%s\n" % (cfg["edgeHost"], cfg["edgePort"]))
        return 1
    notify("READY=1\nSTATUS=connected to the rehearsal edge")
    sys.stderr.write("registered connections to the rehearsal edge %s:%s\n" % (cfg["edgeHost"], cfg["edgePort"]))
    while True:
        time.sleep(3600)

if __name__ == "__main__":
    sys.exit(main(sys.argv))
