// Package signature signs and verifies webhook-operator requests. It has no dependencies beyond the
// standard library so that receivers can import it alone.
//
// Two signature schemes are supported (see Scheme). Both sign the exact body bytes, so receivers must
// verify the raw body before parsing it, and both reject timestamps more than DefaultTolerance away
// from the receiver's clock (see WithTolerance and WithClock).
//
// # The 1flow scheme
//
// A signed request carries these headers:
//
//	X-Webhook-Id:        delivery id, the same for every attempt (not signed)
//	X-Webhook-Timestamp: Unix time in milliseconds, as a decimal string
//	X-Webhook-Signature: lowercase hex HMAC-SHA256(secret, timestamp + raw body)
//
// The signed bytes are the timestamp string immediately followed by the exact body bytes. The secret
// bytes are the HMAC key as they are, whatever they look like. Senders use Sign and Timestamp or
// SignHeaders(SchemeOneFlow, ...); receivers use Verify or VerifyValues.
//
// # The standard-webhooks scheme
//
// The scheme of the Standard Webhooks specification (https://www.standardwebhooks.com):
//
//	webhook-id:        message id, the same for every attempt
//	webhook-timestamp: Unix time in seconds, as a decimal string
//	webhook-signature: v1,<base64 HMAC-SHA256(key, id + "." + timestamp + "." + raw body)>
//
// webhook-signature may carry several space-separated signatures ("v1,abc v1,def"); a request is
// genuine if any v1 signature matches, and signatures of other versions are ignored. A secret of the
// form "whsec_<base64>" means the key is the base64-decoded bytes after the prefix; any other secret is
// used as raw key bytes. The reference libraries base64-decode a secret even without the prefix, so
// give receivers their secret in the whsec_ form. Senders use SignHeaders(SchemeStandardWebhooks, ...)
// or SignStandard; receivers use VerifyStandard.
//
// # Key rotation
//
// The 1flow scheme signs with the current key only: during a rollover a receiver accepts both keys by
// calling Verify with the new key and, if that fails with ErrMismatch, again with the old key. The
// standard-webhooks scheme sends one signature per key (SignHeaders with the current key first and the
// previous key second), so a receiver that knows either key accepts the request with one VerifyStandard.
package signature

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Header names of the 1flow signature scheme.
const (
	HeaderSignature = "X-Webhook-Signature"
	HeaderTimestamp = "X-Webhook-Timestamp"
	HeaderID        = "X-Webhook-Id"
)

// DefaultTolerance is how far a timestamp may be from the receiver's clock before Verify rejects the
// request as a possible replay.
const DefaultTolerance = 5 * time.Minute

// Errors returned by Verify, VerifyValues and VerifyStandard, possibly wrapped (test them with
// errors.Is). They never include the secret or the expected signature.
var (
	ErrMissingHeaders   = errors.New("signature: missing " + HeaderTimestamp + " or " + HeaderSignature + " header")
	ErrInvalidTimestamp = errors.New("signature: timestamp is not a decimal number of milliseconds")
	ErrTimestampExpired = errors.New("signature: timestamp is outside the tolerance")
	ErrMismatch         = errors.New("signature: signature does not match")
	ErrEmptySecret      = errors.New("signature: empty secret")
	// ErrInvalidSecret reports a secret with the whsec_ prefix whose rest is not standard base64. Only
	// the standard-webhooks scheme decodes secrets.
	ErrInvalidSecret = errors.New("signature: secret has the whsec_ prefix but is not valid standard base64")
)

// Timestamp formats t as the X-Webhook-Timestamp header value.
func Timestamp(t time.Time) string {
	return strconv.FormatInt(t.UnixMilli(), 10)
}

// Sign returns the X-Webhook-Signature value for the timestamp header value and the raw body.
func Sign(secret []byte, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(timestamp))
	mac.Write(body)
	// Encoding into a fixed array leaves one allocation, the string, where EncodeToString makes two.
	var text [2 * sha256.Size]byte
	hex.Encode(text[:], mac.Sum(nil))
	return string(text[:])
}

type verifyOptions struct {
	tolerance time.Duration
	now       func() time.Time
}

// Option changes how Verify, VerifyValues and VerifyStandard check a request.
type Option func(*verifyOptions)

// WithTolerance sets the accepted clock distance; zero or less disables the replay check.
func WithTolerance(d time.Duration) Option {
	return func(o *verifyOptions) { o.tolerance = d }
}

// WithClock sets the receiver clock used for the replay check.
func WithClock(now func() time.Time) Option {
	return func(o *verifyOptions) { o.now = now }
}

// Verify checks the signature headers of a request against its raw body, in constant time, and rejects
// timestamps more than the tolerance (DefaultTolerance unless changed) away from now.
func Verify(secret []byte, header http.Header, body []byte, opts ...Option) error {
	return VerifyValues(secret, header.Get(HeaderTimestamp), header.Get(HeaderSignature), body, opts...)
}

// VerifyValues is Verify for a timestamp and signature that were captured outside an http.Header.
func VerifyValues(secret []byte, timestamp, signature string, body []byte, opts ...Option) error {
	o := verifyOptions{tolerance: DefaultTolerance, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if len(secret) == 0 {
		return ErrEmptySecret
	}
	if timestamp == "" || signature == "" {
		return ErrMissingHeaders
	}
	ms, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil || ms < 0 {
		return ErrInvalidTimestamp
	}
	if o.tolerance > 0 {
		skew := o.now().Sub(time.UnixMilli(ms))
		if skew > o.tolerance || skew < -o.tolerance {
			return fmt.Errorf("%w (%s away, tolerance %s)", ErrTimestampExpired, skew.Round(time.Second), o.tolerance)
		}
	}
	// Compare the header text itself with the lowercase hex encoding, so that only the documented
	// form is accepted (hex.DecodeString would also accept uppercase digits).
	if !hmac.Equal([]byte(signature), []byte(Sign(secret, timestamp, body))) {
		return ErrMismatch
	}
	return nil
}
