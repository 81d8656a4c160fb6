// An example receiver of webhook-operator's document.ready webhooks, signed with the default 1flow
// scheme: the Express handler of the webhook callbacks contract, with express.raw() so that the
// signature is checked over the exact bytes received.
//
//   npm ci && WEBHOOK_SECRET=... PORT=8080 node server.js
//
// Environment:
//   WEBHOOK_SECRET           the signing secret: the value of the endpoint's Secret (required)
//   WEBHOOK_PREVIOUS_SECRET  the key being rotated out, accepted too during a key rollover (optional)
//   PORT                     the port to listen on (default 8080)
'use strict';

const crypto = require('crypto');
const express = require('express');

const TOLERANCE_MS = 5 * 60 * 1000;

const secret = process.env.WEBHOOK_SECRET;
if (!secret) {
  console.error('WEBHOOK_SECRET is required: the signing secret of the WebhookEndpoint\'s Secret');
  process.exit(1);
}
// The 1flow scheme signs with one key; during a rollover accept the previous key too.
const keys = [secret, process.env.WEBHOOK_PREVIOUS_SECRET].filter(Boolean);
const port = Number(process.env.PORT || 8080);

// verify checks X-Webhook-Timestamp (Unix milliseconds) and X-Webhook-Signature (lowercase hex
// HMAC-SHA256 of the timestamp string followed by the raw body) in constant time.
function verify(timestamp, signature, rawBody) {
  if (!/^[0-9]+$/.test(timestamp) || Math.abs(Date.now() - Number(timestamp)) > TOLERANCE_MS) {
    return false; // missing, malformed, or too old: a possible replay
  }
  const received = Buffer.from(signature, 'utf8');
  return keys.some((key) => {
    const expected = Buffer.from(
      crypto.createHmac('sha256', key).update(timestamp).update(rawBody).digest('hex'), 'utf8');
    return received.length === expected.length && crypto.timingSafeEqual(received, expected);
  });
}

function processPayload(deliveryId, isTest, payload) {
  const { event, documentId, status, document, extraction } = payload;
  if (event !== 'document.ready') {
    console.log(`delivery ${deliveryId}: ignoring event ${event}`);
    return;
  }
  // Delivery is at least once: every attempt of one event to one endpoint carries the same
  // X-Webhook-Id, so a real receiver records the ids it processed and skips repeats.
  console.log(`delivery ${deliveryId}: document ready: ${documentId} (${status.docType}, ${status.extractionStatus}, test=${isTest})`);
  if (document) {
    // JSON.parse turns totalAmount into a double; parse the raw body with a decimal-aware parser if
    // you need every digit.
    console.log('  summary:', document.description, 'total amount:', document.totalAmount);
  }
  // extraction is null when extraction failed, the document type has no extractable fields, or the
  // document is still processing.
  if (extraction) {
    console.log('  fields:', JSON.stringify(extraction.fields));
    console.log('  tables:', JSON.stringify(extraction.tables));
  }
}

const app = express();

app.post('/webhook', express.raw({ type: 'application/json', limit: '8mb' }), (req, res) => {
  const rawBody = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  const deliveryId = req.get('X-Webhook-Id') || '';
  if (!verify(req.get('X-Webhook-Timestamp') || '', req.get('X-Webhook-Signature') || '', rawBody)) {
    console.log(`rejected request ${JSON.stringify(deliveryId)}: invalid signature`);
    return res.status(401).json({ received: false, error: 'invalid signature' });
  }
  let payload;
  try {
    payload = JSON.parse(rawBody.toString('utf8'));
  } catch (err) {
    return res.status(400).json({ received: false, error: 'invalid JSON' });
  }
  // Answer first (the operator waits at most the endpoint's spec.timeout, 10s by default), process later.
  res.status(200).json({ received: true });
  setImmediate(() => processPayload(deliveryId, req.get('X-Webhook-Test') === 'true', payload));
});

app.get('/healthz', (req, res) => res.send('ok\n'));

const server = app.listen(port, (err) => {
  if (err) {
    throw err;
  }
  console.log(`listening on :${port}, POST /webhook`);
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));
