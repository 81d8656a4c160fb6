package signature_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/1flow/webhook-operator/pkg/signature"
)

// Vectors computed outside Go, e.g.
//
//	printf '%s' '1700000000000{"a":1}' | openssl dgst -sha256 -hmac secret
const (
	vecSecret    = "secret"
	vecTimestamp = "1700000000000"
	vecBody      = `{"a":1}`
	vecSignature = "d2933619db6d2527b03c5871b07d6754abe07947900ff9b1eedd05e5a7156292"
)

// vecTime is the instant whose millisecond timestamp is vecTimestamp.
var vecTime = time.UnixMilli(1700000000000)

func fixedClock(t time.Time) signature.Option {
	return signature.WithClock(func() time.Time { return t })
}

func signedHeader(ts, sig string) http.Header {
	h := http.Header{}
	if ts != "" {
		h.Set(signature.HeaderTimestamp, ts)
	}
	if sig != "" {
		h.Set(signature.HeaderSignature, sig)
	}
	return h
}

func TestSignKnownVectors(t *testing.T) {
	tests := []struct {
		name      string
		secret    string
		timestamp string
		body      string
		want      string
	}{
		{
			name:   "spec vector",
			secret: vecSecret, timestamp: vecTimestamp, body: vecBody,
			want: vecSignature,
		},
		{
			name:   "empty body signs the timestamp alone",
			secret: "secret", timestamp: "1700000000000", body: "",
			want: "4fe2ce12fd6bec5e0648b23bfbff158ba5fc18b3a214b4c207314671448a95e1",
		},
		{
			name:   "timestamp one millisecond later",
			secret: "secret", timestamp: "1700000000001", body: `{"a":1}`,
			want: "9dc112cca94b87f0b6481ac7a5591503b8904367fc7724edbf605b89e0524efe",
		},
		{
			name:   "body differs in one byte",
			secret: "secret", timestamp: "1700000000000", body: `{"a":2}`,
			want: "087ae19fcb069437fb4b735be243b6e60c2d2b34c67865e18cca43b233c9912c",
		},
		{
			name:   "other secret",
			secret: "other", timestamp: "1700000000000", body: `{"a":1}`,
			want: "4b6d985ce810e3924db049e182742c6cc5a80b364a776ea74e9c99d46ad83aa4",
		},
		{
			name:   "unescaped HTML and UTF-8 in body",
			secret: "whsec_0123456789abcdef", timestamp: "1700000000000",
			body: `{"event":"document.ready","documentId":"doc_<&>é"}`,
			want: "3d3254671134fe538c628727d0b9d4f28248ff78684a6bbdc23847fb6ec1094a",
		},
		{
			// RFC 4231 test case 2: with an empty timestamp the MAC is plain HMAC-SHA256 of the body.
			name:   "RFC 4231 case 2",
			secret: "Jefe", timestamp: "", body: "what do ya want for nothing?",
			want: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := signature.Sign([]byte(tc.secret), tc.timestamp, []byte(tc.body))
			if got != tc.want {
				t.Fatalf("Sign(%q, %q, %q) = %s, want %s", tc.secret, tc.timestamp, tc.body, got, tc.want)
			}
		})
	}
}

