package delivery

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

// capturedRequest is what a test receiver saw.
type capturedRequest struct {
	method        string
	path          string
	header        http.Header
	body          []byte
	contentLength int64
}

// captureServer answers every request with status and body and records the last request.
func captureServer(t *testing.T, status int, respBody string) (*httptest.Server, func() capturedRequest) {
	t.Helper()
	var mu sync.Mutex
	var last capturedRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("server: read body: %v", err)
		}
		mu.Lock()
		last = capturedRequest{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), body: b, contentLength: r.ContentLength}
		mu.Unlock()
		w.WriteHeader(status)
		_, _ = io.WriteString(w, respBody)
	}))
	t.Cleanup(srv.Close)
	return srv, func() capturedRequest {
		mu.Lock()
		defer mu.Unlock()
		return last
	}
}

// testBody is a document.ready payload as package payload encodes it; the sender treats it as opaque
// bytes.
func testBody() []byte {
	return []byte(`{"event":"document.ready","success":true,"documentId":"doc_abc123xyz",` +
		`"status":{"extractionStatus":"INDEXED","docType":"INVOICE","createdAt":"2024-01-02T03:04:05Z",` +
		`"updatedAt":"2024-01-02T03:05:06.789Z","extractionErrors":[{"field":"totalAmount","message":"low confidence"}]},` +
		`"document":{"description":"Invoice #42","totalAmount":1234.56,"documentDate":"2024-01-02"},` +
		`"extraction":{"fields":{"vendor":"ACME","vat":19},"tables":{"items":[{"sku":"A1","qty":2,"price":9.99}]}}}`)
}

// independentHMAC computes the expected signature with crypto/hmac directly, not via package signature.
func independentHMAC(secret []byte, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(timestamp + string(body)))
	return hex.EncodeToString(mac.Sum(nil))
}

// onlyValue returns the single value of a header, failing if it is absent or repeated.
func onlyValue(t *testing.T, h http.Header, name string) string {
	t.Helper()
	vs := h.Values(name)
	if len(vs) != 1 {
		t.Fatalf("header %s: got %d values %q, want exactly one", name, len(vs), vs)
	}
	return vs[0]
}

func TestSendSigned(t *testing.T) {
	fixed := time.Date(2024, 3, 1, 12, 0, 0, 123_456_789, time.UTC)
	const wantTimestamp = "1709294400123" // date -u -d @1709294400 → 2024-03-01T12:00:00Z, plus 123 ms
	secret := []byte("whsec_9f8e7d6c5b4a")

	srv, last := captureServer(t, http.StatusOK, `{"received":true,"message":"Webhook processed successfully"}`)
	s := NewSender(WithClock(func() time.Time { return fixed }))
	body := testBody()
	res := s.Send(context.Background(), Request{
		URL:     srv.URL + "/hooks/1flow",
		Body:    body,
		ID:      "evt-123/endpoint-a",
		Secret:  secret,
		Timeout: 5 * time.Second,
	})

	if !res.Success || res.StatusCode != http.StatusOK || res.Error != "" {
		t.Fatalf("result = %+v, want success with status 200 and no error", res)
	}
	if !res.Start.Equal(fixed) {
		t.Errorf("Start = %v, want the injected clock %v", res.Start, fixed)
	}
	if res.Duration != 0 {
		t.Errorf("Duration = %s, want 0 with a frozen clock", res.Duration)
	}

	got := last()
	if got.method != http.MethodPost {
		t.Errorf("method = %q, want POST", got.method)
	}
	if got.path != "/hooks/1flow" {
		t.Errorf("path = %q, want /hooks/1flow", got.path)
	}
	if string(got.body) != string(body) {
		t.Errorf("body received differs from body sent:\n got %s\nwant %s", got.body, body)
	}
	if got.contentLength != int64(len(body)) {
		t.Errorf("Content-Length = %d, want %d", got.contentLength, len(body))
	}
	for name, want := range map[string]string{
		"Content-Type":        "application/json",
		"User-Agent":          "1Flow-Webhook/1.0",
		"X-Webhook-Id":        "evt-123/endpoint-a",
		"X-Webhook-Timestamp": wantTimestamp,
	} {
		if v := onlyValue(t, got.header, name); v != want {
			t.Errorf("header %s = %q, want %q", name, v, want)
		}
	}
	sig := onlyValue(t, got.header, "X-Webhook-Signature")
	if want := independentHMAC(secret, wantTimestamp, got.body); sig != want {
		t.Errorf("X-Webhook-Signature = %q, want HMAC-SHA256(secret, timestamp+body) = %q", sig, want)
	}
	if want := independentHMAC([]byte("wrong"), wantTimestamp, got.body); sig == want {
		t.Errorf("signature does not depend on the secret")
	}
}

