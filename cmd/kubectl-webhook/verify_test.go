package main

import (
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
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
	file := writeSecret(t, secret)
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
}

// TestVerifySecretBytes checks that the secret file is used byte for byte, as the operator uses the
// Secret, and the hints on trailing whitespace.
func TestVerifySecretBytes(t *testing.T) {
	const secret = "s3cr3t-signing-key"
	const receiverAdvice = "a receiver that trims its secret rejects these requests: give it the Secret's exact bytes, " +
		"or re-create the Secret without the trailing whitespace"
	whsec := signature.StandardSecretPrefix + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	tests := []struct {
		name       string
		scheme     signature.Scheme
		signedWith string // the Secret's value, as the operator signs with it
		file       string // the --secret-file content
		flags      []string
		body       string // verifyBody unless set
		signedAt   time.Duration
		wantCode   int
		wantStdout string
	}{{
		name:       "a Secret created from a file with a newline verifies with the exact bytes",
		signedWith: secret + "\n", file: secret + "\n",
		wantStdout: "signature valid\n" +
			"  note: the secret ends in a newline and the signature was made with it (the operator signs with the Secret's bytes exactly); " +
			receiverAdvice + "\n",
	}, {
		name:       "--trim-newline on the newline of a Secret that has it",
		signedWith: secret + "\n", file: secret + "\n", flags: []string{"--trim-newline"},
		wantCode: 1,
		wantStdout: "signature INVALID: signature does not match\n" +
			"  hint: the signature matches the secret file as it is, ending in a newline, so the Secret that signed it ends in it too: " +
			"leave out --trim-newline; " + receiverAdvice + "\n",
	}, {
		name:       "a file written with echo from a Secret without a newline",
		signedWith: secret, file: secret + "\n",
		wantCode: 1,
		wantStdout: "signature INVALID: signature does not match\n" +
			"  hint: the signature matches the secret without its last newline, so the Secret that signed it has none: " +
			"run again with --trim-newline\n",
	}, {
		name:       "--trim-newline on a file written with echo",
		signedWith: secret, file: secret + "\n", flags: []string{"--trim-newline"},
		wantStdout: "signature valid\n",
	}, {
		name:       "--trim-newline drops a Windows newline",
		signedWith: secret, file: secret + "\r\n", flags: []string{"--trim-newline"},
		wantStdout: "signature valid\n",
	}, {
		name:       "--trim-newline drops one newline only",
		signedWith: secret + "\n", file: secret + "\n\n", flags: []string{"--trim-newline"},
		wantStdout: "signature valid\n" +
			"  note: the secret ends in a newline and the signature was made with it (the operator signs with the Secret's bytes exactly); " +
			receiverAdvice + "\n",
	}, {
		name:       "one newline too many",
		signedWith: secret + "\n", file: secret + "\n\n",
		wantCode: 1,
		wantStdout: "signature INVALID: signature does not match\n" +
			"  hint: the signature matches the secret without its last newline, so the Secret that signed it has none: " +
			"run again with --trim-newline\n",
	}, {
		name:       "trailing spaces",
		signedWith: secret, file: secret + " \t",
		wantCode: 1,
		wantStdout: "signature INVALID: signature does not match\n" +
			"  hint: the signature matches the secret without the whitespace at its end, so the Secret that signed it has none: " +
			"remove the whitespace from the secret file\n",
	}, {
		name:       "the whitespace is not the cause",
		signedWith: secret, file: secret + "\n",
		body:     strings.Replace(verifyBody, "1234.56", "9234.56", 1),
		wantCode: 1,
		wantStdout: "signature INVALID: signature does not match\n" +
			"  hint: the secret ends in a newline, but the signature matches neither with it nor without it, so that is not the cause\n",
	}, {
		name:       "no whitespace hint when the timestamp fails",
		signedWith: secret + "\n", file: secret,
		signedAt:   -10 * time.Minute,
		wantCode:   1,
		wantStdout: "signature INVALID: timestamp is outside the tolerance: 10m ago (tolerance 5m0s)\n",
	}, {
		name:   "a newline after a whsec_ secret makes no difference",
		scheme: signature.SchemeStandardWebhooks, signedWith: whsec, file: whsec + "\n",
		wantStdout: "signature valid\n",
	}, {
		name:   "a space after a whsec_ secret breaks its base64",
		scheme: signature.SchemeStandardWebhooks, signedWith: whsec, file: whsec + " ",
		wantCode: 1,
		wantStdout: "signature INVALID: secret has the whsec_ prefix but is not valid standard base64\n" +
			`  hint: the signature matches the secret without the whitespace at its end, so the Secret that signed it has none: ` +
			"remove the whitespace from the secret file\n",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			scheme := cmp.Or(tt.scheme, signature.SchemeOneFlow)
			h := sign(t, scheme, "msg_1", time.Now().Add(tt.signedAt), tt.signedWith)
			args := []string{"verify", "--scheme", string(scheme), "--secret-file", writeSecret(t, tt.file)}
			if scheme == signature.SchemeOneFlow {
				args = with(args, "--timestamp", h.Get(signature.HeaderTimestamp), "--signature", h.Get(signature.HeaderSignature))
			} else {
				args = with(args, "--id", h.Get(signature.StandardHeaderID),
					"--timestamp", h.Get(signature.StandardHeaderTimestamp), "--signature", h.Get(signature.StandardHeaderSignature))
			}
			r := kubectlWebhook(t, cmp.Or(tt.body, verifyBody), with(args, tt.flags...)...)
			if r.code != tt.wantCode || r.stdout != tt.wantStdout {
				t.Errorf("want exit code %d and stdout\n%s\ngot %s", tt.wantCode, tt.wantStdout, r)
			}
			noSecret(t, r, strings.TrimSpace(tt.file))
		})
	}
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
	file := writeSecret(t, secret)
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

