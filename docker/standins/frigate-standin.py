#!/usr/bin/env python3
"""Stand-in for Frigate's HTTP API in docker/test-compose.sh: port 5000 answers
GET /api/events/<id>/snapshot.jpg with the JPEG at $SNAPSHOT (read on every request) and
GET /api/version with a version; anything else gets Frigate's 404 JSON."""
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SNAPSHOT = os.environ.get("SNAPSHOT", "/shared/snapshot.jpg")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?", 1)[0]
        parts = path.split("/")
        if len(parts) == 5 and parts[1:3] == ["api", "events"] and parts[4] == "snapshot.jpg":
            with open(SNAPSHOT, "rb") as f:
                self.reply(200, "image/jpeg", f.read())
        elif path == "/api/version":
            self.reply(200, "text/plain", b"0.14.1-standin")
        else:
            self.reply(404, "application/json", b'{"success": false, "message": "Event not found"}')

    def reply(self, status, ctype, body):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("0.0.0.0", 5000), Handler).serve_forever()
