package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/cookiejar"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/cli-runtime/pkg/genericiooptions"
)

func TestUIRefusesExposureUnlessAskedFor(t *testing.T) {
	mustFail(t, kubectlWebhook(t, "", "ui", "--address", "0.0.0.0", "--no-browser"),
		"--address 0.0.0.0 is not a loopback address")
	mustFail(t, kubectlWebhook(t, "", "ui", "--address", "localhost"), "--address must be an IP address")
	mustFail(t, kubectlWebhook(t, "", "ui", "--port", "70000"), "--port must be between 0 and 65535")
	mustFail(t, kubectlWebhook(t, "", "ui", "extra"), "ui takes no arguments")
}

// lockedBuffer is written by the running command and read by the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var consoleURL = regexp.MustCompile(`http://127\.0\.0\.1:[0-9]+/\?token=[A-Za-z0-9_-]+`)

// TestUIServesUntilInterrupted runs the command as a user would: it prints a URL with a token, opens
// it in "the browser" (here: a recorder), serves it, and stops when the context ends (Ctrl-C).
func TestUIServesUntilInterrupted(t *testing.T) {
	ns := newNamespace(t)
	newEndpoint(t, ns, "orders")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut lockedBuffer
	streams := genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, streams, []string{"ui", "-n", ns, "--no-browser", "--kubeconfig", kubeconfig})
	}()

	var url string
	for deadline := time.Now().Add(30 * time.Second); url == ""; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no URL printed; stdout %q, stderr %q", out.String(), errOut.String())
		}
		url = consoleURL.FindString(out.String())
	}
	if !strings.Contains(out.String(), "namespace "+ns) {
		t.Errorf("stdout %q does not name the namespace", out.String())
	}
	if resp, err := http.Get(strings.Split(url, "?")[0] + "endpoints"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without the token: %v %v, want 401", resp, err)
	}
	// The client follows the redirect with the cookie it was given, as a browser does.
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Jar: jar}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body := new(bytes.Buffer)
	_, _ = body.ReadFrom(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(body.String(), "orders") || resp.Request.URL.RawQuery != "" {
		t.Fatalf("with the token: %d at %s, want the endpoints page without the token in its URL:\n%s",
			resp.StatusCode, resp.Request.URL, body)
	}

	cancel()
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("exit code %d after Ctrl-C; stderr %q", code, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the console did not stop after Ctrl-C")
	}
}
