// Command receiver is an example receiver of webhook-operator's document.ready webhooks, signed with the
// default 1flow scheme. It verifies every request with pkg/signature (HMAC-SHA256 of the timestamp and
// the raw body, compared in constant time, timestamps at most 5 minutes away), answers 200
// {"received": true} at once, and processes the payload in the background.
//
//	WEBHOOK_SECRET=... PORT=8080 go run ./examples/receivers/go
//
// Environment:
//
//	WEBHOOK_SECRET           the signing secret: the value of the endpoint's Secret (required)
//	WEBHOOK_PREVIOUS_SECRET  the key being rotated out, accepted too during a key rollover (optional)
//	PORT                     the port to listen on (default 8080)
//
// For an endpoint with spec.signature.scheme: standard-webhooks, call signature.VerifyStandard instead
// of signature.Verify; it accepts either key during a rotation by itself.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/1flow/webhook-operator/pkg/signature"
)

// maxBody bounds what is read from one request. DocumentEvents are limited by the API server's object
// size (about 1.5 MiB), so real payloads are far below it.
const maxBody = 8 << 20

// payload is the part of the document.ready payload this example looks at; see the webhook callbacks
// contract for every field.
type payload struct {
	Event      string `json:"event"`
	DocumentID string `json:"documentId"`
	Status     struct {
		ExtractionStatus string  `json:"extractionStatus"`
		DocType          *string `json:"docType"`
	} `json:"status"`
	Document *struct {
		Description string `json:"description"`
		// json.Number keeps every digit of the amount; convert it with a decimal library.
		TotalAmount json.Number `json:"totalAmount"`
	} `json:"document"`
	Extraction *struct {
		Fields json.RawMessage `json:"fields"`
		Tables json.RawMessage `json:"tables"`
	} `json:"extraction"`
}

type job struct {
	deliveryID string
	test       bool
	body       []byte
}

type receiver struct {
	secret, previous []byte
	jobs             chan job
}

func main() {
	secret := os.Getenv("WEBHOOK_SECRET")
	if secret == "" {
		log.Fatal("WEBHOOK_SECRET is required: the signing secret of the WebhookEndpoint's Secret")
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	r := &receiver{
		secret:   []byte(secret),
		previous: []byte(os.Getenv("WEBHOOK_PREVIOUS_SECRET")),
		jobs:     make(chan job, 1024),
	}

	var workers sync.WaitGroup
	workers.Go(r.work)

	mux := http.NewServeMux()
	mux.HandleFunc("POST /webhook", r.handle)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	srv := &http.Server{
		Addr:              ":" + port,
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()

	log.Printf("listening on :%s, POST /webhook", port)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	close(r.jobs) // the server has stopped: no handler sends any more
	workers.Wait()
}

func (r *receiver) handle(w http.ResponseWriter, req *http.Request) {
	// Verify the raw bytes, exactly as received, before parsing anything.
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxBody))
	if err != nil {
		reject(w, http.StatusRequestEntityTooLarge, "body too large")
		return
	}
	if err := r.verify(req.Header, body); err != nil {
		// The error names the check that failed (missing headers, expired timestamp, mismatch); it
		// never contains the secret or the expected signature.
		log.Printf("rejected request %q: %v", req.Header.Get(signature.HeaderID), err)
		reject(w, http.StatusUnauthorized, "invalid signature")
		return
	}

	// Answer first (the operator waits at most the endpoint's spec.timeout, 10s by default), process later.
	select {
	case r.jobs <- job{deliveryID: req.Header.Get(signature.HeaderID), test: req.Header.Get("X-Webhook-Test") == "true", body: body}:
		reply(w, http.StatusOK, map[string]any{"received": true})
	default:
		// Full: ask the operator to come back later. It retries 503 with backoff and honours Retry-After.
		w.Header().Set("Retry-After", "30")
		reject(w, http.StatusServiceUnavailable, "busy")
	}
}

// verify accepts the current key and, during a rollover, the previous one: the 1flow scheme signs with
// one key only, so a receiver tries both.
func (r *receiver) verify(h http.Header, body []byte) error {
	err := signature.Verify(r.secret, h, body)
	if errors.Is(err, signature.ErrMismatch) && len(r.previous) > 0 {
		err = signature.Verify(r.previous, h, body)
	}
	return err
}

// work processes payloads in the background. Delivery is at least once: every attempt of one event to
// one endpoint carries the same X-Webhook-Id, so a real receiver records the ids it processed and skips
// repeats.
func (r *receiver) work() {
	for j := range r.jobs {
		var p payload
		if err := json.Unmarshal(j.body, &p); err != nil {
			log.Printf("delivery %s: invalid JSON: %v", j.deliveryID, err)
			continue
		}
		if p.Event != "document.ready" {
			log.Printf("delivery %s: ignoring event %q", j.deliveryID, p.Event)
			continue
		}
		docType := "null"
		if p.Status.DocType != nil {
			docType = *p.Status.DocType
		}
		log.Printf("delivery %s: document ready: %s (%s, %s, test=%t)", j.deliveryID, p.DocumentID, docType, p.Status.ExtractionStatus, j.test)
		if p.Document != nil {
			log.Printf("  summary: %q, total amount %s", p.Document.Description, p.Document.TotalAmount)
		}
		// extraction is null when extraction failed, the document type has no extractable fields, or the
		// document is still processing.
		if p.Extraction != nil {
			log.Printf("  fields: %s", p.Extraction.Fields)
			log.Printf("  tables: %s", p.Extraction.Tables)
		}
	}
}

func reject(w http.ResponseWriter, code int, reason string) {
	reply(w, code, map[string]any{"received": false, "error": reason})
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
