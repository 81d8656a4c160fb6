package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// receiver is a loopback webhook receiver. A fast one answers 200 at once; a hanging one never answers
// (until released, when it drops the connection without a response); a gated one holds every request
// until its gate closes and then answers 200. It counts the TCP connections it accepted and records when
// each documentId first arrived.
type receiver struct {
	URL  string
	srv  *http.Server
	hang bool
	gate <-chan struct{}

	connections atomic.Int64
	requests    atomic.Int64
	// held counts the requests left unanswered for heldAfter or longer, whatever the handler did with them.
	held      atomic.Int64
	release   chan struct{}
	closeOnce sync.Once

	mu    sync.Mutex
	first map[string]time.Time
	// arrivals[k] is when the (k+1)-th distinct documentId arrived.
	arrivals []time.Time
	notify   chan struct{}
}

func newReceiver(hang bool) (*receiver, error) { return startReceiver(&receiver{hang: hang}) }

// newGatedReceiver returns a receiver that answers requests only once gate is closed.
func newGatedReceiver(gate <-chan struct{}) (*receiver, error) {
	return startReceiver(&receiver{gate: gate})
}

func startReceiver(r *receiver) (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r.URL = "http://" + ln.Addr().String() + "/webhook"
	r.release, r.first, r.notify = make(chan struct{}), map[string]time.Time{}, make(chan struct{}, 1)
	r.srv = &http.Server{
		Handler:           http.HandlerFunc(r.serve),
		ReadHeaderTimeout: 30 * time.Second,
		ConnState: func(_ net.Conn, state http.ConnState) {
			if state == http.StateNew {
				r.connections.Add(1)
			}
		},
	}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// heldAfter is how long a request must stay unanswered to count as held: far longer than a fast receiver
// takes, far shorter than the hanging endpoints' timeout.
const heldAfter = time.Second

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	r.requests.Add(1)
	// Counted from outside the hang below, so that a receiver that answers early, however it comes to, is
	// seen not to hold.
	holding := time.AfterFunc(heldAfter, func() { r.held.Add(1) })
	defer holding.Stop()
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	if r.hang {
		select {
		case <-req.Context().Done():
			return
		case <-r.release:
			// Drop the connection without an answer: returning would send an implicit 200.
			panic(http.ErrAbortHandler)
		}
	}
	if r.gate != nil {
		select {
		case <-req.Context().Done():
			return
		case <-r.gate:
		}
	}
	now := time.Now()
	var payload struct {
		DocumentID string `json:"documentId"`
	}
	_ = json.Unmarshal(body, &payload)
	w.WriteHeader(http.StatusOK)
	r.mu.Lock()
	if _, seen := r.first[payload.DocumentID]; !seen {
		r.first[payload.DocumentID] = now
		r.arrivals = append(r.arrivals, now)
	}
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// distinct returns how many distinct documentIds arrived.
func (r *receiver) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.arrivals)
}

// arrival returns when the (k+1)-th distinct documentId arrived.
func (r *receiver) arrival(k int) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.arrivals[k]
}

// documentIDs returns the distinct documentIds that arrived.
func (r *receiver) documentIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, 0, len(r.first))
	for id := range r.first {
		ids = append(ids, id)
	}
	return ids
}

// receivedAt returns when documentID first arrived.
func (r *receiver) receivedAt(documentID string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.first[documentID]
	return t, ok
}

// close releases hanging requests and shuts the server down.
func (r *receiver) close() {
	r.closeOnce.Do(func() {
		close(r.release)
		_ = r.srv.Close()
	})
}