// The signature timestamp is the attempt start; Duration is measured with the same clock.
func TestSendClockStartAndDuration(t *testing.T) {
	t0 := time.UnixMilli(1700000000000)
	var mu sync.Mutex
	calls := 0
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return t0.Add(time.Duration(calls-1) * 250 * time.Millisecond)
	}
	srv, last := captureServer(t, http.StatusAccepted, "")
	res := NewSender(WithClock(clock)).Send(context.Background(), Request{
		URL: srv.URL, Body: []byte(`{}`), ID: "id", Secret: []byte("k"), Timeout: 5 * time.Second,
	})
	if !res.Success || res.StatusCode != http.StatusAccepted {
		t.Fatalf("result = %+v, want success 202", res)
	}
	if !res.Start.Equal(t0) {
		t.Errorf("Start = %v, want %v", res.Start, t0)
	}
	if res.Duration != 250*time.Millisecond {
		t.Errorf("Duration = %s, want 250ms (two clock reads)", res.Duration)
	}
	h := last().header
	if ts := h.Get("X-Webhook-Timestamp"); ts != "1700000000000" {
		t.Errorf("X-Webhook-Timestamp = %q, want the start time 1700000000000", ts)
	}
	if sig := h.Get("X-Webhook-Signature"); sig != independentHMAC([]byte("k"), "1700000000000", []byte(`{}`)) {
		t.Errorf("signature %q does not match the start timestamp", sig)
	}
}

func TestSendUnsigned(t *testing.T) {
	tests := []struct {
		name   string
		secret []byte
	}{
		{"nil secret", nil},
		{"empty secret", []byte{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, last := captureServer(t, http.StatusOK, "")
			body := testBody()
			res := NewSender(WithClock(func() time.Time { return time.UnixMilli(1700000000000) })).Send(context.Background(),
				Request{URL: srv.URL, Body: body, ID: "evt-9", Secret: tc.secret, Timeout: 5 * time.Second})
			if !res.Success || res.StatusCode != 200 || res.Error != "" {
				t.Fatalf("result = %+v, want success", res)
			}
			got := last()
			for _, name := range []string{"X-Webhook-Signature", "X-Webhook-Timestamp"} {
				if _, ok := got.header[name]; ok {
					t.Errorf("unsigned request carries %s: %q", name, got.header.Values(name))
				}
			}
			if v := onlyValue(t, got.header, "Content-Type"); v != "application/json" {
				t.Errorf("Content-Type = %q", v)
			}
			if v := onlyValue(t, got.header, "User-Agent"); v != "1Flow-Webhook/1.0" {
				t.Errorf("User-Agent = %q", v)
			}
			if v := onlyValue(t, got.header, "X-Webhook-Id"); v != "evt-9" {
				t.Errorf("X-Webhook-Id = %q", v)
			}
			if string(got.body) != string(body) {
				t.Errorf("body changed in transit")
			}
		})
	}
}