// TestVerifyTimestampAndSchemeHints checks the hints for a timestamp in the other scheme's unit and for a
// request of the other scheme.
func TestVerifyTimestampAndSchemeHints(t *testing.T) {
	const secret = "s3cr3t-signing-key"
	file := writeSecret(t, secret)
	now := time.Now()
	oneFlow := sign(t, signature.SchemeOneFlow, "", now, secret)
	standard := sign(t, signature.SchemeStandardWebhooks, "msg_1", now, secret)
	seconds, milliseconds := strconv.FormatInt(now.Unix(), 10), signature.Timestamp(now)
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout []string // the lines, "*" for one that depends on today's date
	}{{
		name:     "seconds given to 1flow",
		args:     []string{"--timestamp", seconds, "--signature", oneFlow.Get(signature.HeaderSignature)},
		wantCode: 1,
		wantStdout: []string{"*",
			"  hint: the timestamp looks like Unix seconds; the 1flow scheme's X-Webhook-Timestamp is in Unix milliseconds"},
	}, {
		name: "milliseconds given to standard-webhooks",
		args: []string{"--scheme", "standard-webhooks", "--id", "msg_1",
			"--timestamp", milliseconds, "--signature", standard.Get(signature.StandardHeaderSignature)},
		wantCode: 1,
		wantStdout: []string{"signature INVALID: timestamp is outside the tolerance: more than 292y in the future (tolerance 5m0s)",
			"  hint: the timestamp looks like Unix milliseconds; the standard-webhooks scheme's webhook-timestamp is in Unix seconds"},
	}, {
		name: "a standard-webhooks request checked without --scheme",
		args: []string{"--id", "msg_1", "--timestamp", standard.Get(signature.StandardHeaderTimestamp),
			"--signature", standard.Get(signature.StandardHeaderSignature)},
		wantCode: 1,
		wantStdout: []string{"*", `  hint: the signature has the standard-webhooks form "v1,<base64>", --id (webhook-id) is given ` +
			"and the timestamp looks like Unix seconds: did you mean --scheme standard-webhooks?"},
	}, {
		name:     "a standard-webhooks signature alone suggests the scheme",
		args:     []string{"--timestamp", milliseconds, "--signature", standard.Get(signature.StandardHeaderSignature)},
		wantCode: 1,
		wantStdout: []string{"signature INVALID: signature does not match",
			`  hint: the signature has the standard-webhooks form "v1,<base64>": did you mean --scheme standard-webhooks?`},
	}, {
		name: "a 1flow request checked with --scheme standard-webhooks",
		args: []string{"--scheme", "standard-webhooks", "--id", "msg_1", "--timestamp", oneFlow.Get(signature.HeaderTimestamp),
			"--signature", oneFlow.Get(signature.HeaderSignature)},
		wantCode: 1,
		wantStdout: []string{"signature INVALID: timestamp is outside the tolerance: more than 292y in the future (tolerance 5m0s)",
			"  hint: the signature has the 1flow form of 64 hex digits and the timestamp looks like Unix milliseconds: did you mean --scheme 1flow?"},
	}, {
		name:       "--id alone does not suggest standard-webhooks",
		args:       []string{"--id", "msg_1", "--timestamp", oneFlow.Get(signature.HeaderTimestamp), "--signature", strings.Repeat("0", 64)},
		wantCode:   1,
		wantStdout: []string{"signature INVALID: signature does not match"},
	}, {
		name: "a 1flow request with --id verifies",
		args: []string{"--id", "msg_1", "--timestamp", oneFlow.Get(signature.HeaderTimestamp),
			"--signature", oneFlow.Get(signature.HeaderSignature)},
		wantStdout: []string{"signature valid"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := kubectlWebhook(t, verifyBody, append([]string{"verify", "--secret-file", file}, tt.args...)...)
			lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
			match := r.code == tt.wantCode && len(lines) == len(tt.wantStdout)
			for i := 0; match && i < len(lines); i++ {
				match = tt.wantStdout[i] == "*" || lines[i] == tt.wantStdout[i]
			}
			if !match {
				t.Errorf("want exit code %d and stdout\n%s\ngot %s", tt.wantCode, strings.Join(tt.wantStdout, "\n"), r)
			}
			noSecret(t, r, secret)
		})
	}
}

