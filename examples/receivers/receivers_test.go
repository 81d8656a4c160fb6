// Package receivers_test runs each example receiver (Go, Node.js, Python) as a subprocess and checks
// that it accepts requests signed by pkg/signature and rejects tampered, stale and unsigned ones.
//
// The Node.js receiver needs `node` and `npm ci --prefix examples/receivers/node`; the Python one needs
// `python3`. Without them those receivers are skipped, unless REQUIRE_EXAMPLE_RECEIVERS=1, when they
// fail instead (as in CI).
package receivers_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/1flow/webhook-operator/pkg/signature"
)

const (
	currentKey  = "example-receiver-current-key"
	previousKey = "example-receiver-previous-key"
)

// body is a payload as the operator sends it (see internal/delivery).
var body = []byte(`{"event":"document.ready","success":true,"documentId":"doc_abc123xyz",` +
	`"status":{"extractionStatus":"INDEXED","docType":"INVOICE","createdAt":"2024-01-15T10:30:00Z",` +
	`"updatedAt":"2024-01-15T10:35:00Z","extractionErrors":null},` +
	`"document":{"description":"Invoice #1042 from Acme","totalAmount":1234.56,"documentDate":"2024-01-15"},` +
	`"extraction":{"fields":{"invoiceNumber":"1042"},"tables":{"items":[{"quantity":2}]}}}`)

type receiver struct {
	name string
	// command returns the command that runs the receiver, or calls unavailable.
	command func(t *testing.T) *exec.Cmd
}

func TestReceivers(t *testing.T) {
	receivers := []receiver{
		{name: "go", command: goCommand},
		{name: "node", command: nodeCommand},
		{name: "python", command: pythonCommand},
	}
	for _, r := range receivers {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			cmd := r.command(t)
			url := start(t, cmd)
			checkReceiver(t, url)
		})
	}
}

// unavailable skips a receiver whose runtime is missing, or fails with REQUIRE_EXAMPLE_RECEIVERS=1.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("REQUIRE_EXAMPLE_RECEIVERS") == "1" {
		t.Fatalf("%s (REQUIRE_EXAMPLE_RECEIVERS=1, so this fails instead of skipping)", msg)
	}
	t.Skipf("%s; set REQUIRE_EXAMPLE_RECEIVERS=1 to make this a failure", msg)
}

func goCommand(t *testing.T) *exec.Cmd {
	// Build first: `go run` would leave the receiver running as its child when the test kills it.
	bin := filepath.Join(t.TempDir(), "receiver")
	build := exec.Command("go", "build", "-o", bin, "./go")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/receivers/go: %v\n%s", err, out)
	}
	return exec.Command(bin)
}

func nodeCommand(t *testing.T) *exec.Cmd {
	node, err := exec.LookPath("node")
	if err != nil {
		unavailable(t, "node is not installed")
	}
	if _, err := os.Stat(filepath.Join("node", "node_modules", "express")); err != nil {
		unavailable(t, "examples/receivers/node/node_modules/express is missing: run `npm ci --prefix examples/receivers/node`")
	}
	cmd := exec.Command(node, "server.js")
	cmd.Dir = "node"
	return cmd
}

func pythonCommand(t *testing.T) *exec.Cmd {
	python, err := exec.LookPath("python3")
	if err != nil {
		unavailable(t, "python3 is not installed")
	}
	cmd := exec.Command(python, "server.py")
	cmd.Dir = "python"
	cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1")
	return cmd
}

// syncBuffer collects a subprocess's output for failure messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs the receiver on a free port with the two keys, waits until it accepts connections, and
// kills it when the test ends. It returns the webhook URL.
func start(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	port := freePort(t)
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env,
		"WEBHOOK_SECRET="+currentKey,
		"WEBHOOK_PREVIOUS_SECRET="+previousKey,
		"PORT="+strconv.Itoa(port))
	output := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = output, output
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if err := <-exited; t.Failed() {
			t.Logf("receiver exited (%v); its output:\n%s", err, output.String())
		}
	})

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = conn.Close()
			break
		}
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("receiver exited before listening (%v):\n%s", err, output.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("receiver did not listen on %s within 15s:\n%s", addr, output.String())
		}
	}
	return "http://" + addr + "/webhook"
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

func signed(t *testing.T, at time.Time, payload []byte, key string) http.Header {
	t.Helper()
	h, err := signature.SignHeaders(signature.SchemeOneFlow, "whd_example", at, payload, []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func checkReceiver(t *testing.T, url string) {
	now := time.Now()
	tampered := bytes.Replace(body, []byte(`1234.56`), []byte(`9234.56`), 1)
	cases := []struct {
		name   string
		header http.Header
		body   []byte
		want   int
	}{
		{"signed with the current key", signed(t, now, body, currentKey), body, http.StatusOK},
		{"signed with the previous key during a rotation", signed(t, now, body, previousKey), body, http.StatusOK},
		{"tampered body", signed(t, now, body, currentKey), tampered, http.StatusUnauthorized},
		{"timestamp 10 minutes old", signed(t, now.Add(-10*time.Minute), body, currentKey), body, http.StatusUnauthorized},
		{"timestamp 10 minutes ahead", signed(t, now.Add(10*time.Minute), body, currentKey), body, http.StatusUnauthorized},
		{"signed with another key", signed(t, now, body, "some-other-key"), body, http.StatusUnauthorized},
		{"unsigned", http.Header{}, body, http.StatusUnauthorized},
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, c := range cases {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range c.header {
			req.Header[k] = v
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "1Flow-Webhook/1.0")
		started := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		raw, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: status %d, want %d (body %s)", c.name, resp.StatusCode, c.want, raw)
			continue
		}
		var answer struct {
			Received *bool `json:"received"`
		}
		if err := json.Unmarshal(raw, &answer); err != nil || answer.Received == nil {
			t.Errorf("%s: body %q is not {\"received\": ...}", c.name, raw)
			continue
		}
		if *answer.Received != (c.want == http.StatusOK) {
			t.Errorf("%s: received is %t with status %d", c.name, *answer.Received, resp.StatusCode)
		}
		if c.want == http.StatusOK && time.Since(started) > 2*time.Second {
			t.Errorf("%s: answered after %s; receivers should answer at once and process in the background", c.name, time.Since(started))
		}
	}
}