func TestSendStatusClassification(t *testing.T) {
	var redirectedHits atomic.Int32
	var srvURL string
	mux := http.NewServeMux()
	mux.HandleFunc("/redirected", func(w http.ResponseWriter, r *http.Request) {
		redirectedHits.Add(1)
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.PathValue("code"))
		if err != nil {
			t.Errorf("bad code %q", r.PathValue("code"))
			return
		}
		if code >= 300 && code < 400 && code != 300 {
			w.Header().Set("Location", srvURL+"/redirected")
		}
		w.WriteHeader(code)
		if code != http.StatusNoContent {
			_, _ = fmt.Fprintf(w, "body %d", code)
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	srvURL = srv.URL

	tests := []struct {
		code      int
		success   bool
		wantError string // exact Result.Error; "" for success
	}{
		{200, true, ""},
		{201, true, ""},
		{202, true, ""},
		{204, true, ""},
		{299, true, ""},
		{300, false, "HTTP 300 Multiple Choices: body 300"},
		{301, false, "HTTP 301 Moved Permanently (redirect to " + srv.URL + "/redirected not followed): body 301"},
		{302, false, "HTTP 302 Found (redirect to " + srv.URL + "/redirected not followed): body 302"},
		{307, false, "HTTP 307 Temporary Redirect (redirect to " + srv.URL + "/redirected not followed): body 307"},
		{308, false, "HTTP 308 Permanent Redirect (redirect to " + srv.URL + "/redirected not followed): body 308"},
		{400, false, "HTTP 400 Bad Request: body 400"},
		{404, false, "HTTP 404 Not Found: body 404"},
		{429, false, "HTTP 429 Too Many Requests: body 429"},
		{500, false, "HTTP 500 Internal Server Error: body 500"},
		{503, false, "HTTP 503 Service Unavailable: body 503"},
	}
	s := NewSender()
	for _, tc := range tests {
		t.Run(strconv.Itoa(tc.code), func(t *testing.T) {
			res := s.Send(context.Background(), Request{
				URL: fmt.Sprintf("%s/status/%d", srv.URL, tc.code), Body: []byte(`{}`), ID: "id",
				Secret: []byte("k"), Timeout: 5 * time.Second,
			})
			if res.StatusCode != tc.code {
				t.Errorf("StatusCode = %d, want %d", res.StatusCode, tc.code)
			}
			if res.Success != tc.success {
				t.Errorf("Success = %v, want %v", res.Success, tc.success)
			}
			if !tc.success && !strings.HasPrefix(res.Error, fmt.Sprintf("HTTP %d", tc.code)) {
				t.Errorf("Error = %q, want prefix %q", res.Error, fmt.Sprintf("HTTP %d", tc.code))
			}
			if res.Error != tc.wantError {
				t.Errorf("Error = %q, want %q", res.Error, tc.wantError)
			}
			if tc.code >= 301 && tc.code < 400 && !strings.Contains(res.Error, "not followed") {
				t.Errorf("redirect Error %q does not say it was not followed", res.Error)
			}
		})
	}
	if n := redirectedHits.Load(); n != 0 {
		t.Fatalf("redirect target was requested %d times; redirects must not be followed", n)
	}
}

// A caller-supplied client must not bring its own redirect policy or whole-request timeout.
func TestSendWithHTTPClientOverrides(t *testing.T) {
	var redirectedHits atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/redirected", func(w http.ResponseWriter, r *http.Request) { redirectedHits.Add(1) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		http.Redirect(w, r, "/redirected", http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	followed := 0
	client := &http.Client{
		Transport: &http.Transport{},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			followed++
			return nil
		},
		Timeout: time.Millisecond, // would fail every request if kept
	}
	res := NewSender(WithHTTPClient(client)).Send(context.Background(), Request{URL: srv.URL + "/start", Body: []byte(`{}`), ID: "id", Timeout: 5 * time.Second})
	if res.StatusCode != http.StatusFound || res.Success {
		t.Fatalf("result = %+v, want unfollowed 302", res)
	}
	if !strings.Contains(res.Error, "/redirected not followed") {
		t.Errorf("Error = %q, want it to name the unfollowed redirect", res.Error)
	}
	if followed != 0 || redirectedHits.Load() != 0 {
		t.Fatalf("caller's CheckRedirect ran %d times, target hit %d times", followed, redirectedHits.Load())
	}
	if client.Timeout != time.Millisecond || client.CheckRedirect == nil {
		t.Fatalf("NewSender modified the caller's client")
	}
}

func TestSendErrorBodyExcerpt(t *testing.T) {
	prefix500 := "HTTP 500 Internal Server Error: "
	tests := []struct {
		name     string
		status   int
		location string
		body     string
		check    func(t *testing.T, errText string)
	}{
		{
			name: "excerpt limited to 256 bytes", status: 500, body: strings.Repeat("x", 1000),
			check: func(t *testing.T, e string) {
				if want := prefix500 + strings.Repeat("x", MaxBodyExcerpt); e != want {
					t.Errorf("Error = %q (len %d), want prefix + 256 x", e, len(e))
				}
			},
		},
		{
			name: "excerpt exactly 256 bytes", status: 500, body: strings.Repeat("y", 256),
			check: func(t *testing.T, e string) {
				if want := prefix500 + strings.Repeat("y", 256); e != want {
					t.Errorf("Error = %q, want whole 256-byte body", e)
				}
			},
		},
		{
			name: "huge body", status: 503, body: "HEAD" + strings.Repeat("z", 2<<20),
			check: func(t *testing.T, e string) {
				if want := "HTTP 503 Service Unavailable: HEAD" + strings.Repeat("z", MaxBodyExcerpt-4); e != want {
					t.Errorf("Error (len %d) is not the first 256 body bytes", len(e))
				}
			},
		},
		{
			name: "control characters replaced and trimmed", status: 400,
			body: "\n\nline1\nline2\r\n\tcol\x00nul\x1besc\x7fdel\n",
			check: func(t *testing.T, e string) {
				if want := "HTTP 400 Bad Request: line1 line2   col nul esc del"; e != want {
					t.Errorf("Error = %q, want %q", e, want)
				}
			},
		},
		{
			// C1 controls act on terminals that honour them (U+009B is CSI), and bidi overrides and
			// isolates reorder what a terminal or a page shows.
			name: "C1 controls and bidi overrides replaced", status: 400,
			body: "a\u0085b\u009b31mc\u202ed\u202ae\u2066f\u2069g\u2067h\u2068i",
			check: func(t *testing.T, e string) {
				if want := "HTTP 400 Bad Request: a b 31mc d e f g h i"; e != want {
					t.Errorf("Error = %q, want %q", e, want)
				}
			},
		},
		{
			name: "invalid UTF-8 replaced", status: 400, body: "bad\xff\xfebytes",
			check: func(t *testing.T, e string) {
				if want := "HTTP 400 Bad Request: bad?bytes"; e != want {
					t.Errorf("Error = %q, want %q", e, want)
				}
			},
		},
		{
			name: "rune cut by the excerpt limit", status: 500, body: "a" + strings.Repeat("é", 200),
			check: func(t *testing.T, e string) {
				if want := prefix500 + "a" + strings.Repeat("é", 127) + "?"; e != want {
					t.Errorf("Error = %q, want %q", e, want)
				}
			},
		},
		{
			name: "whitespace-only body adds nothing", status: 502, body: " \r\n\t ",
			check: func(t *testing.T, e string) {
				if want := "HTTP 502 Bad Gateway"; e != want {
					t.Errorf("Error = %q, want %q", e, want)
				}
			},
		},
		{
			name: "long Location and body truncated to MaxErrorLength", status: 302,
			location: "/" + strings.Repeat("p", 1000), body: strings.Repeat("b", 1000),
			check: func(t *testing.T, e string) {
				if len(e) != MaxErrorLength {
					t.Errorf("len(Error) = %d, want %d", len(e), MaxErrorLength)
				}
				if !strings.HasPrefix(e, "HTTP 302 Found (redirect to /pppp") || !strings.HasSuffix(e, "ppp...") {
					t.Errorf("Error = %q, want truncated redirect description ending in ...", e)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.location != "" {
					w.Header().Set("Location", tc.location)
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			}))
			t.Cleanup(srv.Close)
			res := NewSender().Send(context.Background(), Request{URL: srv.URL, Body: []byte(`{}`), ID: "id", Timeout: 5 * time.Second})
			if res.Success || res.StatusCode != tc.status {
				t.Fatalf("result = %+v, want failure with status %d", res, tc.status)
			}
			if len(res.Error) > MaxErrorLength {
				t.Fatalf("len(Error) = %d exceeds %d", len(res.Error), MaxErrorLength)
			}
			if !utf8.ValidString(res.Error) {
				t.Fatalf("Error is not valid UTF-8: %q", res.Error)
			}
			for _, r := range res.Error {
				if r < 0x20 || r == 0x7f {
					t.Fatalf("Error contains control character %U: %q", r, res.Error)
				}
			}
			tc.check(t, res.Error)
		})
	}
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		n    int
		want string
	}{
		{"short", "abc", 10, "abc"},
		{"exact", "abcde", 5, "abcde"},
		{"one over", "abcdef", 5, "ab..."},
		{"ascii long", strings.Repeat("a", 600), 500, strings.Repeat("a", 497) + "..."},
		{"does not split two-byte rune", strings.Repeat("é", 300), 500, strings.Repeat("é", 248) + "..."},
		{"does not split three-byte rune", "ab" + strings.Repeat("€", 10), 9, "ab€..."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Truncate(tc.in, tc.n)
			if got != tc.want {
				t.Fatalf("truncate = %q, want %q", got, tc.want)
			}
			if len(got) > tc.n || !utf8.ValidString(got) {
				t.Fatalf("truncate result %q is longer than %d or invalid UTF-8", got, tc.n)
			}
		})
	}
}