func TestTimestamp(t *testing.T) {
	tests := []struct {
		name string
		in   time.Time
		want string
	}{
		{"exact millisecond", time.UnixMilli(1700000000000), "1700000000000"},
		{"sub-millisecond part truncated", time.Unix(1700000000, 999_999), "1700000000000"},
		{"milliseconds kept", time.Unix(1700000000, 123_456_789), "1700000000123"},
		{"zone does not matter", time.UnixMilli(1700000000000).In(time.FixedZone("X", -7*3600)), "1700000000000"},
		{"epoch", time.Unix(0, 0), "0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := signature.Timestamp(tc.in); got != tc.want {
				t.Fatalf("Timestamp(%v) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestVerifyAccepts(t *testing.T) {
	tests := []struct {
		name string
		now  time.Time
		opts []signature.Option
	}{
		{name: "same instant", now: vecTime},
		{name: "receiver 4m59s behind", now: vecTime.Add(-4*time.Minute - 59*time.Second)},
		{name: "receiver 4m59s ahead", now: vecTime.Add(4*time.Minute + 59*time.Second)},
		{name: "exactly at past edge of default tolerance", now: vecTime.Add(signature.DefaultTolerance)},
		{name: "exactly at future edge of default tolerance", now: vecTime.Add(-signature.DefaultTolerance)},
		{name: "custom tolerance", now: vecTime.Add(59 * time.Minute), opts: []signature.Option{signature.WithTolerance(time.Hour)}},
		{name: "tolerance 0 disables replay check (years later)", now: vecTime.AddDate(10, 0, 0), opts: []signature.Option{signature.WithTolerance(0)}},
		{name: "tolerance 0 disables replay check (years earlier)", now: vecTime.AddDate(-10, 0, 0), opts: []signature.Option{signature.WithTolerance(0)}},
		{name: "negative tolerance disables replay check", now: vecTime.AddDate(1, 0, 0), opts: []signature.Option{signature.WithTolerance(-time.Second)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]signature.Option{fixedClock(tc.now)}, tc.opts...)
			if err := signature.Verify([]byte(vecSecret), signedHeader(vecTimestamp, vecSignature), []byte(vecBody), opts...); err != nil {
				t.Fatalf("Verify: unexpected error %v", err)
			}
			if err := signature.VerifyValues([]byte(vecSecret), vecTimestamp, vecSignature, []byte(vecBody), opts...); err != nil {
				t.Fatalf("VerifyValues: unexpected error %v", err)
			}
		})
	}
}

func TestVerifyWithRealClock(t *testing.T) {
	secret := []byte("s3cr3t")
	body := []byte(`{"event":"document.ready"}`)
	ts := signature.Timestamp(time.Now())
	if err := signature.Verify(secret, signedHeader(ts, signature.Sign(secret, ts, body)), body); err != nil {
		t.Fatalf("fresh signature rejected with the default clock: %v", err)
	}
	old := signature.Timestamp(time.Now().Add(-time.Hour))
	err := signature.Verify(secret, signedHeader(old, signature.Sign(secret, old, body)), body)
	if !errors.Is(err, signature.ErrTimestampExpired) {
		t.Fatalf("hour-old signature: got %v, want ErrTimestampExpired", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	upper := strings.ToUpper(vecSignature)
	// Signature for a different timestamp but the real body, so only the timestamp header was changed.
	tests := []struct {
		name    string
		secret  string
		header  http.Header
		body    string
		now     time.Time
		opts    []signature.Option
		wantErr error
	}{
		{
			name: "wrong secret", secret: "Secret",
			header: signedHeader(vecTimestamp, vecSignature), body: vecBody, now: vecTime,
			wantErr: signature.ErrMismatch,
		},
		{
			name: "secret with trailing newline", secret: vecSecret + "\n",
			header: signedHeader(vecTimestamp, vecSignature), body: vecBody, now: vecTime,
			wantErr: signature.ErrMismatch,
		},
		{
			name: "body modified in one byte", secret: vecSecret,
			header: signedHeader(vecTimestamp, vecSignature), body: `{"a":2}`, now: vecTime,
			wantErr: signature.ErrMismatch,
		},
		{
			name: "body with trailing newline", secret: vecSecret,
			header: signedHeader(vecTimestamp, vecSignature), body: vecBody + "\n", now: vecTime,
			wantErr: signature.ErrMismatch,
		},
		{
			name: "empty body", secret: vecSecret,
			header: signedHeader(vecTimestamp, vecSignature), body: "", now: vecTime,
			wantErr: signature.ErrMismatch,
		},
		{
			name: "timestamp modified by 1ms", secret: vecSecret,
			header: signedHeader("1700000000001", vecSignature), body: vecBody, now: vecTime,
			wantErr: signature.ErrMismatch,
		},
		{
			name: "timestamp with leading zero (same instant, different signed bytes)", secret: vecSecret,
			header: signedHeader("0"+vecTimestamp, vecSignature), body: vecBody, now: vecTime,
			wantErr: signature.ErrMismatch,
		},
		{
			name: "uppercase hex", secret: vecSecret,
			header: signedHeader(vecTimestamp, upper), body: vecBody, now: vecTime,
			wantErr: signature.ErrMismatch,
		},
		{
			name: "mixed-case hex", secret: vecSecret,
			header: signedHeader(vecTimestamp, "D"+vecSignature[1:]), body: vecBody, now: vecTime,
			wantErr: signature.ErrMismatch,
		},
		{
			name: "non-hex character", secret: vecSecret,
			header: signedHeader(vecTimestamp, "z"+vecSignature[1:]), body: vecBody, now: vecTime,
			wantErr: signature.ErrMismatch,
		},
		{
			name: "odd-length hex", secret: vecSecret,
			header: signedHeader(vecTimestamp, vecSignature[1:]), body: vecBody, now: vecTime,
			wantErr: signature.ErrMismatch,
		},
		{
			name: "truncated signature", secret: vecSecret,
			header: signedHeader(vecTimestamp, vecSignature[:32]), body: vecBody, now: vecTime,
			wantErr: signature.ErrMismatch,
		},
		{
			name: "signature with extra bytes", secret: vecSecret,
			header: signedHeader(vecTimestamp, vecSignature+"00"), body: vecBody, now: vecTime,
			wantErr: signature.ErrMismatch,
		},
		{
			name: "sha256= prefix", secret: vecSecret,
			header: signedHeader(vecTimestamp, "sha256="+vecSignature), body: vecBody, now: vecTime,
			wantErr: signature.ErrMismatch,
		},
		{
			name: "last hex digit changed", secret: vecSecret,
			header: signedHeader(vecTimestamp, vecSignature[:63]+"3"), body: vecBody, now: vecTime,
			wantErr: signature.ErrMismatch,
		},
		{
			name: "missing both headers", secret: vecSecret,
			header: http.Header{}, body: vecBody, now: vecTime,
			wantErr: signature.ErrMissingHeaders,
		},
		{
			name: "nil header", secret: vecSecret,
			header: nil, body: vecBody, now: vecTime,
			wantErr: signature.ErrMissingHeaders,
		},
		{
			name: "missing signature", secret: vecSecret,
			header: signedHeader(vecTimestamp, ""), body: vecBody, now: vecTime,
			wantErr: signature.ErrMissingHeaders,
		},
		{
			name: "missing timestamp", secret: vecSecret,
			header: signedHeader("", vecSignature), body: vecBody, now: vecTime,
			wantErr: signature.ErrMissingHeaders,
		},
		{
			name: "timestamp in seconds-with-fraction", secret: vecSecret,
			header: signedHeader("1700000000.000", vecSignature), body: vecBody, now: vecTime,
			wantErr: signature.ErrInvalidTimestamp,
		},
		{
			name: "timestamp is text", secret: vecSecret,
			header: signedHeader("yesterday", vecSignature), body: vecBody, now: vecTime,
			wantErr: signature.ErrInvalidTimestamp,
		},
		{
			name: "timestamp in exponent form", secret: vecSecret,
			header: signedHeader("1.7e12", vecSignature), body: vecBody, now: vecTime,
			wantErr: signature.ErrInvalidTimestamp,
		},
		{
			name: "timestamp in hex", secret: vecSecret,
			header: signedHeader("0x18BCFE56800", vecSignature), body: vecBody, now: vecTime,
			wantErr: signature.ErrInvalidTimestamp,
		},
		{
			name: "timestamp as RFC 3339", secret: vecSecret,
			header: signedHeader("2023-11-14T22:13:20Z", vecSignature), body: vecBody, now: vecTime,
			wantErr: signature.ErrInvalidTimestamp,
		},
		{
			name: "negative timestamp", secret: vecSecret,
			header: signedHeader("-1700000000000", vecSignature), body: vecBody, now: vecTime,
			wantErr: signature.ErrInvalidTimestamp,
		},
		{
			name: "timestamp overflows int64", secret: vecSecret,
			header: signedHeader("99999999999999999999", vecSignature), body: vecBody, now: vecTime,
			wantErr: signature.ErrInvalidTimestamp,
		},
		{
			name: "max int64 timestamp is far in the future", secret: vecSecret,
			header: signedHeader(strconv.FormatInt(1<<63-1, 10), vecSignature), body: vecBody, now: vecTime,
			wantErr: signature.ErrTimestampExpired,
		},
		{
			name: "timestamp too old by 1ms", secret: vecSecret,
			header: signedHeader(vecTimestamp, vecSignature), body: vecBody,
			now:     vecTime.Add(signature.DefaultTolerance + time.Millisecond),
			wantErr: signature.ErrTimestampExpired,
		},
		{
			name: "timestamp an hour old", secret: vecSecret,
			header: signedHeader(vecTimestamp, vecSignature), body: vecBody,
			now:     vecTime.Add(time.Hour),
			wantErr: signature.ErrTimestampExpired,
		},
		{
			name: "timestamp in the future by more than tolerance", secret: vecSecret,
			header: signedHeader(vecTimestamp, vecSignature), body: vecBody,
			now:     vecTime.Add(-signature.DefaultTolerance - time.Millisecond),
			wantErr: signature.ErrTimestampExpired,
		},
		{
			name: "custom tolerance past", secret: vecSecret,
			header: signedHeader(vecTimestamp, vecSignature), body: vecBody,
			now:     vecTime.Add(1001 * time.Millisecond),
			opts:    []signature.Option{signature.WithTolerance(time.Second)},
			wantErr: signature.ErrTimestampExpired,
		},
		{
			name: "custom tolerance future", secret: vecSecret,
			header: signedHeader(vecTimestamp, vecSignature), body: vecBody,
			now:     vecTime.Add(-1001 * time.Millisecond),
			opts:    []signature.Option{signature.WithTolerance(time.Second)},
			wantErr: signature.ErrTimestampExpired,
		},
		{
			name: "empty secret", secret: "",
			header: signedHeader(vecTimestamp, signature.Sign(nil, vecTimestamp, []byte(vecBody))), body: vecBody, now: vecTime,
			wantErr: signature.ErrEmptySecret,
		},
		{
			name: "empty secret takes precedence over missing headers", secret: "",
			header: http.Header{}, body: vecBody, now: vecTime,
			wantErr: signature.ErrEmptySecret,
		},
	}
	sentinels := []error{
		signature.ErrMissingHeaders, signature.ErrInvalidTimestamp, signature.ErrTimestampExpired,
		signature.ErrMismatch, signature.ErrEmptySecret,
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]signature.Option{fixedClock(tc.now)}, tc.opts...)
			err := signature.Verify([]byte(tc.secret), tc.header, []byte(tc.body), opts...)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify: got error %v, want %v", err, tc.wantErr)
			}
			for _, other := range sentinels {
				if other != tc.wantErr && errors.Is(err, other) {
					t.Errorf("Verify: error %v also matches unrelated sentinel %v", err, other)
				}
			}
			msg := err.Error()
			if tc.secret != "" && strings.Contains(msg, tc.secret) {
				t.Errorf("error %q leaks the secret", msg)
			}
			if want := signature.Sign([]byte(tc.secret), tc.header.Get(signature.HeaderTimestamp), []byte(tc.body)); strings.Contains(strings.ToLower(msg), want) {
				t.Errorf("error %q leaks the expected signature", msg)
			}
			// VerifyValues must agree with Verify.
			errV := signature.VerifyValues([]byte(tc.secret), tc.header.Get(signature.HeaderTimestamp),
				tc.header.Get(signature.HeaderSignature), []byte(tc.body), opts...)
			if !errors.Is(errV, tc.wantErr) {
				t.Fatalf("VerifyValues: got error %v, want %v", errV, tc.wantErr)
			}
		})
	}
}

