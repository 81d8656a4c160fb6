package signature

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Scheme names a signature scheme; see the package documentation for each one's headers.
type Scheme string

const (
	// SchemeOneFlow is the original scheme: X-Webhook-Timestamp in milliseconds and a hex
	// X-Webhook-Signature made with one key.
	SchemeOneFlow Scheme = "1flow"
	// SchemeStandardWebhooks is the Standard Webhooks scheme: webhook-id, webhook-timestamp in seconds
	// and webhook-signature with one "v1,<base64>" signature per key.
	SchemeStandardWebhooks Scheme = "standard-webhooks"
)

// Header names of the standard-webhooks scheme. Header names are case-insensitive; an http.Header
// stores them in canonical form (Webhook-Id, ...).
const (
	StandardHeaderID        = "webhook-id"
	StandardHeaderTimestamp = "webhook-timestamp"
	StandardHeaderSignature = "webhook-signature"
)

// The standard-webhooks header names as an http.Header stores them, worked out once instead of for
// every signed request.
var (
	canonicalStandardID        = http.CanonicalHeaderKey(StandardHeaderID)
	canonicalStandardTimestamp = http.CanonicalHeaderKey(StandardHeaderTimestamp)
	canonicalStandardSignature = http.CanonicalHeaderKey(StandardHeaderSignature)
)

// StandardSecretPrefix marks a standard-webhooks secret whose key is the base64 text after it.
const StandardSecretPrefix = "whsec_"

// maxUnixSeconds is the last second of the year 9999. Later timestamps are rejected by the replay
// check without converting them, as time.Unix would overflow near the int64 limit.
const maxUnixSeconds = 253402300799

// standardVersion is the only signature version of the standard-webhooks scheme.
const standardVersion = "v1"

// schemeError is a sentinel error with a message fitting the scheme that failed; errors.Is sees the
// sentinel.
type schemeError struct {
	msg string
	err error
}

func (e *schemeError) Error() string { return e.msg }
func (e *schemeError) Unwrap() error { return e.err }

var (
	errStandardMissingHeaders = &schemeError{
		msg: "signature: missing " + StandardHeaderID + ", " + StandardHeaderTimestamp + " or " + StandardHeaderSignature + " header",
		err: ErrMissingHeaders,
	}
	errStandardInvalidTimestamp = &schemeError{
		msg: "signature: " + StandardHeaderTimestamp + " is not a decimal number of seconds",
		err: ErrInvalidTimestamp,
	}
	errStandardEmptyKey = &schemeError{
		msg: "signature: secret " + StandardSecretPrefix + " decodes to an empty key",
		err: ErrEmptySecret,
	}
)

// standardKey returns the HMAC key of a standard-webhooks secret: the base64-decoded bytes after the
// whsec_ prefix, or the secret itself. Errors never include the secret.
func standardKey(secret []byte) ([]byte, error) {
	if len(secret) == 0 {
		return nil, ErrEmptySecret
	}
	rest, ok := bytes.CutPrefix(secret, []byte(StandardSecretPrefix))
	if !ok {
		return secret, nil
	}
	key := make([]byte, base64.StdEncoding.DecodedLen(len(rest)))
	n, err := base64.StdEncoding.Decode(key, rest)
	if err != nil {
		return nil, ErrInvalidSecret
	}
	if n == 0 {
		return nil, errStandardEmptyKey
	}
	return key[:n], nil
}

