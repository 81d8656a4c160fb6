package delivery

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/1flow/webhook-operator/pkg/signature"
)

// Fixed request headers from the webhook callbacks spec.
const (
	UserAgent   = "1Flow-Webhook/1.0"
	ContentType = "application/json"
)

// Limits on what is read from a receiver and kept in status.
const (
	// MaxErrorLength bounds Result.Error so it fits the status field.
	MaxErrorLength = 500
	// MaxBodyExcerpt is how much of a non-2xx response body is quoted in Result.Error.
	MaxBodyExcerpt = 256
	// maxDrain is how much of a response body is read so that the connection can be reused.
	maxDrain = 64 << 10
)

// Request is one attempt of one event to one endpoint.
type Request struct {
	// URL is the endpoint URL.
	URL string
	// Body is the marshalled payload; it is sent and signed byte for byte.
	Body []byte
	// ID is sent as X-Webhook-Id and stays the same across retries.
	ID string
	// Secret signs the request when non-empty; an empty secret sends no signature headers.
	Secret []byte
	// Timeout bounds the whole attempt.
	Timeout time.Duration
}

// Result is the classified outcome of one attempt.
type Result struct {
	// Start is when the attempt began; the signature timestamp is taken from it.
	Start time.Time
	// Duration is how long the attempt took.
	Duration time.Duration
	// StatusCode is the HTTP status, or 0 when no response arrived.
	StatusCode int
	// Success is true for a 2xx status.
	Success bool
	// RetryAfter is the wait a 429 or 503 response asked for with Retry-After; 0 when it asked for none.
	RetryAfter time.Duration
	// Error explains a failure in at most MaxErrorLength bytes. It never contains the URL's query or user
	// information, nor the secret.
	Error string
}

// Sender sends attempts over one shared HTTP client, so connections to an endpoint are reused.
type Sender struct {
	client *http.Client
	now    func() time.Time
}

// Option configures a Sender.
type Option func(*Sender)

// WithHTTPClient replaces the HTTP client. Its redirect policy is overridden: redirects are never followed.
func WithHTTPClient(c *http.Client) Option {
	return func(s *Sender) { s.client = c }
}

// WithClock sets the clock used for timestamps and durations.
func WithClock(now func() time.Time) Option {
	return func(s *Sender) { s.now = now }
}

// NewSender returns a Sender with a keep-alive transport that verifies TLS and honours the standard
// proxy environment variables.
func NewSender(opts ...Option) *Sender {
	s := &Sender{client: &http.Client{Transport: NewTransport()}, now: time.Now}
	for _, opt := range opts {
		opt(s)
	}
	c := *s.client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	// Each attempt carries its own deadline in its context.
	c.Timeout = 0
	s.client = &c
	return s
}

// NewTransport returns the shared transport: pooled keep-alive connections, TLS 1.2+ with verification.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    64,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
	}
}

// Send makes one attempt. It never returns an error: every outcome is a Result to record.
func (s *Sender) Send(ctx context.Context, r Request) Result {
	start := s.now()
	res := Result{Start: start}
	finish := func() Result {
		res.Duration = s.now().Sub(start)
		res.Error = truncate(res.Error, MaxErrorLength)
		return res
	}

	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		res.Error = "invalid request: " + redactError(err)
		return finish()
	}
	req.Header.Set("Content-Type", ContentType)
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set(signature.HeaderID, r.ID)
	if len(r.Secret) > 0 {
		ts := signature.Timestamp(start)
		req.Header.Set(signature.HeaderTimestamp, ts)
		req.Header.Set(signature.HeaderSignature, signature.Sign(r.Secret, ts, r.Body))
	}

	resp, err := s.client.Do(req)
	if err != nil {
		res.Error = describeTransportError(err, r.Timeout)
		return finish()
	}
	defer func() { _ = resp.Body.Close() }()
	res.StatusCode = resp.StatusCode
	res.Success = resp.StatusCode >= 200 && resp.StatusCode < 300
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, MaxBodyExcerpt))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	if !res.Success {
		res.Error = describeStatus(resp, excerpt)
		if honoursRetryAfter(resp.StatusCode) {
			res.RetryAfter, _ = ParseRetryAfter(resp.Header.Get("Retry-After"), s.now())
		}
	}
	return finish()
}

func describeStatus(resp *http.Response, excerpt []byte) string {
	msg := strings.TrimSpace(fmt.Sprintf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode)))
	if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode >= 300 && resp.StatusCode < 400 {
		msg += " (redirect to " + redactURL(loc) + " not followed)"
	}
	if body := printable(excerpt); body != "" {
		msg += ": " + body
	}
	return msg
}

func describeTransportError(err error, timeout time.Duration) string {
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()) {
		return fmt.Sprintf("timeout: no response within %s", timeout)
	}
	if errors.Is(err, context.Canceled) {
		return "canceled: the operator stopped before the receiver answered"
	}
	return "connection error: " + redactError(err)
}

// redactError strips the URL that net/http puts in its errors, because it may carry credentials in
// its user information or query.
func redactError(err error) string {
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		return urlErr.Err.Error()
	}
	return err.Error()
}

// redactURL keeps scheme, host and path, dropping user information, query and fragment.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// printable keeps a body excerpt readable in status: valid UTF-8, control characters as spaces.
func printable(b []byte) string {
	s := strings.ToValidUTF8(string(b), "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