// The replay check runs before the MAC comparison, but with it disabled a wrong signature must still fail.
func TestVerifyToleranceZeroStillChecksSignature(t *testing.T) {
	tests := []struct {
		name    string
		ts      string
		sig     string
		body    string
		wantErr error
	}{
		{"valid, ten years off", vecTimestamp, vecSignature, vecBody, nil},
		{"wrong body, ten years off", vecTimestamp, vecSignature, `{"a":3}`, signature.ErrMismatch},
		{"non-numeric timestamp still rejected", "abc", vecSignature, vecBody, signature.ErrInvalidTimestamp},
		{"epoch timestamp accepted when signed", "0", signature.Sign([]byte(vecSecret), "0", []byte(vecBody)), vecBody, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := signature.VerifyValues([]byte(vecSecret), tc.ts, tc.sig, []byte(tc.body),
				signature.WithTolerance(0), fixedClock(vecTime.AddDate(10, 0, 0)))
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("got %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	f.Add([]byte(vecSecret), vecTimestamp, []byte(vecBody), vecSignature)
	f.Add([]byte(vecSecret), vecTimestamp, []byte(vecBody), strings.ToUpper(vecSignature))
	f.Add([]byte(vecSecret), vecTimestamp, []byte(vecBody), "")
	f.Add([]byte{}, vecTimestamp, []byte(vecBody), vecSignature)
	f.Add([]byte("k"), "0", []byte{}, "00")
	f.Add([]byte("k"), "-1", []byte("x"), "zz")
	f.Add([]byte("k"), "+1700000000000", []byte("x"), "abc")
	f.Add([]byte("\x00\xff"), "9223372036854775807", []byte("\xff\xfe"), strings.Repeat("0", 64))
	f.Add([]byte("k"), "99999999999999999999", []byte("{}"), "g")
	f.Add([]byte("k"), " 17", []byte("{}"), "\x00")

	sentinels := []error{
		signature.ErrMissingHeaders, signature.ErrInvalidTimestamp, signature.ErrTimestampExpired,
		signature.ErrMismatch, signature.ErrEmptySecret,
	}
	f.Fuzz(func(t *testing.T, secret []byte, timestamp string, body []byte, sig string) {
		want := signature.Sign(secret, timestamp, body)
		if len(want) != 64 || strings.ToLower(want) != want {
			t.Fatalf("Sign returned %q, want 64 lowercase hex digits", want)
		}

		// Arbitrary input: never panics, fails only with a sentinel, and accepts only the exact signature.
		for _, opts := range [][]signature.Option{
			nil,
			{signature.WithTolerance(0)},
			{fixedClock(vecTime)},
		} {
			err := signature.VerifyValues(secret, timestamp, sig, body, opts...)
			if err == nil {
				if sig != want {
					t.Fatalf("accepted signature %q, only %q is valid", sig, want)
				}
				continue
			}
			matched := false
			for _, s := range sentinels {
				matched = matched || errors.Is(err, s)
			}
			if !matched {
				t.Fatalf("error %v is not one of the exported sentinels", err)
			}
		}
		h := http.Header{}
		h.Set(signature.HeaderTimestamp, timestamp)
		h.Set(signature.HeaderSignature, sig)
		_ = signature.Verify(secret, h, body)

		// Round trip: a non-empty secret and a non-negative decimal timestamp always verify with the
		// replay check off, and any change to the body breaks it.
		ms, perr := strconv.ParseInt(timestamp, 10, 64)
		if len(secret) == 0 || perr != nil || ms < 0 {
			return
		}
		if err := signature.VerifyValues(secret, timestamp, want, body, signature.WithTolerance(0)); err != nil {
			t.Fatalf("round trip failed: secret=%q timestamp=%q body=%q: %v", secret, timestamp, body, err)
		}
		if err := signature.Verify(secret, signedHeader(timestamp, want), body, signature.WithTolerance(0)); err != nil {
			t.Fatalf("round trip via header failed: %v", err)
		}
		tampered := append([]byte{}, body...)
		if len(tampered) == 0 {
			tampered = []byte{0}
		} else {
			tampered[len(tampered)/2] ^= 0x01
		}
		if err := signature.VerifyValues(secret, timestamp, want, tampered, signature.WithTolerance(0)); !errors.Is(err, signature.ErrMismatch) {
			t.Fatalf("tampered body: got %v, want ErrMismatch", err)
		}
	})
}
