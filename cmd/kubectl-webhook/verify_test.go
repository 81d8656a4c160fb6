package main

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/1flow/webhook-operator/pkg/signature"
)

const verifyBody = `{"event":"document.ready","success":true,"documentId":"doc_abc123xyz","document":{"totalAmount":1234.56}}`

// writeSecret writes content to a file in the test's folder.
func writeSecret(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// sign returns the signature headers of verifyBody.
func sign(t *testing.T, scheme signature.Scheme, id string, at time.Time, secret string) http.Header {
	t.Helper()
	h, err := signature.SignHeaders(scheme, id, at, []byte(verifyBody), []byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// with returns a copy of args with extra appended.
func with(args []string, extra ...string) []string {
	return append(slices.Clone(args), extra...)
}

// noSecret fails the test if the run printed the secret.
func noSecret(t *testing.T, r result, secret string) {
	t.Helper()
	if strings.Contains(r.stdout+r.stderr, secret) {
		t.Fatalf("the output contains the secret: %s", r)
	}
}

func TestVerifyOneFlow(t *testing.T) {
	const secret = "s3cr3t-signing-key"
	file := writeSecret(t, secret+"\n") // the trailing newline of `echo ... > file` is ignored
	h := sign(t, signature.SchemeOneFlow, "", time.Now(), secret)
	args := []string{"verify", "--secret-file", file,
		"--timestamp", h.Get(signature.HeaderTimestamp), "--signature", h.Get(signature.HeaderSignature)}

	r := kubectlWebhook(t, verifyBody, args...)
	mustSucceed(t, r)
	if r.stdout != "signature valid\n" {
		t.Errorf("stdout = %q", r.stdout)
	}
	noSecret(t, r, secret)

	// --scheme 1flow is the default; naming it changes nothing.
	mustSucceed(t, kubectlWebhook(t, verifyBody, with(args, "--scheme", "1flow")...))

	tampered := strings.Replace(verifyBody, "1234.56", "9234.56", 1)
	r = kubectlWebhook(t, tampered, args...)
	if r.code != 1 || r.stdout != "signature INVALID: signature does not match\n" {
		t.Errorf("tampered body: %s", r)
	}
	noSecret(t, r, secret)

	// Only one trailing newline is trimmed: a second one is part of the secret.
	twoNewlines := slices.Clone(args)
	twoNewlines[2] = writeSecret(t, secret+"\n\n")
	r = kubectlWebhook(t, verifyBody, twoNewlines...)
	mustFail(t, r, "signature INVALID: signature does not match")
}

func TestVerifyOneFlowTolerance(t *testing.T) {
	const secret = "s3cr3t-signing-key"
	file := writeSecret(t, secret)
	h := sign(t, signature.SchemeOneFlow, "", time.Now().Add(-10*time.Minute), secret)
	args := []string{"verify", "--secret-file", file,
		"--timestamp", h.Get(signature.HeaderTimestamp), "--signature", h.Get(signature.HeaderSignature)}

	r := kubectlWebhook(t, verifyBody, args...)
	if r.code != 1 || !strings.HasPrefix(r.stdout, "signature INVALID: timestamp is outside the tolerance") {
		t.Errorf("expired timestamp: %s", r)
	}
	mustSucceed(t, kubectlWebhook(t, verifyBody, with(args, "--no-tolerance")...))
	mustSucceed(t, kubectlWebhook(t, verifyBody, with(args, "--tolerance", "1h")...))
	mustFail(t, kubectlWebhook(t, verifyBody, with(args, "--tolerance", "1h", "--no-tolerance")...), "none of the others can be")
	// A tampered body stays invalid without the replay check.
	mustFail(t, kubectlWebhook(t, verifyBody+" ", with(args, "--no-tolerance")...), "signature INVALID: signature does not match")
}

func TestVerifyStandardWebhooks(t *testing.T) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	secret := signature.StandardSecretPrefix + base64.StdEncoding.EncodeToString(key)
	file := writeSecret(t, secret+"\n")
	h := sign(t, signature.SchemeStandardWebhooks, "msg_2b7f", time.Now(), secret)
	args := []string{"verify", "--scheme", "standard-webhooks", "--secret-file", file, "--id", h.Get(signature.StandardHeaderID),
		"--timestamp", h.Get(signature.StandardHeaderTimestamp), "--signature", h.Get(signature.StandardHeaderSignature)}

	r := kubectlWebhook(t, verifyBody, args...)
	mustSucceed(t, r)
	if r.stdout != "signature valid\n" {
		t.Errorf("stdout = %q", r.stdout)
	}
	noSecret(t, r, secret)

	r = kubectlWebhook(t, strings.Replace(verifyBody, "doc_abc123xyz", "doc_other", 1), args...)
	if r.code != 1 || r.stdout != "signature INVALID: signature does not match\n" {
		t.Errorf("tampered body: %s", r)
	}
	noSecret(t, r, secret)

	// The id is signed too.
	wrongID := slices.Clone(args)
	wrongID[6] = "msg_other"
	mustFail(t, kubectlWebhook(t, verifyBody, wrongID...), "signature INVALID: signature does not match")

	// The id is required by the scheme.
	noID := slices.Delete(slices.Clone(args), 5, 7)
	mustFail(t, kubectlWebhook(t, verifyBody, noID...), "--id (the webhook-id header) is required")
}

func TestVerifyStandardWebhooksTolerance(t *testing.T) {
	secret := signature.StandardSecretPrefix + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	file := writeSecret(t, secret)
	h := sign(t, signature.SchemeStandardWebhooks, "msg_1", time.Now().Add(-time.Hour), secret)
	args := []string{"verify", "--scheme", "standard-webhooks", "--secret-file", file, "--id", "msg_1",
		"--timestamp", h.Get(signature.StandardHeaderTimestamp), "--signature", h.Get(signature.StandardHeaderSignature)}

	r := kubectlWebhook(t, verifyBody, args...)
	if r.code != 1 || !strings.HasPrefix(r.stdout, "signature INVALID: timestamp is outside the tolerance") {
		t.Errorf("expired timestamp: %s", r)
	}
	mustSucceed(t, kubectlWebhook(t, verifyBody, with(args, "--no-tolerance")...))
}

func TestVerifyErrors(t *testing.T) {
	file := writeSecret(t, "secret")
	mustFail(t, kubectlWebhook(t, "", "verify", "--timestamp", "1", "--signature", "x"), `required flag(s) "secret-file" not set`)
	mustFail(t, kubectlWebhook(t, "", "verify", "--secret-file", file, "--timestamp", "1", "--signature", "x", "--scheme", "hmac"),
		`unknown --scheme "hmac"`)
	mustFail(t, kubectlWebhook(t, "", "verify", "--secret-file", filepath.Join(t.TempDir(), "missing"), "--timestamp", "1", "--signature", "x"),
		"read --secret-file")
	mustFail(t, kubectlWebhook(t, "", "verify", "--secret-file", writeSecret(t, "\n"), "--timestamp", "1", "--signature", "x"), "is empty")
	mustFail(t, kubectlWebhook(t, "", "verify", "--secret-file", file, "--timestamp", "yesterday", "--signature", "x"),
		"signature INVALID: timestamp is not a decimal number")
}
