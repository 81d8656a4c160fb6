package delivery

import (
	"bufio"
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Hostile receivers: each test is one row of the security table, a receiver that misbehaves on purpose.
// The Sender must return a bounded Result promptly, never hang, never panic and never follow it anywhere.

const hostileTimeout = 5 * time.Second

// hostileServer starts h, and fails the test if a handler is still running two seconds after the attempt
// finished: that would mean the Sender left a connection open and kept the receiver streaming.
func hostileServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, func()) {
	t.Helper()
	var running atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		running.Add(1)
		defer running.Add(-1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	waitIdle := func() {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for running.Load() != 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if n := running.Load(); n != 0 {
			t.Errorf("%d handlers still running: the Sender did not close the connection", n)
		}
	}
	return srv, waitIdle
}

func sendHostile(t *testing.T, url string) Result {
	t.Helper()
	start := time.Now()
	res := NewSender().Send(context.Background(), Request{URL: url, Body: []byte(`{}`), ID: "id", Secret: []byte("k"), Timeout: hostileTimeout})
	elapsed := time.Since(start)
	t.Logf("result after %v: %+v", elapsed, res)
	if res.Duration >= hostileTimeout || elapsed >= hostileTimeout {
		t.Fatalf("Send took %v (Duration %v): it waited for the timeout instead of giving up on the receiver", elapsed, res.Duration)
	}
	if len(res.Error) > MaxErrorLength {
		t.Fatalf("Error is %d bytes, want at most %d", len(res.Error), MaxErrorLength)
	}
	return res
}

// streamForever writes 32 KiB chunks until the client goes away.
func streamForever(w io.Writer, r *http.Request, flush func()) {
	chunk := []byte(strings.Repeat("x", 32<<10))
	for {
		select {
		case <-r.Context().Done():
			return
		default:
		}
		if _, err := w.Write(chunk); err != nil {
			return
		}
		flush()
	}
}

func TestHostileEndlessResponseBody(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		gzip        bool
		wantSuccess bool
		wantPrefix  string
	}{
		{name: "2xx", status: http.StatusOK, wantSuccess: true},
		{name: "5xx", status: http.StatusInternalServerError, wantPrefix: "HTTP 500 Internal Server Error: xxx"},
		// The transport asks for gzip and decompresses transparently: the drain cap must apply to the
		// decompressed stream too (a "zip bomb").
		{name: "2xx gzip bomb", status: http.StatusOK, gzip: true, wantSuccess: true},
		{name: "5xx gzip bomb", status: http.StatusInternalServerError, gzip: true, wantPrefix: "HTTP 500 Internal Server Error: xxx"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, waitIdle := hostileServer(t, func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				flusher := w.(http.Flusher)
				if tc.gzip {
					w.Header().Set("Content-Encoding", "gzip")
					w.WriteHeader(tc.status)
					zw := gzip.NewWriter(w)
					streamForever(zw, r, func() { _ = zw.Flush(); flusher.Flush() })
					return
				}
				w.WriteHeader(tc.status)
				streamForever(w, r, flusher.Flush)
			})
			res := sendHostile(t, srv.URL)
			if res.Success != tc.wantSuccess || res.StatusCode != tc.status {
				t.Fatalf("result = %+v, want success=%v status=%d", res, tc.wantSuccess, tc.status)
			}
			if tc.wantSuccess && res.Error != "" {
				t.Fatalf("Error = %q, want none", res.Error)
			}
			if !strings.HasPrefix(res.Error, tc.wantPrefix) {
				t.Fatalf("Error = %q, want prefix %q", res.Error, tc.wantPrefix)
			}
			if n := strings.Count(res.Error, "x"); n > MaxBodyExcerpt {
				t.Fatalf("Error quotes %d body bytes, want at most %d", n, MaxBodyExcerpt)
			}
			waitIdle()
		})
	}
}

