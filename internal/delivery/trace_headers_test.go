package delivery

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/1flow/webhook-operator/pkg/signature"
)

// The trace headers go to the receiver but are not signed: a receiver verifies the same signature with
// or without them, and one that drops them loses nothing.
func TestTraceHeadersAreSentAndNotSigned(t *testing.T) {
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	got := make(chan http.Header, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := signature.Verify([]byte("s3cret"), r.Header, body); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
		}
		got <- r.Header.Clone()
	}))
	defer srv.Close()
	fixed := time.Now().Truncate(time.Millisecond)
	send := func(traceparent, tracestate string) (Result, http.Header) {
		res := NewSender(WithClock(func() time.Time { return fixed })).Send(context.Background(), Request{
			URL: srv.URL, Body: []byte(`{"event":"document.ready"}`), ID: "whd_1", Secret: []byte("s3cret"),
			Timeout: 5 * time.Second, TraceParent: traceparent, TraceState: tracestate,
		})
		return res, <-got
	}
	traced, tracedHeader := send(traceparent, "vendor=abc")
	plain, plainHeader := send("", "")
	if !traced.Success || !plain.Success {
		t.Fatalf("results %+v and %+v, want both verified", traced, plain)
	}
	if tracedHeader.Get("traceparent") != traceparent || tracedHeader.Get("tracestate") != "vendor=abc" {
		t.Fatalf("trace headers %q %q", tracedHeader.Get("traceparent"), tracedHeader.Get("tracestate"))
	}
	if plainHeader.Get("traceparent") != "" {
		t.Fatalf("traceparent %q sent without a trace", plainHeader.Get("traceparent"))
	}
	if a, b := tracedHeader.Get(signature.HeaderSignature), plainHeader.Get(signature.HeaderSignature); a != b {
		t.Fatalf("signatures differ with and without trace headers: %s vs %s", a, b)
	}
}
