#!/usr/bin/env node
// Verifies standard-webhooks requests with the reference library, independently of pkg/signature.
//
// Reads JSON lines from stdin, each {"secret": "...", "headers": {...}, "body": "..."} with an optional
// "format": "raw" (the secret's characters are the key bytes, as pkg/signature does for a secret
// without the whsec_ prefix), and prints one line per input line: "ok", or "error: <message>" with the
// library's message, which names the reason ("No matching signature found", "Message timestamp too old",
// "Missing required headers"), so that a caller can tell a wrong signature from any other rejection.
// The library checks the timestamp against the current time with its 5-minute tolerance.
"use strict";

const readline = require("node:readline");
const { Webhook } = require("standardwebhooks");

function verifyLine(line) {
  const req = JSON.parse(line);
  const wh = req.format === "raw" ? new Webhook(req.secret, { format: "raw" }) : new Webhook(req.secret);
  // jsonParse: false so that only the signature is judged: by default verify() also parses the body as
  // JSON and throws on a body that is not.
  wh.verify(req.body, req.headers, { jsonParse: false });
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on("line", (line) => {
  if (line.trim() === "") {
    return;
  }
  try {
    verifyLine(line);
    process.stdout.write("ok\n");
  } catch (err) {
    const msg = String(err && err.message ? err.message : err).replace(/[\r\n]+/g, " ");
    process.stdout.write(`error: ${msg}\n`);
  }
});