// standardSign returns the base64 signature (without the "v1," prefix) for a decoded key.
func standardSign(key []byte, id, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// SignStandard returns one standard-webhooks signature, "v1,<base64>", for the webhook-id and
// webhook-timestamp header values and the raw body. A whsec_ secret is base64-decoded first (see the
// package documentation); it fails with ErrEmptySecret or ErrInvalidSecret. Unlike SignHeaders it does
// not check id or timestamp.
func SignStandard(secret []byte, id, timestamp string, body []byte) (string, error) {
	key, err := standardKey(secret)
	if err != nil {
		return "", err
	}
	return standardVersion + "," + standardSign(key, id, timestamp, body), nil
}

// SignHeaders returns the headers that sign a request with the scheme; copy them into the request's
// header (for k, v := range h { req.Header[k] = v }).
//
// For SchemeOneFlow they are X-Webhook-Id (left out when id is empty), X-Webhook-Timestamp and an
// X-Webhook-Signature made with the first non-empty secret only. For SchemeStandardWebhooks they are
// webhook-id, webhook-timestamp and a webhook-signature with one "v1,<base64>" signature per non-empty
// secret, space-separated in the order given: pass the current key first and, during a rotation, the
// previous key second.
//
// Empty secrets are skipped; it fails if none is left, if a whsec_ secret is not valid base64
// (ErrInvalidSecret), if t is before 1970, if the scheme is unknown, or if id is not a header value
// that arrives unchanged (control characters, or a space or tab at either end). The standard-webhooks
// scheme also requires a non-empty id without '.', as the specification asks, since the signed content
// id.timestamp.body could otherwise be split differently. Errors never include a secret.
func SignHeaders(scheme Scheme, id string, t time.Time, body []byte, secrets ...[]byte) (http.Header, error) {
	if scheme != SchemeOneFlow && scheme != SchemeStandardWebhooks {
		return nil, fmt.Errorf("signature: unknown scheme %q", scheme)
	}
	if scheme == SchemeStandardWebhooks {
		if id == "" {
			return nil, errors.New("signature: the standard-webhooks scheme needs a message id")
		}
		// The signed content is id.timestamp.body: an id with a dot could be split differently.
		if strings.Contains(id, ".") {
			return nil, errors.New("signature: a standard-webhooks message id must not contain '.'")
		}
	}
	if !validHeaderValue(id) {
		return nil, errors.New("signature: message id contains a control character or begins or ends with a space")
	}
	if t.Unix() < 0 {
		return nil, errors.New("signature: timestamp is before 1970")
	}
	// Room for the usual current and previous key, so that signing allocates no list for them.
	usable := make([][]byte, 0, 2)
	for _, s := range secrets {
		if len(s) > 0 {
			usable = append(usable, s)
		}
	}
	if len(usable) == 0 {
		return nil, ErrEmptySecret
	}

	// The header is filled under canonical names directly: Header.Set would check each name again.
	if scheme == SchemeOneFlow {
		ts := Timestamp(t)
		h := make(http.Header, 3)
		if id != "" {
			h[HeaderID] = []string{id}
		}
		h[HeaderTimestamp] = []string{ts}
		h[HeaderSignature] = []string{Sign(usable[0], ts, body)}
		return h, nil
	}

	ts := strconv.FormatInt(t.Unix(), 10)
	sigs := make([]string, 0, len(usable))
	for i, s := range usable {
		sig, err := SignStandard(s, id, ts, body)
		if err != nil {
			return nil, fmt.Errorf("signature: secret %d of %d: %w", i+1, len(usable), err)
		}
		sigs = append(sigs, sig)
	}
	return http.Header{
		canonicalStandardID:        {id},
		canonicalStandardTimestamp: {ts},
		canonicalStandardSignature: {strings.Join(sigs, " ")},
	}, nil
}

// validHeaderValue reports whether v survives as an HTTP header value unchanged: no control
// characters (tab only inside) and no surrounding spaces or tabs, which receivers strip.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return v == strings.Trim(v, " \t")
}

// headerValue returns the first value of a header, also when the map was built by hand with the
// lowercase name rather than the canonical one.
func headerValue(h http.Header, name string) string {
	if v := h.Get(name); v != "" {
		return v
	}
	if vs := h[name]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// VerifyStandard checks the standard-webhooks headers of a request against its raw body and rejects
// timestamps more than the tolerance (DefaultTolerance unless changed) away from now. It accepts the
// request if any v1 signature in webhook-signature matches, comparing each in constant time; other
// versions are ignored. A whsec_ secret is base64-decoded first (see the package documentation).
//
// Errors match, with errors.Is, one of ErrEmptySecret, ErrInvalidSecret, ErrMissingHeaders,
// ErrInvalidTimestamp, ErrTimestampExpired and ErrMismatch.
func VerifyStandard(secret []byte, header http.Header, body []byte, opts ...Option) error {
	o := verifyOptions{tolerance: DefaultTolerance, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	key, err := standardKey(secret)
	if err != nil {
		return err
	}
	id := headerValue(header, StandardHeaderID)
	timestamp := headerValue(header, StandardHeaderTimestamp)
	signatures := headerValue(header, StandardHeaderSignature)
	if id == "" || timestamp == "" || signatures == "" {
		return errStandardMissingHeaders
	}
	// Digits only: ParseInt would also take a sign, which the reference libraries sign differently.
	if strings.TrimLeft(timestamp, "0123456789") != "" {
		return errStandardInvalidTimestamp
	}
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return errStandardInvalidTimestamp
	}
	if o.tolerance > 0 {
		if sec > maxUnixSeconds {
			return fmt.Errorf("%w (after the year 9999)", ErrTimestampExpired)
		}
		skew := o.now().Sub(time.Unix(sec, 0))
		if skew > o.tolerance || skew < -o.tolerance {
			return fmt.Errorf("%w (%s away, tolerance %s)", ErrTimestampExpired, skew.Round(time.Second), o.tolerance)
		}
	}
	// Compare the base64 text, so only the canonical padded standard encoding is accepted, and go
	// through every candidate so the time taken does not depend on which one matched.
	want := []byte(standardSign(key, id, timestamp, body))
	matched := false
	for _, candidate := range strings.Split(signatures, " ") {
		version, sig, ok := strings.Cut(candidate, ",")
		if !ok || version != standardVersion {
			continue
		}
		if hmac.Equal([]byte(sig), want) {
			matched = true
		}
	}
	if !matched {
		return ErrMismatch
	}
	return nil
}