func TestSendTimeoutAndCancel(t *testing.T) {
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/slow-body", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)                 // runs second
	t.Cleanup(func() { close(release) }) // runs first, so Close does not wait on hung handlers

	canceled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name        string
		ctx         context.Context
		path        string
		wantSuccess bool
		wantStatus  int
		wantError   string
		minDuration time.Duration
	}{
		{
			name: "no response within timeout", ctx: context.Background(), path: "/hang",
			wantError: "timeout: no response within 100ms", minDuration: 100 * time.Millisecond,
		},
		{
			name: "caller context already canceled", ctx: canceled, path: "/hang",
			wantError: "canceled: the operator stopped before the receiver answered",
		},
		{
			// Status and headers arrived in time: the receiver acknowledged, the slow body is ignored.
			name: "2xx headers arrive, body stalls", ctx: context.Background(), path: "/slow-body",
			wantSuccess: true, wantStatus: 200, minDuration: 100 * time.Millisecond,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			res := NewSender().Send(tc.ctx, Request{URL: srv.URL + tc.path, Body: []byte(`{}`), ID: "id", Secret: []byte("k"), Timeout: 100 * time.Millisecond})
			elapsed := time.Since(start)
			if res.Success != tc.wantSuccess || res.StatusCode != tc.wantStatus || res.Error != tc.wantError {
				t.Fatalf("result = %+v, want success=%v status=%d error=%q", res, tc.wantSuccess, tc.wantStatus, tc.wantError)
			}
			if elapsed > 2*time.Second {
				t.Fatalf("Send took %s; the 100ms timeout was not enforced", elapsed)
			}
			if res.Duration < tc.minDuration {
				t.Fatalf("Duration = %s, want at least %s", res.Duration, tc.minDuration)
			}
		})
	}
}

func TestSendConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	url := srv.URL
	srv.Close()

	res := NewSender().Send(context.Background(), Request{URL: url, Body: []byte(`{}`), ID: "id", Secret: []byte("k"), Timeout: 2 * time.Second})
	if res.Success || res.StatusCode != 0 {
		t.Fatalf("result = %+v, want failure without status", res)
	}
	if !strings.HasPrefix(res.Error, "connection error") {
		t.Fatalf("Error = %q, want prefix %q", res.Error, "connection error")
	}
	if !strings.Contains(res.Error, "refused") {
		t.Errorf("Error = %q does not say the connection was refused", res.Error)
	}
}

func TestSendRedactsURL(t *testing.T) {
	closed := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	closedHost := closed.Listener.Addr().String()
	closed.Close()

	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nope", http.StatusInternalServerError)
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "https://admin:l0c4t10n@example.com:8443/next?sig=q5ecr3t#fr4gm3nt")
		w.WriteHeader(http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	live := srv.Listener.Addr().String()

	secrets := []string{"s3cr3t", "t0k3n", "l0c4t10n", "q5ecr3t", "fr4gm3nt", "whsec_signing", "user:"}
	tests := []struct {
		name       string
		url        string
		wantPrefix string
		wantSub    string
	}{
		{"refused on port 1", "http://user:s3cr3t@127.0.0.1:1/path?token=t0k3n", "connection error", ""},
		{"refused on closed server", "http://user:s3cr3t@" + closedHost + "/path?token=t0k3n&x=1", "connection error", ""},
		{"invalid port", "http://user:s3cr3t@127.0.0.1:bad/path?token=t0k3n", "invalid request", ""},
		{"control character", "http://user:s3cr3t@127.0.0.1:1/path?token=t0k3n\n", "invalid request", ""},
		{"unsupported scheme", "ftp://user:s3cr3t@127.0.0.1:1/path?token=t0k3n", "connection error", "unsupported protocol scheme"},
		{"HTTP failure", "http://user:s3cr3t@" + live + "/fail?token=t0k3n", "HTTP 500", "nope"},
		{"redirect Location with credentials", "http://user:s3cr3t@" + live + "/redirect?token=t0k3n", "HTTP 307",
			"(redirect to https://example.com:8443/next not followed)"},
		{"timeout", "http://user:s3cr3t@" + live + "/hang?token=t0k3n", "timeout", ""},
	}
	s := NewSender()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := s.Send(context.Background(), Request{URL: tc.url, Body: []byte(`{}`), ID: "id", Secret: []byte("whsec_signing"), Timeout: 300 * time.Millisecond})
			if res.Success {
				t.Fatalf("result = %+v, want failure", res)
			}
			if !strings.HasPrefix(res.Error, tc.wantPrefix) {
				t.Fatalf("Error = %q, want prefix %q", res.Error, tc.wantPrefix)
			}
			if !strings.Contains(res.Error, tc.wantSub) {
				t.Fatalf("Error = %q, want it to contain %q", res.Error, tc.wantSub)
			}
			for _, leak := range secrets {
				if strings.Contains(res.Error, leak) {
					t.Errorf("Error %q leaks %q", res.Error, leak)
				}
			}
		})
	}
}

