package signature_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/1flow/webhook-operator/pkg/signature"
)

// referenceVerifierDir is the folder, relative to the repository root, of the Node script that checks
// signatures with the reference standardwebhooks library.
const referenceVerifierDir = "test/standardwebhooks"

// TestStandardWebhooksReferenceLibrary has the reference JavaScript library verify headers made by
// SignHeaders. It skips when node or the folder's node_modules (npm ci) is missing, unless
// REQUIRE_NODE_VERIFIER=1, when it fails instead.
func TestStandardWebhooksReferenceLibrary(t *testing.T) {
	dir := filepath.Join(repoRoot(t), filepath.FromSlash(referenceVerifierDir))
	unavailable := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("REQUIRE_NODE_VERIFIER") == "1" {
			t.Fatalf(format+" (REQUIRE_NODE_VERIFIER=1, so this fails instead of skipping)", args...)
		}
		t.Skipf(format+"; set REQUIRE_NODE_VERIFIER=1 to make this a failure", args...)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		unavailable("node is not on PATH, so the reference verifier cannot run")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "standardwebhooks")); err != nil {
		unavailable("%s/node_modules/standardwebhooks is missing: run `npm ci` in %s", referenceVerifierDir, referenceVerifierDir)
	}

	// The library checks the timestamp against its own clock with a 5-minute tolerance.
	now := time.Now()
	current := []byte("whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	previous := []byte("whsec_cm90YXRpb24ta2V5LTAxMjM0NTY3ODlhYmNkZWZnaGk=")
	third := []byte("whsec_dGhpcmQta2V5LXRoaXJkLWtleS10aGlyZC1rZXk=")
	sign := func(id string, body string, secrets ...[]byte) http.Header {
		t.Helper()
		h, err := signature.SignHeaders(signature.SchemeStandardWebhooks, id, now, []byte(body), secrets...)
		if err != nil {
			t.Fatalf("SignHeaders: %v", err)
		}
		return h
	}
	json1 := `{"type":"document.ready","timestamp":"2024-01-01T00:00:00Z","data":{"id":"doc_1"}}`
	unicode := `{"event":"document.ready","documentId":"doc_<&>é","note":"日本語 ✓"}`
	rotation := sign("whd_rotation", json1, current, previous)
	tampered := sign("whd_tampered", json1, current)
	stale, err := signature.SignHeaders(signature.SchemeStandardWebhooks, "whd_stale", now.Add(-10*time.Minute), []byte(json1), current)
	if err != nil {
		t.Fatalf("SignHeaders: %v", err)
	}
	unsigned := flat(sign("whd_unsigned", json1, current))
	delete(unsigned, http.CanonicalHeaderKey(signature.StandardHeaderSignature))

	type line struct {
		Secret  string            `json:"secret"`
		Format  string            `json:"format,omitempty"`
		Headers map[string]string `json:"headers"`
		Body    string            `json:"body"`
	}
	// The lines verify.js prints: the library's messages, so that a rejection is only accepted for the
	// reason a case is about.
	const (
		verified          = "ok"
		signatureMismatch = "error: No matching signature found"
		timestampTooOld   = "error: Message timestamp too old"
		missingHeaders    = "error: Missing required headers"
	)
	tests := []struct {
		name string
		line line
		want string
	}{
		{"one whsec_ key", line{Secret: string(current), Headers: flat(sign("msg_1", json1, current)), Body: json1}, verified},
		{"UTF-8 and HTML characters in body", line{Secret: string(current), Headers: flat(sign("msg_2", unicode, current)), Body: unicode}, verified},
		{"empty body", line{Secret: string(current), Headers: flat(sign("msg_3", "", current)), Body: ""}, verified},
		{"pretty-printed body", line{Secret: string(previous), Headers: flat(sign("msg_4", "{\n  \"a\": 1\n}\n", previous)), Body: "{\n  \"a\": 1\n}\n"}, verified},
		{"body that is not JSON", line{Secret: string(current), Headers: flat(sign("msg_7", "a=1&b=2", current)), Body: "a=1&b=2"}, verified},
		{"rotation header, current key", line{Secret: string(current), Headers: flat(rotation), Body: json1}, verified},
		{"rotation header, previous key", line{Secret: string(previous), Headers: flat(rotation), Body: json1}, verified},
		{"raw (unprefixed) secret", line{Secret: "raw-secret-0123456789abcdef", Format: "raw", Headers: flat(sign("msg_5", json1, []byte("raw-secret-0123456789abcdef"))), Body: json1}, verified},
		{"unknown version before v1", line{Secret: string(current), Headers: prefixSig(sign("msg_6", json1, current), "v2,AAAA v1a,BBBB "), Body: json1}, verified},
		{"tampered body", line{Secret: string(current), Headers: flat(tampered), Body: strings.Replace(json1, "doc_1", "doc_2", 1)}, signatureMismatch},
		{"rotation header, third key", line{Secret: string(third), Headers: flat(rotation), Body: json1}, signatureMismatch},
		// Rejections for other reasons, which the two cases above must not be mistaken for.
		{"timestamp outside the tolerance", line{Secret: string(current), Headers: flat(stale), Body: json1}, timestampTooOld},
		{"no signature header", line{Secret: string(current), Headers: unsigned, Body: json1}, missingHeaders},
	}

	var in bytes.Buffer
	enc := json.NewEncoder(&in)
	for _, tc := range tests {
		if err := enc.Encode(tc.line); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "verify.js")
	cmd.Dir = dir
	cmd.Stdin = &in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node verify.js: %v\nstderr:\n%s", err, stderr.String())
	}
	got := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(got) != len(tests) {
		t.Fatalf("verify.js printed %d lines for %d requests:\n%s\nstderr:\n%s", len(got), len(tests), out, stderr.String())
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got[i] != tc.want {
				t.Fatalf("reference library: %q, want %q\nheaders: %v", got[i], tc.want, tc.line.Headers)
			}
			t.Logf("reference library: %s", got[i])
		})
	}
}

// flat turns the headers into the name-to-value object the verifier reads.
func flat(h http.Header) map[string]string {
	m := make(map[string]string, len(h))
	for k := range h {
		m[k] = h.Get(k)
	}
	return m
}

func prefixSig(h http.Header, prefix string) map[string]string {
	m := flat(h)
	m[http.CanonicalHeaderKey(signature.StandardHeaderSignature)] = prefix + m[http.CanonicalHeaderKey(signature.StandardHeaderSignature)]
	return m
}

// repoRoot walks up from the working directory to the folder holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod found above the test's working directory")
		}
		dir = parent
	}
}
