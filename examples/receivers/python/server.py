"""An example receiver of webhook-operator's document.ready webhooks, signed with the default 1flow
scheme. Standard library only (Python 3.11+).

    WEBHOOK_SECRET=... PORT=8080 python3 server.py

Environment:
    WEBHOOK_SECRET           the signing secret: the value of the endpoint's Secret (required)
    WEBHOOK_PREVIOUS_SECRET  the key being rotated out, accepted too during a key rollover (optional)
    PORT                     the port to listen on (default 8080)

Every request is verified over the raw body before it is parsed: X-Webhook-Signature must be the
lowercase hex HMAC-SHA256 of X-Webhook-Timestamp (Unix milliseconds) followed by the body, compared in
constant time, and the timestamp must be at most 5 minutes from this machine's clock.
"""

import hashlib
import hmac
import json
import os
import queue
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_MS = 5 * 60 * 1000
MAX_BODY = 8 << 20

SECRET = os.environ.get("WEBHOOK_SECRET", "")
if not SECRET:
    sys.exit("WEBHOOK_SECRET is required: the signing secret of the WebhookEndpoint's Secret")
# The 1flow scheme signs with one key; during a rollover accept the previous key too.
KEYS = [k.encode() for k in (SECRET, os.environ.get("WEBHOOK_PREVIOUS_SECRET", "")) if k]
PORT = int(os.environ.get("PORT", "8080"))

jobs: "queue.Queue[tuple[str, bool, bytes]]" = queue.Queue(maxsize=1024)


def verify(timestamp: str, signature: str, body: bytes) -> bool:
    """Checks the 1flow signature of a request over its raw body."""
    if not re.fullmatch(r"[0-9]+", timestamp):
        return False
    if abs(time.time() * 1000 - int(timestamp)) > TOLERANCE_MS:
        return False  # too old (or too far ahead): a possible replay
    received = signature.encode("latin-1", errors="replace")
    matched = False
    for key in KEYS:
        expected = hmac.new(key, timestamp.encode() + body, hashlib.sha256).hexdigest().encode()
        matched |= hmac.compare_digest(received, expected)
    return matched


def process(delivery_id: str, is_test: bool, body: bytes) -> None:
    payload = json.loads(body)
    if payload.get("event") != "document.ready":
        print(f"delivery {delivery_id}: ignoring event {payload.get('event')!r}", flush=True)
        return
    status = payload["status"]
    # Delivery is at least once: every attempt of one event to one endpoint carries the same
    # X-Webhook-Id, so a real receiver records the ids it processed and skips repeats.
    print(f"delivery {delivery_id}: document ready: {payload['documentId']} "
          f"({status.get('docType')}, {status.get('extractionStatus')}, test={is_test})", flush=True)
    document = payload.get("document")
    if document:
        # json.loads(body, parse_float=decimal.Decimal) keeps every digit of totalAmount.
        print(f"  summary: {document.get('description')!r}, total amount {document.get('totalAmount')}", flush=True)
    # extraction is None when extraction failed, the document type has no extractable fields, or the
    # document is still processing.
    extraction = payload.get("extraction")
    if extraction:
        print(f"  fields: {json.dumps(extraction.get('fields'))}", flush=True)
        print(f"  tables: {json.dumps(extraction.get('tables'))}", flush=True)


def worker() -> None:
    while True:
        delivery_id, is_test, body = jobs.get()
        try:
            process(delivery_id, is_test, body)
        except (ValueError, KeyError, TypeError) as err:
            print(f"delivery {delivery_id}: cannot process: {err}", flush=True)


class Handler(BaseHTTPRequestHandler):
    server_version = "example-receiver"

    def do_POST(self) -> None:
        if self.path != "/webhook":
            self.reply(404, {"error": "not found"})
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.reply(411, {"received": False, "error": "Content-Length required"})
            return
        if length < 0 or length > MAX_BODY:
            self.reply(413, {"received": False, "error": "body too large"})
            return
        body = self.rfile.read(length)  # the raw bytes: verify them before parsing
        delivery_id = self.headers.get("X-Webhook-Id", "")
        if not verify(self.headers.get("X-Webhook-Timestamp", ""), self.headers.get("X-Webhook-Signature", ""), body):
            self.log_message("rejected request %r: invalid signature", delivery_id)
            self.reply(401, {"received": False, "error": "invalid signature"})
            return
        # Answer first (the operator waits at most the endpoint's spec.timeout, 10s by default), process later.
        try:
            jobs.put_nowait((delivery_id, self.headers.get("X-Webhook-Test") == "true", body))
        except queue.Full:
            # Ask the operator to come back later: it retries 503 with backoff and honours Retry-After.
            self.reply(503, {"received": False, "error": "busy"}, {"Retry-After": "30"})
            return
        self.reply(200, {"received": True})

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self.reply(200, {"ok": True})
        else:
            self.reply(404, {"error": "not found"})

    def reply(self, code: int, obj: dict, headers: dict | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def main() -> None:
    threading.Thread(target=worker, daemon=True).start()
    server = ThreadingHTTPServer(("", PORT), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"listening on :{PORT}, POST /webhook", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