func TestSendReusesConnections(t *testing.T) {
	tests := []struct {
		name      string
		opts      []Option
		wantConns int32
	}{
		{"default transport keeps one connection alive", nil, 1},
		// Control: proves the counter sees every new connection.
		{"keep-alive disabled opens one per request", []Option{WithHTTPClient(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}})}, 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var newConns, requests atomic.Int32
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := requests.Add(1)
				_, _ = io.Copy(io.Discard, r.Body)
				// Successes, failures and bodies larger than the excerpt: all leave the connection reusable.
				switch n % 4 {
				case 0:
					w.WriteHeader(http.StatusOK)
					_, _ = io.WriteString(w, `{"received":true}`)
				case 1:
					w.WriteHeader(http.StatusInternalServerError)
					_, _ = io.WriteString(w, strings.Repeat("e", 10<<10))
				case 2:
					w.WriteHeader(http.StatusNoContent)
				case 3:
					w.Header().Set("Content-Type", "text/plain")
					w.WriteHeader(http.StatusTooManyRequests)
					// Chunked, no Content-Length.
					for range 8 {
						_, _ = io.WriteString(w, strings.Repeat("c", 1000))
						w.(http.Flusher).Flush()
					}
				}
			}))
			srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
				if state == http.StateNew {
					newConns.Add(1)
				}
			}
			srv.Start()
			t.Cleanup(srv.Close)

			s := NewSender(tc.opts...)
			for i := range 20 {
				res := s.Send(context.Background(), Request{URL: srv.URL, Body: testBody(), ID: fmt.Sprint(i), Secret: []byte("k"), Timeout: 5 * time.Second})
				if res.StatusCode == 0 {
					t.Fatalf("request %d: %+v", i, res)
				}
			}
			if n := requests.Load(); n != 20 {
				t.Fatalf("server saw %d requests, want 20", n)
			}
			if n := newConns.Load(); n != tc.wantConns {
				t.Fatalf("server saw %d new connections, want %d", n, tc.wantConns)
			}
		})
	}
}

func TestSendReceiverDropsConnection(t *testing.T) {
	tests := []struct {
		name        string
		write       string // raw bytes written before the connection is closed
		wantSuccess bool
		wantStatus  int
		wantPrefix  string
	}{
		{name: "closed before any response", write: "", wantPrefix: "connection error"},
		{name: "closed inside the status line", write: "HTTP/1.1 20", wantPrefix: "connection error"},
		{name: "closed inside the headers", write: "HTTP/1.1 200 OK\r\nContent-Le", wantPrefix: "connection error"},
		{name: "garbage instead of HTTP", write: "hello there\r\n\r\n", wantPrefix: "connection error"},
		{
			// The status line and headers arrived: the receiver acknowledged with 2xx before dropping.
			name: "closed inside a 2xx body", write: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc",
			wantSuccess: true, wantStatus: 200,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				conn, buf, err := w.(http.Hijacker).Hijack()
				if err != nil {
					t.Errorf("hijack: %v", err)
					return
				}
				defer conn.Close()
				_, _ = buf.WriteString(tc.write)
				_ = buf.Flush()
			}))
			t.Cleanup(srv.Close)

			res := NewSender().Send(context.Background(), Request{URL: srv.URL, Body: []byte(`{}`), ID: "id", Timeout: 5 * time.Second})
			if res.Success != tc.wantSuccess || res.StatusCode != tc.wantStatus {
				t.Fatalf("result = %+v, want success=%v status=%d", res, tc.wantSuccess, tc.wantStatus)
			}
			if !strings.HasPrefix(res.Error, tc.wantPrefix) {
				t.Fatalf("Error = %q, want prefix %q", res.Error, tc.wantPrefix)
			}
			if tc.wantSuccess && res.Error != "" {
				t.Fatalf("Error = %q, want none", res.Error)
			}
		})
	}
}
