package delivery

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/1flow/webhook-operator/pkg/signature"
)

// Fixed request headers from the webhook callbacks spec.
const (
	UserAgent   = "1Flow-Webhook/1.0"
	ContentType = "application/json"
	// HeaderTest marks test webhooks, so receivers can tell them from real events.
	HeaderTest = "X-Webhook-Test"
	// HeaderTraceParent and HeaderTraceState carry W3C Trace Context, so a receiver can continue the
	// trace of the pipeline that created the event.
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
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
	// PreviousSecret is the key being rotated out; the standard-webhooks scheme signs with it too.
	PreviousSecret []byte
	// Scheme selects the signature headers; empty means the 1flow scheme.
	Scheme signature.Scheme
	// Timeout bounds the whole attempt.
	Timeout time.Duration
	// TLS holds the endpoint's private CA and client certificate; nil uses the system roots only.
	TLS *TLSMaterial
	// Test marks a test webhook with the X-Webhook-Test: true header.
	Test bool
	// TraceParent and TraceState are the attempt's W3C Trace Context, sent as the traceparent and
	// tracestate headers when set. They are not part of the signed content.
	TraceParent, TraceState string
	// AllowPrivate dials the egress policy's private ranges: the endpoint's namespace is allowed private
	// egress. Such requests use connections of their own, so a connection opened for one namespace is
	// never reused for a namespace that may not reach the address.
	AllowPrivate bool
}

// TLSMaterial is an endpoint's TLS configuration, from its Secrets.
type TLSMaterial struct {
	// Owner identifies the endpoint; the Sender keeps one connection pool per owner.
	Owner string
	// Version changes whenever the material changes (for example the Secrets' resourceVersions), so a
	// rotated certificate takes effect on the next attempt.
	Version string
	// CAPEM holds extra root certificates, added to the system pool.
	CAPEM []byte
	// CertPEM and KeyPEM hold the client certificate for mutual TLS.
	CertPEM, KeyPEM []byte
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
	// Blocked is true when the egress policy refused the destination; retrying the same URL is futile.
	Blocked bool
	// Error explains a failure in at most MaxErrorLength bytes. It never contains the URL's query or user
	// information, nor the secret.
	Error string
	// Class sorts a failure into a few kinds for traces and logs; empty for a success.
	Class ErrorClass
}

// ErrorClass is the kind of a failed attempt.
type ErrorClass string

const (
	// ClassHTTPStatus: the receiver answered with a status other than 2xx.
	ClassHTTPStatus ErrorClass = "http_status"
	// ClassTimeout: no answer within the endpoint's timeout.
	ClassTimeout ErrorClass = "timeout"
	// ClassConnection: no HTTP exchange (DNS, refused, reset, TLS handshake).
	ClassConnection ErrorClass = "connection"
	// ClassBlocked: the egress policy refused the destination.
	ClassBlocked ErrorClass = "blocked"
	// ClassCanceled: the operator stopped before the answer.
	ClassCanceled ErrorClass = "canceled"
	// ClassConfiguration: the request could not be built (URL, signing key, TLS material).
	ClassConfiguration ErrorClass = "configuration"
)

// Sender sends attempts over one shared HTTP client, so connections to an endpoint are reused. Endpoints
// with their own TLS material get a client of their own, rebuilt only when the material changes.
type Sender struct {
	client *http.Client
	// privateClient serves the requests of namespaces allowed private egress.
	privateClient *http.Client
	now           func() time.Time
	egress        *EgressPolicy

	mu         sync.Mutex
	tlsClients map[string]versionedClient
}

type versionedClient struct {
	version string
	client  *http.Client
}

// Option configures a Sender.
type Option func(*Sender)

// WithHTTPClient replaces the HTTP client. Its redirect policy is overridden: redirects are never followed.
func WithHTTPClient(c *http.Client) Option {
	return func(s *Sender) { s.client = c }
}

// WithEgressPolicy refuses connections to the policy's blocked addresses, checked at dial time.
func WithEgressPolicy(p *EgressPolicy) Option {
	return func(s *Sender) { s.egress = p }
}

// WithClock sets the clock used for timestamps and durations.
func WithClock(now func() time.Time) Option {
	return func(s *Sender) { s.now = now }
}

// NewSender returns a Sender with a keep-alive transport that verifies TLS and honours the standard
// proxy environment variables.
func NewSender(opts ...Option) *Sender {
	s := &Sender{now: time.Now, tlsClients: map[string]versionedClient{}}
	for _, opt := range opts {
		opt(s)
	}
	if s.client == nil {
		s.client = &http.Client{Transport: newTransport(s.egress, &tls.Config{MinVersion: tls.VersionTLS12})}
		s.privateClient = &http.Client{Transport: newTransport(s.egress.AllowingPrivate(), &tls.Config{MinVersion: tls.VersionTLS12})}
	} else {
		s.privateClient = s.client
	}
	s.client, s.privateClient = noRedirects(s.client), noRedirects(s.privateClient)
	return s
}

func noRedirects(c *http.Client) *http.Client {
	out := *c
	out.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	// Each attempt carries its own deadline in its context.
	out.Timeout = 0
	return &out
}

// newTransport returns a transport with pooled keep-alive connections, TLS 1.2+ with verification, the
// standard proxy environment variables, capped response headers, and the egress policy checked on every
// dial. MaxIdleConnsPerHost is at least the largest spec.maxInFlight, so busy endpoints keep their
// connections instead of reopening them.
func newTransport(egress *EgressPolicy, tlsConfig *tls.Config) *http.Transport {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if egress != nil {
		dialer.ControlContext = egress.control
	}
	return &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           4096,
		MaxIdleConnsPerHost:    256,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
		TLSClientConfig:        tlsConfig,
	}
}