func TestHostileTricklingResponseBody(t *testing.T) {
	// Headers arrive at once, then one byte every 20 ms, forever: the attempt's deadline ends the read.
	srv, waitIdle := hostileServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
				if _, err := w.Write([]byte("x")); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		}
	})
	const timeout = 300 * time.Millisecond
	start := time.Now()
	res := NewSender().Send(context.Background(), Request{URL: srv.URL, Body: []byte(`{}`), ID: "id", Timeout: timeout})
	elapsed := time.Since(start)
	if elapsed > timeout+2*time.Second {
		t.Fatalf("Send took %v with a %v timeout", elapsed, timeout)
	}
	// The 2xx status line is the acknowledgement; the body is only drained for connection reuse, so a
	// read cut short by the deadline does not turn the delivery into a failure.
	if !res.Success || res.StatusCode != http.StatusOK || res.Error != "" {
		t.Fatalf("result = %+v, want 200 success", res)
	}
	waitIdle()
}

// hijackServer answers every request by writing raw bytes on the connection and closing it.
func hijackServer(t *testing.T, raw string, hold bool) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		_, _ = buf.WriteString(raw)
		_ = buf.Flush()
		if hold {
			// Keep the connection open without another byte, until the client goes away.
			done := make(chan struct{})
			go func() { _, _ = io.Copy(io.Discard, conn); close(done) }()
			select {
			case <-done:
			case <-release:
			}
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	return srv, &hits
}

func TestHostileReceiverClosesMidResponse(t *testing.T) {
	tests := []struct {
		name        string
		raw         string
		wantSuccess bool
		wantStatus  int
		wantPrefix  string
	}{
		{
			// Status line and headers were complete, so the receiver acknowledged with 2xx; the short
			// body (3 of 100 bytes, then EOF) is only drained for reuse and its io.ErrUnexpectedEOF is
			// ignored. This is deterministic: client.Do returns as soon as the headers are parsed.
			name: "2xx headers then 3 of 100 body bytes", raw: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc",
			wantSuccess: true, wantStatus: http.StatusOK,
		},
		{
			// Same for a failure status: the status is recorded, the excerpt is whatever arrived.
			name: "5xx headers then 3 of 100 body bytes", raw: "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 100\r\n\r\nabc",
			wantStatus: http.StatusInternalServerError, wantPrefix: "HTTP 500 Internal Server Error: abc",
		},
		{name: "closed before any byte", raw: "", wantPrefix: "connection error"},
		{name: "closed inside the headers", raw: "HTTP/1.1 200 OK\r\nX-A: b", wantPrefix: "connection error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, hits := hijackServer(t, tc.raw, false)
			res := sendHostile(t, srv.URL)
			if res.Success != tc.wantSuccess || res.StatusCode != tc.wantStatus || res.Blocked {
				t.Fatalf("result = %+v, want success=%v status=%d", res, tc.wantSuccess, tc.wantStatus)
			}
			if tc.wantSuccess && res.Error != "" {
				t.Fatalf("Error = %q, want none", res.Error)
			}
			if !strings.HasPrefix(res.Error, tc.wantPrefix) {
				t.Fatalf("Error = %q, want prefix %q", res.Error, tc.wantPrefix)
			}
			// A POST on a fresh connection is never silently replayed: one attempt is one delivery.
			if n := hits.Load(); n != 1 {
				t.Fatalf("receiver saw %d requests, want 1", n)
			}
		})
	}
}

func TestHostileRedirect(t *testing.T) {
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			var redirects, followed atomic.Int32
			mux := http.NewServeMux()
			mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
				redirects.Add(1)
				http.Redirect(w, r, "/internal-admin?token=t0k3n", status)
			})
			mux.HandleFunc("/internal-admin", func(w http.ResponseWriter, r *http.Request) {
				followed.Add(1)
				w.WriteHeader(http.StatusOK)
			})
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)

			res := sendHostile(t, srv.URL+"/hook")
			if followed.Load() != 0 {
				t.Fatalf("the redirect target was requested %d times", followed.Load())
			}
			if redirects.Load() != 1 {
				t.Fatalf("the endpoint was requested %d times, want 1", redirects.Load())
			}
			if res.Success || res.StatusCode != status {
				t.Fatalf("result = %+v, want failure with status %d", res, status)
			}
			if !strings.Contains(res.Error, "not followed") {
				t.Fatalf("Error = %q, want it to say the redirect was not followed", res.Error)
			}
			if !strings.Contains(res.Error, "/internal-admin") || strings.Contains(res.Error, "t0k3n") {
				t.Fatalf("Error = %q, want the redirect path without its query", res.Error)
			}
		})
	}
}