func TestVerifyDescribeOffset(t *testing.T) {
	const year = 365 * 24 * 60 * 60
	tests := []struct {
		offset int64
		want   string
	}{
		{0, "0s in the future"},
		{-90, "90s ago"},
		{10 * 60, "10m in the future"},
		{-(5*60 + 30), "5m30s ago"},
		{-56 * year, "56y ago"},
		{1_705_314_600_000, "more than 292y in the future"},
	}
	for _, tt := range tests {
		if got := describeOffset(tt.offset); got != tt.want {
			t.Errorf("describeOffset(%d) = %q, want %q", tt.offset, got, tt.want)
		}
	}
}

func TestVerifyErrors(t *testing.T) {
	file := writeSecret(t, "secret")
	mustFail(t, kubectlWebhook(t, "", "verify", "--timestamp", "1", "--signature", "x"), `required flag(s) "secret-file" not set`)
	mustFail(t, kubectlWebhook(t, "", "verify", "--secret-file", file, "--timestamp", "1", "--signature", "x", "--scheme", "hmac"),
		`unknown --scheme "hmac"`)
	mustFail(t, kubectlWebhook(t, "", "verify", "--secret-file", filepath.Join(t.TempDir(), "missing"), "--timestamp", "1", "--signature", "x"),
		"read --secret-file")
	mustFail(t, kubectlWebhook(t, "", "verify", "--secret-file", writeSecret(t, ""), "--timestamp", "1", "--signature", "x"), "is empty")
	mustFail(t, kubectlWebhook(t, "", "verify", "--secret-file", writeSecret(t, "\n"), "--trim-newline", "--timestamp", "1", "--signature", "x"),
		"is empty")
	mustFail(t, kubectlWebhook(t, "", "verify", "--secret-file", file, "--timestamp", "yesterday", "--signature", "x"),
		"signature INVALID: timestamp is not a decimal number")
}

// The command the help gives to write the signing secret to a file writes it for its owner alone, even
// under the usual umask.
func TestTheSecretFileHintWritesTheSecretForItsOwnerAlone(t *testing.T) {
	dir := t.TempDir()
	fakeKubectl := filepath.Join(dir, "kubectl")
	// Stands in for kubectl get secret: prints the base64 of the value, as the jsonpath does.
	if err := os.WriteFile(fakeKubectl, []byte("#!/bin/sh\nprintf '%s' czNjcmV0Cg==\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "umask 022; "+writeSecretFile)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", writeSecretFile, err, out)
	}
	info, err := os.Stat(filepath.Join(dir, "secret.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Errorf("secret.txt has mode %v, want -rw------- (readable by its owner alone)", mode)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "secret.txt")); string(data) != "s3cret\n" {
		t.Errorf("secret.txt holds %q, want the Secret's bytes", data)
	}
	// The help, the plugin's README and the user guide give this form, never a plain redirection.
	if help := kubectlWebhook(t, "", "verify", "--help"); !strings.Contains(help.stdout, writeSecretFile) {
		t.Errorf("verify --help does not give %s:\n%s", writeSecretFile, help.stdout)
	}
	for _, doc := range []string{"README.md", "../../docs/user-guide.md"} {
		text, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, hint := range regexp.MustCompile(`[^|]*\|\s*base64 -d\s*>\s*secret\.txt`).FindAllString(string(text), -1) {
			if !strings.Contains(hint, "umask 077") {
				t.Errorf("%s writes the secret world-readable: %s", doc, hint)
			}
		}
	}
}