// clientFor returns the client for the request's TLS material and egress, building it when the
// material (or the namespace's private egress) is new.
func (s *Sender) clientFor(m *TLSMaterial, allowPrivate bool) (*http.Client, error) {
	if m == nil {
		if allowPrivate {
			return s.privateClient, nil
		}
		return s.client, nil
	}
	egress, version := s.egress, m.Version
	if allowPrivate {
		egress, version = s.egress.AllowingPrivate(), version+"/private"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.tlsClients[m.Owner]; ok && c.version == version {
		return c.client, nil
	}
	cfg, err := m.tlsConfig()
	if err != nil {
		return nil, err
	}
	if old, ok := s.tlsClients[m.Owner]; ok {
		old.client.CloseIdleConnections()
	}
	c := noRedirects(&http.Client{Transport: newTransport(egress, cfg)})
	s.tlsClients[m.Owner] = versionedClient{version: version, client: c}
	return c, nil
}

// ForgetTLS drops the connection pool of an endpoint that no longer exists.
func (s *Sender) ForgetTLS(owner string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.tlsClients[owner]; ok {
		old.client.CloseIdleConnections()
		delete(s.tlsClients, owner)
	}
}

func (m *TLSMaterial) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(m.CAPEM) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(m.CAPEM) {
			return nil, errors.New("ca.crt holds no PEM certificate")
		}
		cfg.RootCAs = pool
	}
	if len(m.CertPEM) > 0 || len(m.KeyPEM) > 0 {
		cert, err := tls.X509KeyPair(m.CertPEM, m.KeyPEM)
		if err != nil {
			// The parse error names no key material, but keep it generic anyway.
			return nil, errors.New("tls.crt and tls.key do not form a valid certificate and key pair")
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Send makes one attempt. It never returns an error: every outcome is a Result to record.
func (s *Sender) Send(ctx context.Context, r Request) Result {
	start := s.now()
	res := Result{Start: start}
	finish := func() Result {
		res.Duration = s.now().Sub(start)
		// Receivers control much of it (the body excerpt, names in their certificates).
		res.Error = Truncate(Printable(res.Error), MaxErrorLength)
		return res
	}

	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		res.Error, res.Class = "invalid request: "+redactError(err), ClassConfiguration
		return finish()
	}
	req.Header.Set("Content-Type", ContentType)
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set(signature.HeaderID, r.ID)
	if r.Test {
		req.Header.Set(HeaderTest, "true")
	}
	if r.TraceParent != "" {
		req.Header.Set(HeaderTraceParent, r.TraceParent)
		if r.TraceState != "" {
			req.Header.Set(HeaderTraceState, r.TraceState)
		}
	}
	if len(r.Secret) > 0 {
		scheme := r.Scheme
		if scheme == "" {
			scheme = signature.SchemeOneFlow
		}
		signed, err := signature.SignHeaders(scheme, r.ID, start, r.Body, r.Secret, r.PreviousSecret)
		if err != nil {
			res.Error, res.Class = "cannot sign: "+err.Error(), ClassConfiguration
			return finish()
		}
		for name, values := range signed {
			req.Header[name] = values
		}
	}

	client, err := s.clientFor(r.TLS, r.AllowPrivate)
	if err != nil {
		res.Error, res.Class = "invalid TLS configuration: "+err.Error(), ClassConfiguration
		return finish()
	}
	resp, err := client.Do(req)
	if err != nil {
		res.Blocked = errors.Is(err, ErrDestinationBlocked)
		res.Class, res.Error = describeTransportError(err, r.Timeout)
		return finish()
	}
	defer func() { _ = resp.Body.Close() }()
	res.StatusCode = resp.StatusCode
	res.Success = resp.StatusCode >= 200 && resp.StatusCode < 300
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The body of a 101 is the raw connection, outside the attempt's deadline: never read it.
		res.Error, res.Class = describeStatus(resp, nil), ClassHTTPStatus
		return finish()
	}
	// End any body read at the attempt's deadline, whatever the receiver does.
	stop := context.AfterFunc(ctx, func() { _ = resp.Body.Close() })
	defer stop()
	if res.Success {
		// Only a failure quotes the body; a success's is read just so that the connection is reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxBodyExcerpt+maxDrain))
		return finish()
	}
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, MaxBodyExcerpt))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	res.Error, res.Class = describeStatus(resp, excerpt), ClassHTTPStatus
	if honoursRetryAfter(resp.StatusCode) {
		res.RetryAfter, _ = ParseRetryAfter(resp.Header.Get("Retry-After"), s.now())
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

func describeTransportError(err error, timeout time.Duration) (ErrorClass, string) {
	if errors.Is(err, ErrDestinationBlocked) {
		var opErr *net.OpError
		if errors.As(err, &opErr) {
			return ClassBlocked, opErr.Err.Error()
		}
		return ClassBlocked, ErrDestinationBlocked.Error()
	}
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()) {
		return ClassTimeout, fmt.Sprintf("timeout: no response within %s", timeout)
	}
	if errors.Is(err, context.Canceled) {
		return ClassCanceled, "canceled: the operator stopped before the receiver answered"
	}
	return ClassConnection, "connection error: " + redactError(err)
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

// printable keeps a body excerpt readable in status (Printable), trimmed.
func printable(b []byte) string {
	return strings.TrimSpace(Printable(string(b)))
}

// Truncate shortens s to at most n bytes on a rune boundary, marking the cut with "...", so that a
// message fits a status field's schema limit.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