func TestHostileRedirectHugeLocation(t *testing.T) {
	// The Location is quoted (redacted) in Error: a receiver-chosen 8 KiB path must still be truncated.
	var followed atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/"+strings.Repeat("p", 8<<10)+"?token=t0k3n")
		w.WriteHeader(http.StatusFound)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { followed.Add(1) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	res := sendHostile(t, srv.URL+"/hook") // asserts len(Error) <= MaxErrorLength
	if res.Success || res.StatusCode != http.StatusFound || followed.Load() != 0 {
		t.Fatalf("result = %+v (followed %d), want an unfollowed 302", res, followed.Load())
	}
	if !strings.HasPrefix(res.Error, "HTTP 302 Found (redirect to /ppp") || !strings.HasSuffix(res.Error, "...") {
		t.Fatalf("Error = %q, want the truncated redirect path", res.Error)
	}
}

func TestHostileHugeResponseHeaders(t *testing.T) {
	tests := []struct {
		name string
		h    http.HandlerFunc
	}{
		{"one 100 KiB header", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Huge", strings.Repeat("h", 100<<10))
			w.WriteHeader(http.StatusOK)
		}},
		{"10000 small headers", func(w http.ResponseWriter, r *http.Request) {
			for i := range 10000 {
				w.Header().Add("X-Many", strings.Repeat("m", 8)+string(rune('a'+i%26)))
			}
			w.WriteHeader(http.StatusOK)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, waitIdle := hostileServer(t, func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				tc.h(w, r)
			})
			res := sendHostile(t, srv.URL)
			if res.Success || res.StatusCode != 0 {
				t.Fatalf("result = %+v, want failure without status", res)
			}
			if !strings.HasPrefix(res.Error, "connection error") || !strings.Contains(res.Error, "header") {
				t.Fatalf("Error = %q, want a connection error about the header size", res.Error)
			}
			waitIdle()
		})
	}
}

func TestHostileInformationalResponses(t *testing.T) {
	// An endless stream of 103 Early Hints never reaches a final status: the header cap ends it.
	var hits atomic.Int32
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			hits.Add(1)
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				hint := []byte("HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
				for {
					if _, err := conn.Write(hint); err != nil {
						return
					}
				}
			}()
		}
	}()
	res := sendHostile(t, "http://"+ln.Addr().String()+"/")
	if res.Success || res.StatusCode != 0 {
		t.Fatalf("result = %+v, want failure without status", res)
	}
	if !strings.HasPrefix(res.Error, "connection error") {
		t.Fatalf("Error = %q, want a connection error", res.Error)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("receiver saw %d connections, want 1", n)
	}
}

func TestHostileSwitchingProtocols(t *testing.T) {
	// 101 is a final status for net/http, and with "Connection: Upgrade" the response body becomes the
	// raw connection, which the request's context no longer governs. A receiver that switches protocols
	// and then never sends a byte must not keep the attempt past its deadline.
	srv, hits := hijackServer(t, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: evil\r\n\r\n", true)
	const timeout = 300 * time.Millisecond
	done := make(chan Result, 1)
	start := time.Now()
	go func() {
		done <- NewSender().Send(context.Background(), Request{URL: srv.URL, Body: []byte(`{}`), ID: "id", Timeout: timeout})
	}()
	var res Result
	select {
	case res = <-done:
	case <-time.After(timeout + 1500*time.Millisecond):
		t.Fatalf("Send still running %v after a 101 response with a %v timeout: it reads the upgraded "+
			"connection with no deadline, so a receiver can hold a delivery worker forever", time.Since(start), timeout)
	}
	t.Logf("result after %v: %+v", time.Since(start), res)
	if res.Success || res.StatusCode != http.StatusSwitchingProtocols || !strings.HasPrefix(res.Error, "HTTP 101") {
		t.Fatalf("result = %+v, want failure with status 101", res)
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("receiver saw %d requests, want 1", n)
	}
}
