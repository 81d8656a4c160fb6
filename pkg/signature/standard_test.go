package signature_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/1flow/webhook-operator/pkg/signature"
)

// The published test vector of the Standard Webhooks reference libraries (the "sign function works"
// test of each of them), also reproduced outside Go:
//
//	key=$(printf '%s' MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw | base64 -d | xxd -p -c 256)
//	printf '%s' 'msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}' |
//	  openssl dgst -sha256 -mac HMAC -macopt hexkey:$key -binary | base64
const (
	swSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	swID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	swTimestamp = "1614265330"
	swBody      = `{"test": 2432232314}`
	swSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	// swOtherSig is the "invalid signature" of the reference libraries' tests.
	swOtherSig = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
)

var swTime = time.Unix(1614265330, 0)

// Two more whsec_ keys for rotation tests: 32 bytes each, so their base64 has padding.
var (
	rotCurrent  = []byte("whsec_cm90YXRpb24ta2V5LTAxMjM0NTY3ODlhYmNkZWZnaGk=") // "rotation-key-0123456789abcdefghi"
	rotPrevious = []byte(swSecret)
	rotThird    = []byte("whsec_" + base64.StdEncoding.EncodeToString([]byte("a third key, never used to sign")))
)

var allSentinels = []error{
	signature.ErrMissingHeaders, signature.ErrInvalidTimestamp, signature.ErrTimestampExpired,
	signature.ErrMismatch, signature.ErrEmptySecret, signature.ErrInvalidSecret,
}

func swHeader(id, ts, sig string) http.Header {
	h := http.Header{}
	if id != "" {
		h.Set(signature.StandardHeaderID, id)
	}
	if ts != "" {
		h.Set(signature.StandardHeaderTimestamp, ts)
	}
	if sig != "" {
		h.Set(signature.StandardHeaderSignature, sig)
	}
	return h
}

func mustSignStandard(t testing.TB, secret []byte, id, ts string, body []byte) string {
	t.Helper()
	sig, err := signature.SignStandard(secret, id, ts, body)
	if err != nil {
		t.Fatalf("SignStandard: %v", err)
	}
	return sig
}

// checkSentinel fails unless err matches want and no other exported sentinel.
func checkSentinel(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %v", err, want)
	}
	for _, other := range allSentinels {
		if other != want && errors.Is(err, other) {
			t.Errorf("error %v also matches unrelated sentinel %v", err, other)
		}
	}
}

func TestSignStandardKnownVectors(t *testing.T) {
	tests := []struct {
		name   string
		secret string
		id, ts string
		body   string
		want   string
	}{
		{
			name:   "published Standard Webhooks vector",
			secret: swSecret, id: swID, ts: swTimestamp, body: swBody,
			want: swSignature,
		},
		{
			// openssl dgst -sha256 -hmac MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw: without the prefix the text
			// itself is the key, unlike the reference libraries' default.
			name:   "same secret without whsec_ prefix is a raw key",
			secret: strings.TrimPrefix(swSecret, "whsec_"), id: swID, ts: swTimestamp, body: swBody,
			want: "v1,ELhqG0Ku1gwOc1f4jyKdp3SFGFLAOdJ9bvpWLciCakI=",
		},
		{
			// printf '%s' 'msg_1.1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret -binary | base64
			name:   "raw secret",
			secret: "secret", id: "msg_1", ts: "1700000000", body: `{"a":1}`,
			want: "v1,Q5nZ7DiOGwijBBqvBVAK6c0zDr2JLkXI7TaV4f+Q2vY=",
		},
		{
			name:   "empty body still signs id and timestamp with both dots",
			secret: "secret", id: "msg_1", ts: "1700000000", body: "",
			want: "v1,ynLDpKq4Sx5IkaQ0ZGtc8UThYmrhBMBR16fBMZCQ7+M=",
		},
		{
			name:   "padded base64 whsec key",
			secret: string(rotCurrent), id: "msg_2", ts: "1700000000", body: `{"a":1}`,
			want: "v1,TEcgqJAT2qq99MyFG1tVFVcFnFefTxDKgObuF9TgFQw=",
		},
		{
			name:   "unescaped HTML and UTF-8 in body",
			secret: "secret", id: "whd_0123", ts: "1700000000",
			body: `{"event":"document.ready","documentId":"doc_<&>é"}`,
			want: "v1,xsCU7lzDtuOnPLfI0xOE/UBYfUy/gBM1uLtPs29GuPA=",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := mustSignStandard(t, []byte(tc.secret), tc.id, tc.ts, []byte(tc.body))
			if got != tc.want {
				t.Fatalf("SignStandard(%q, %q, %q, %q) = %s, want %s", tc.secret, tc.id, tc.ts, tc.body, got, tc.want)
			}
		})
	}
}

func TestPublishedVectorThroughHeaders(t *testing.T) {
	h, err := signature.SignHeaders(signature.SchemeStandardWebhooks, swID, swTime, []byte(swBody), []byte(swSecret))
	if err != nil {
		t.Fatal(err)
	}
	want := http.Header{
		"Webhook-Id":        {swID},
		"Webhook-Timestamp": {swTimestamp},
		"Webhook-Signature": {swSignature},
	}
	if !equalHeader(h, want) {
		t.Fatalf("SignHeaders = %v, want %v", h, want)
	}
	if err := signature.VerifyStandard([]byte(swSecret), h, []byte(swBody), fixedClock(swTime)); err != nil {
		t.Fatalf("VerifyStandard of the published vector: %v", err)
	}
	// The reference libraries' own multi-signature case: the valid one among invalid v1 and v2 ones.
	multi := swHeader(swID, swTimestamp, strings.Join([]string{
		swOtherSig, "v2," + strings.TrimPrefix(swOtherSig, "v1,"), swSignature, swOtherSig,
	}, " "))
	if err := signature.VerifyStandard([]byte(swSecret), multi, []byte(swBody), fixedClock(swTime)); err != nil {
		t.Fatalf("VerifyStandard of the reference multi-signature header: %v", err)
	}
}

func equalHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok || strings.Join(va, "\x00") != strings.Join(vb, "\x00") || len(va) != len(vb) {
			return false
		}
	}
	return true
}

func TestSignHeaders(t *testing.T) {
	body := []byte(`{"a":1}`)
	at := time.Unix(1700000000, 123_000_000)
	oneFlowSig := func(secret string) string { return signature.Sign([]byte(secret), "1700000000123", body) }
	swSig := func(secret []byte) string { return mustSignStandard(t, secret, "whd_1", "1700000000", body) }
	tests := []struct {
		name    string
		scheme  signature.Scheme
		id      string
		secrets [][]byte
		want    http.Header
	}{
		{
			name: "1flow", scheme: signature.SchemeOneFlow, id: "whd_1",
			secrets: [][]byte{[]byte("k1")},
			want: http.Header{
				"X-Webhook-Id":        {"whd_1"},
				"X-Webhook-Timestamp": {"1700000000123"},
				"X-Webhook-Signature": {oneFlowSig("k1")},
			},
		},
		{
			name: "1flow signs with the first key only", scheme: signature.SchemeOneFlow, id: "whd_1",
			secrets: [][]byte{[]byte("new"), []byte("old")},
			want: http.Header{
				"X-Webhook-Id":        {"whd_1"},
				"X-Webhook-Timestamp": {"1700000000123"},
				"X-Webhook-Signature": {oneFlowSig("new")},
			},
		},
		{
			name: "1flow skips empty secrets", scheme: signature.SchemeOneFlow, id: "whd_1",
			secrets: [][]byte{nil, {}, []byte("k2")},
			want: http.Header{
				"X-Webhook-Id":        {"whd_1"},
				"X-Webhook-Timestamp": {"1700000000123"},
				"X-Webhook-Signature": {oneFlowSig("k2")},
			},
		},
		{
			name: "1flow uses a whsec_ secret as raw bytes", scheme: signature.SchemeOneFlow, id: "whd_1",
			secrets: [][]byte{[]byte(swSecret)},
			want: http.Header{
				"X-Webhook-Id":        {"whd_1"},
				"X-Webhook-Timestamp": {"1700000000123"},
				"X-Webhook-Signature": {oneFlowSig(swSecret)},
			},
		},
		{
			name: "1flow without id leaves X-Webhook-Id out", scheme: signature.SchemeOneFlow, id: "",
			secrets: [][]byte{[]byte("k1")},
			want: http.Header{
				"X-Webhook-Timestamp": {"1700000000123"},
				"X-Webhook-Signature": {oneFlowSig("k1")},
			},
		},
		{
			name: "standard-webhooks, one key", scheme: signature.SchemeStandardWebhooks, id: "whd_1",
			secrets: [][]byte{rotCurrent},
			want: http.Header{
				"Webhook-Id":        {"whd_1"},
				"Webhook-Timestamp": {"1700000000"},
				"Webhook-Signature": {swSig(rotCurrent)},
			},
		},
		{
			name: "standard-webhooks rotation: current then previous", scheme: signature.SchemeStandardWebhooks, id: "whd_1",
			secrets: [][]byte{rotCurrent, rotPrevious},
			want: http.Header{
				"Webhook-Id":        {"whd_1"},
				"Webhook-Timestamp": {"1700000000"},
				"Webhook-Signature": {swSig(rotCurrent) + " " + swSig(rotPrevious)},
			},
		},
		{
			name: "standard-webhooks keeps the given order", scheme: signature.SchemeStandardWebhooks, id: "whd_1",
			secrets: [][]byte{rotPrevious, nil, rotCurrent, []byte("raw")},
			want: http.Header{
				"Webhook-Id":        {"whd_1"},
				"Webhook-Timestamp": {"1700000000"},
				"Webhook-Signature": {swSig(rotPrevious) + " " + swSig(rotCurrent) + " " + swSig([]byte("raw"))},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := signature.SignHeaders(tc.scheme, tc.id, at, body, tc.secrets...)
			if err != nil {
				t.Fatalf("SignHeaders: %v", err)
			}
			if !equalHeader(h, tc.want) {
				t.Fatalf("SignHeaders =\n%v\nwant\n%v", h, tc.want)
			}
		})
	}
}

func TestSignHeadersErrors(t *testing.T) {
	body := []byte(`{"a":1}`)
	at := time.Unix(1700000000, 0)
	const badSecret = "whsec_not*base64!"
	tests := []struct {
		name    string
		scheme  signature.Scheme
		id      string
		t       time.Time
		secrets [][]byte
		wantErr error // nil: any error
	}{
		{name: "no secret (1flow)", scheme: signature.SchemeOneFlow, id: "x", t: at, wantErr: signature.ErrEmptySecret},
		{name: "no secret (standard)", scheme: signature.SchemeStandardWebhooks, id: "x", t: at, wantErr: signature.ErrEmptySecret},
		{name: "only empty secrets", scheme: signature.SchemeStandardWebhooks, id: "x", t: at, secrets: [][]byte{nil, {}}, wantErr: signature.ErrEmptySecret},
		{name: "malformed whsec_", scheme: signature.SchemeStandardWebhooks, id: "x", t: at, secrets: [][]byte{[]byte(badSecret)}, wantErr: signature.ErrInvalidSecret},
		{name: "malformed whsec_ as previous key", scheme: signature.SchemeStandardWebhooks, id: "x", t: at, secrets: [][]byte{rotCurrent, []byte(badSecret)}, wantErr: signature.ErrInvalidSecret},
		{name: "whsec_ without padding", scheme: signature.SchemeStandardWebhooks, id: "x", t: at, secrets: [][]byte{[]byte(strings.TrimRight(string(rotCurrent), "="))}, wantErr: signature.ErrInvalidSecret},
		{name: "whsec_ URL-safe alphabet", scheme: signature.SchemeStandardWebhooks, id: "x", t: at, secrets: [][]byte{[]byte("whsec_-_-_")}, wantErr: signature.ErrInvalidSecret},
		{name: "whsec_ with nothing after it", scheme: signature.SchemeStandardWebhooks, id: "x", t: at, secrets: [][]byte{[]byte("whsec_")}, wantErr: signature.ErrEmptySecret},
		{name: "unknown scheme", scheme: "hmac-sha512", id: "x", t: at, secrets: [][]byte{[]byte("k")}},
		{name: "empty scheme", scheme: "", id: "x", t: at, secrets: [][]byte{[]byte("k")}},
		{name: "standard without id", scheme: signature.SchemeStandardWebhooks, id: "", t: at, secrets: [][]byte{[]byte("k")}},
		{name: "standard id with a dot", scheme: signature.SchemeStandardWebhooks, id: "msg.1", t: at, secrets: [][]byte{[]byte("k")}},
		{name: "id with newline", scheme: signature.SchemeOneFlow, id: "a\nb", t: at, secrets: [][]byte{[]byte("k")}},
		{name: "id with CR (standard)", scheme: signature.SchemeStandardWebhooks, id: "a\rb", t: at, secrets: [][]byte{[]byte("k")}},
		{name: "id with NUL", scheme: signature.SchemeStandardWebhooks, id: "a\x00b", t: at, secrets: [][]byte{[]byte("k")}},
		{name: "id with DEL", scheme: signature.SchemeStandardWebhooks, id: "a\x7fb", t: at, secrets: [][]byte{[]byte("k")}},
		{name: "id with leading space", scheme: signature.SchemeStandardWebhooks, id: " a", t: at, secrets: [][]byte{[]byte("k")}},
		{name: "id with trailing tab", scheme: signature.SchemeOneFlow, id: "a\t", t: at, secrets: [][]byte{[]byte("k")}},
		{name: "time before 1970", scheme: signature.SchemeStandardWebhooks, id: "x", t: time.Unix(-1, 0), secrets: [][]byte{[]byte("k")}},
		{name: "zero time (1flow)", scheme: signature.SchemeOneFlow, id: "x", t: time.Time{}, secrets: [][]byte{[]byte("k")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := signature.SignHeaders(tc.scheme, tc.id, tc.t, body, tc.secrets...)
			if err == nil {
				t.Fatalf("SignHeaders succeeded with %v, want an error", h)
			}
			if h != nil {
				t.Errorf("SignHeaders returned headers %v with error %v", h, err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("got error %v, want %v", err, tc.wantErr)
			}
			for _, s := range tc.secrets {
				if k := strings.TrimPrefix(string(s), "whsec_"); len(k) >= 4 && strings.Contains(err.Error(), k) {
					t.Errorf("error %q leaks a secret", err)
				}
			}
		})
	}
	// Valid edge cases that must not be rejected.
	for _, id := range []string{"a b", "a\tb", "whd_0123/endpoint-a", "é"} {
		if _, err := signature.SignHeaders(signature.SchemeStandardWebhooks, id, at, body, []byte("k")); err != nil {
			t.Errorf("id %q rejected: %v", id, err)
		}
	}
	if _, err := signature.SignHeaders(signature.SchemeOneFlow, "evt.1", time.Unix(0, 0), nil, []byte("k")); err != nil {
		t.Errorf("1flow with a dotted id at the epoch rejected: %v", err)
	}
}

func TestSignStandardErrors(t *testing.T) {
	tests := []struct {
		name    string
		secret  string
		wantErr error
	}{
		{"empty", "", signature.ErrEmptySecret},
		{"prefix only", "whsec_", signature.ErrEmptySecret},
		{"bad character", "whsec_abc$", signature.ErrInvalidSecret},
		{"bad length", "whsec_abcde", signature.ErrInvalidSecret},
		{"bad padding", "whsec_ab=c", signature.ErrInvalidSecret},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sig, err := signature.SignStandard([]byte(tc.secret), "id", "1", nil)
			if sig != "" {
				t.Errorf("returned signature %q with the error", sig)
			}
			checkSentinel(t, err, tc.wantErr)
		})
	}
}

func TestVerifyStandardAccepts(t *testing.T) {
	body := []byte(swBody)
	good := swSignature
	rot, err := signature.SignHeaders(signature.SchemeStandardWebhooks, swID, swTime, body, rotCurrent, rotPrevious)
	if err != nil {
		t.Fatal(err)
	}
	rawKey, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(swSecret, "whsec_"))
	tests := []struct {
		name   string
		secret []byte
		header http.Header
		now    time.Time
		opts   []signature.Option
	}{
		{name: "same instant", secret: []byte(swSecret), header: swHeader(swID, swTimestamp, good), now: swTime},
		{name: "receiver 4m59s behind", secret: []byte(swSecret), header: swHeader(swID, swTimestamp, good), now: swTime.Add(-4*time.Minute - 59*time.Second)},
		{name: "receiver 4m59s ahead", secret: []byte(swSecret), header: swHeader(swID, swTimestamp, good), now: swTime.Add(4*time.Minute + 59*time.Second)},
		{name: "exactly at past edge", secret: []byte(swSecret), header: swHeader(swID, swTimestamp, good), now: swTime.Add(signature.DefaultTolerance)},
		{name: "exactly at future edge", secret: []byte(swSecret), header: swHeader(swID, swTimestamp, good), now: swTime.Add(-signature.DefaultTolerance)},
		{name: "custom tolerance", secret: []byte(swSecret), header: swHeader(swID, swTimestamp, good), now: swTime.Add(59 * time.Minute), opts: []signature.Option{signature.WithTolerance(time.Hour)}},
		{name: "tolerance 0 disables replay check", secret: []byte(swSecret), header: swHeader(swID, swTimestamp, good), now: swTime.AddDate(10, 0, 0), opts: []signature.Option{signature.WithTolerance(0)}},
		{name: "negative tolerance disables replay check", secret: []byte(swSecret), header: swHeader(swID, swTimestamp, good), now: swTime.AddDate(-10, 0, 0), opts: []signature.Option{signature.WithTolerance(-1)}},
		{name: "decoded key as raw secret", secret: rawKey, header: swHeader(swID, swTimestamp, good), now: swTime},
		{name: "rotation header, current key", secret: rotCurrent, header: rot, now: swTime},
		{name: "rotation header, previous key", secret: rotPrevious, header: rot, now: swTime},
		{name: "v2 before v1", secret: []byte(swSecret), header: swHeader(swID, swTimestamp, "v2,xxx "+good), now: swTime},
		{name: "asymmetric v1a before v1", secret: []byte(swSecret), header: swHeader(swID, swTimestamp, "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg== "+good), now: swTime},
		{name: "garbage entries around", secret: []byte(swSecret), header: swHeader(swID, swTimestamp, "nocomma , v1, "+good+" v1,"), now: swTime},
		{name: "several spaces between signatures", secret: []byte(swSecret), header: swHeader(swID, swTimestamp, swOtherSig+"   "+good), now: swTime},
		{name: "valid one last of many", secret: []byte(swSecret), header: swHeader(swID, swTimestamp, strings.Repeat(swOtherSig+" ", 20)+good), now: swTime},
		{
			name: "hand-built header map with lowercase names", secret: []byte(swSecret), now: swTime,
			header: http.Header{"webhook-id": {swID}, "webhook-timestamp": {swTimestamp}, "webhook-signature": {good}},
		},
		{
			name: "epoch timestamp", secret: []byte("k"), now: time.Unix(0, 0),
			header: swHeader("m", "0", mustSignStandard(t, []byte("k"), "m", "0", body)),
		},
		{
			name: "dotted id from another sender verifies", secret: []byte("k"), now: swTime,
			header: swHeader("evt.1", swTimestamp, mustSignStandard(t, []byte("k"), "evt.1", swTimestamp, body)),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]signature.Option{fixedClock(tc.now)}, tc.opts...)
			if err := signature.VerifyStandard(tc.secret, tc.header, body, opts...); err != nil {
				t.Fatalf("VerifyStandard: unexpected error %v", err)
			}
		})
	}
}

func TestVerifyStandardRejects(t *testing.T) {
	body := swBody
	good := swSignature
	goodB64 := strings.TrimPrefix(good, "v1,")
	raw, _ := base64.StdEncoding.DecodeString(goodB64)
	rot, err := signature.SignHeaders(signature.SchemeStandardWebhooks, swID, swTime, []byte(body), rotCurrent, rotPrevious)
	if err != nil {
		t.Fatal(err)
	}
	oneFlow, err := signature.SignHeaders(signature.SchemeOneFlow, swID, swTime, []byte(body), []byte(swSecret))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		secret  string
		header  http.Header
		body    string
		now     time.Time
		opts    []signature.Option
		wantErr error
	}{
		{name: "wrong key", secret: "whsec_" + base64.StdEncoding.EncodeToString([]byte("wrong")), header: swHeader(swID, swTimestamp, good), body: body, now: swTime, wantErr: signature.ErrMismatch},
		{name: "whsec_ secret used without the prefix (base64 text as raw key)", secret: strings.TrimPrefix(swSecret, "whsec_"), header: swHeader(swID, swTimestamp, good), body: body, now: swTime, wantErr: signature.ErrMismatch},
		{name: "rotation header, third key", secret: string(rotThird), header: rot, body: body, now: swTime, wantErr: signature.ErrMismatch},
		{name: "body modified in one byte", secret: swSecret, header: swHeader(swID, swTimestamp, good), body: `{"test": 2432232315}`, now: swTime, wantErr: signature.ErrMismatch},
		{name: "body with trailing newline", secret: swSecret, header: swHeader(swID, swTimestamp, good), body: body + "\n", now: swTime, wantErr: signature.ErrMismatch},
		{name: "empty body", secret: swSecret, header: swHeader(swID, swTimestamp, good), body: "", now: swTime, wantErr: signature.ErrMismatch},
		{name: "id modified", secret: swSecret, header: swHeader(swID+"x", swTimestamp, good), body: body, now: swTime, wantErr: signature.ErrMismatch},
		{name: "timestamp modified by 1s", secret: swSecret, header: swHeader(swID, "1614265331", good), body: body, now: swTime, wantErr: signature.ErrMismatch},
		{name: "timestamp with leading zero", secret: swSecret, header: swHeader(swID, "0"+swTimestamp, good), body: body, now: swTime, wantErr: signature.ErrMismatch},
		{name: "signature of another message", secret: swSecret, header: swHeader(swID, swTimestamp, swOtherSig), body: body, now: swTime, wantErr: signature.ErrMismatch},
		{name: "v2 signature only", secret: swSecret, header: swHeader(swID, swTimestamp, "v2,"+goodB64), body: body, now: swTime, wantErr: signature.ErrMismatch},
		{name: "uppercase version", secret: swSecret, header: swHeader(swID, swTimestamp, "V1,"+goodB64), body: body, now: swTime, wantErr: signature.ErrMismatch},
		{name: "no version", secret: swSecret, header: swHeader(swID, swTimestamp, goodB64), body: body, now: swTime, wantErr: signature.ErrMismatch},
		{name: "v1 with empty signature", secret: swSecret, header: swHeader(swID, swTimestamp, "v1,"), body: body, now: swTime, wantErr: signature.ErrMismatch},
		{name: "partial signature", secret: swSecret, header: swHeader(swID, swTimestamp, good[:8]), body: body, now: swTime, wantErr: signature.ErrMismatch},
		{name: "signature without padding", secret: swSecret, header: swHeader(swID, swTimestamp, strings.TrimRight(good, "=")), body: body, now: swTime, wantErr: signature.ErrMismatch},
		{name: "signature in URL-safe base64", secret: swSecret, header: swHeader(swID, swTimestamp, "v1,"+base64.URLEncoding.EncodeToString(raw)), body: body, now: swTime, wantErr: signature.ErrMismatch},
		{name: "signature in hex", secret: swSecret, header: swHeader(swID, swTimestamp, "v1,"+hex.EncodeToString(raw)), body: body, now: swTime, wantErr: signature.ErrMismatch},
		{name: "extra field after signature", secret: swSecret, header: swHeader(swID, swTimestamp, good+",x"), body: body, now: swTime, wantErr: signature.ErrMismatch},
		{name: "tab-separated signatures", secret: swSecret, header: swHeader(swID, swTimestamp, swOtherSig+"\t"+good), body: body, now: swTime, wantErr: signature.ErrMismatch},
		{name: "missing id", secret: swSecret, header: swHeader("", swTimestamp, good), body: body, now: swTime, wantErr: signature.ErrMissingHeaders},
		{name: "missing timestamp", secret: swSecret, header: swHeader(swID, "", good), body: body, now: swTime, wantErr: signature.ErrMissingHeaders},
		{name: "missing signature", secret: swSecret, header: swHeader(swID, swTimestamp, ""), body: body, now: swTime, wantErr: signature.ErrMissingHeaders},
		{name: "empty header", secret: swSecret, header: http.Header{}, body: body, now: swTime, wantErr: signature.ErrMissingHeaders},
		{name: "nil header", secret: swSecret, header: nil, body: body, now: swTime, wantErr: signature.ErrMissingHeaders},
		{name: "1flow headers only", secret: swSecret, header: oneFlow, body: body, now: swTime, wantErr: signature.ErrMissingHeaders},
		{name: "timestamp is text", secret: swSecret, header: swHeader(swID, "hello", good), body: body, now: swTime, wantErr: signature.ErrInvalidTimestamp},
		{name: "timestamp with fraction", secret: swSecret, header: swHeader(swID, swTimestamp+".0", good), body: body, now: swTime, wantErr: signature.ErrInvalidTimestamp},
		{name: "timestamp with plus sign", secret: swSecret, header: swHeader(swID, "+"+swTimestamp, good), body: body, now: swTime, wantErr: signature.ErrInvalidTimestamp},
		{name: "timestamp with space", secret: swSecret, header: swHeader(swID, swTimestamp+" ", good), body: body, now: swTime, wantErr: signature.ErrInvalidTimestamp},
		{name: "negative timestamp", secret: swSecret, header: swHeader(swID, "-"+swTimestamp, good), body: body, now: swTime, wantErr: signature.ErrInvalidTimestamp},
		{name: "timestamp overflows int64", secret: swSecret, header: swHeader(swID, "99999999999999999999", good), body: body, now: swTime, wantErr: signature.ErrInvalidTimestamp},
		{name: "timestamp as RFC 3339", secret: swSecret, header: swHeader(swID, "2021-02-25T15:02:10Z", good), body: body, now: swTime, wantErr: signature.ErrInvalidTimestamp},
		{name: "timestamp in milliseconds is far in the future", secret: swSecret, header: swHeader(swID, swTimestamp+"000", good), body: body, now: swTime, wantErr: signature.ErrTimestampExpired},
		{name: "max int64 timestamp", secret: swSecret, header: swHeader(swID, strconv.FormatInt(1<<63-1, 10), good), body: body, now: swTime, wantErr: signature.ErrTimestampExpired},
		{name: "last second of year 9999", secret: swSecret, header: swHeader(swID, "253402300799", good), body: body, now: swTime, wantErr: signature.ErrTimestampExpired},
		{name: "too old by 1s", secret: swSecret, header: swHeader(swID, swTimestamp, good), body: body, now: swTime.Add(signature.DefaultTolerance + time.Second), wantErr: signature.ErrTimestampExpired},
		{name: "too old by 1ns", secret: swSecret, header: swHeader(swID, swTimestamp, good), body: body, now: swTime.Add(signature.DefaultTolerance + 1), wantErr: signature.ErrTimestampExpired},
		{name: "too new by 1s", secret: swSecret, header: swHeader(swID, swTimestamp, good), body: body, now: swTime.Add(-signature.DefaultTolerance - time.Second), wantErr: signature.ErrTimestampExpired},
		{name: "custom tolerance past", secret: swSecret, header: swHeader(swID, swTimestamp, good), body: body, now: swTime.Add(2 * time.Second), opts: []signature.Option{signature.WithTolerance(time.Second)}, wantErr: signature.ErrTimestampExpired},
		{name: "custom tolerance future", secret: swSecret, header: swHeader(swID, swTimestamp, good), body: body, now: swTime.Add(-2 * time.Second), opts: []signature.Option{signature.WithTolerance(time.Second)}, wantErr: signature.ErrTimestampExpired},
		{name: "replay check before signature check", secret: swSecret, header: swHeader(swID, swTimestamp, swOtherSig), body: body, now: swTime.Add(time.Hour), wantErr: signature.ErrTimestampExpired},
		{name: "empty secret", secret: "", header: swHeader(swID, swTimestamp, good), body: body, now: swTime, wantErr: signature.ErrEmptySecret},
		{name: "empty secret before missing headers", secret: "", header: nil, body: body, now: swTime, wantErr: signature.ErrEmptySecret},
		{name: "whsec_ prefix only", secret: "whsec_", header: swHeader(swID, swTimestamp, good), body: body, now: swTime, wantErr: signature.ErrEmptySecret},
		{name: "malformed whsec_ secret", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS", header: swHeader(swID, swTimestamp, good), body: body, now: swTime, wantErr: signature.ErrInvalidSecret},
		{name: "malformed whsec_ before missing headers", secret: "whsec_%%%", header: nil, body: body, now: swTime, wantErr: signature.ErrInvalidSecret},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]signature.Option{fixedClock(tc.now)}, tc.opts...)
			err := signature.VerifyStandard([]byte(tc.secret), tc.header, []byte(tc.body), opts...)
			checkSentinel(t, err, tc.wantErr)
			msg := err.Error()
			if s := strings.TrimPrefix(tc.secret, "whsec_"); s != "" && strings.Contains(msg, s) {
				t.Errorf("error %q leaks the secret", msg)
			}
			if want, err := signature.SignStandard([]byte(tc.secret), tc.header.Get(signature.StandardHeaderID),
				tc.header.Get(signature.StandardHeaderTimestamp), []byte(tc.body)); err == nil && strings.Contains(msg, strings.TrimPrefix(want, "v1,")) {
				t.Errorf("error %q leaks the expected signature", msg)
			}
		})
	}
}

func TestVerifyStandardWithRealClock(t *testing.T) {
	body := []byte(`{"event":"document.ready"}`)
	h, err := signature.SignHeaders(signature.SchemeStandardWebhooks, "whd_1", time.Now(), body, rotCurrent)
	if err != nil {
		t.Fatal(err)
	}
	if err := signature.VerifyStandard(rotCurrent, h, body); err != nil {
		t.Fatalf("fresh signature rejected with the default clock: %v", err)
	}
	old, err := signature.SignHeaders(signature.SchemeStandardWebhooks, "whd_1", time.Now().Add(-time.Hour), body, rotCurrent)
	if err != nil {
		t.Fatal(err)
	}
	checkSentinel(t, signature.VerifyStandard(rotCurrent, old, body), signature.ErrTimestampExpired)
}

// Sign→verify round trips for both schemes, including the 1flow rollover that a receiver does by hand.
func TestSignHeadersRoundTrip(t *testing.T) {
	bodies := [][]byte{nil, {}, []byte(`{"a":1}`), []byte("\x00\xff not UTF-8"), bytes.Repeat([]byte("x"), 1<<16)}
	at := time.Unix(1700000000, 999_000_000)
	clock := fixedClock(at.Add(time.Minute))
	newKey, oldKey, other := []byte("whsec_bmV3LWtleQ=="), []byte("old-key"), []byte("other-key")
	for i, body := range bodies {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			// 1flow: the sender signs with the new key only; the receiver tries new, then old.
			h1, err := signature.SignHeaders(signature.SchemeOneFlow, "whd_1", at, body, newKey, oldKey)
			if err != nil {
				t.Fatal(err)
			}
			if err := signature.Verify(newKey, h1, body, clock); err != nil {
				t.Errorf("1flow, new key: %v", err)
			}
			checkSentinel(t, signature.Verify(oldKey, h1, body, clock), signature.ErrMismatch)
			if err := verifyEither(h1, body, clock, newKey, oldKey); err != nil {
				t.Errorf("1flow rollover receiver: %v", err)
			}
			// A sender still on the old key also passes the rollover receiver.
			hOld, err := signature.SignHeaders(signature.SchemeOneFlow, "whd_1", at, body, oldKey)
			if err != nil {
				t.Fatal(err)
			}
			if err := verifyEither(hOld, body, clock, newKey, oldKey); err != nil {
				t.Errorf("1flow rollover receiver, old sender: %v", err)
			}
			checkSentinel(t, verifyEither(hOld, body, clock, newKey, other), signature.ErrMismatch)

			// standard-webhooks: both signatures are sent; either key verifies alone.
			h2, err := signature.SignHeaders(signature.SchemeStandardWebhooks, "whd_1", at, body, newKey, oldKey)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range [][]byte{newKey, oldKey} {
				if err := signature.VerifyStandard(k, h2, body, clock); err != nil {
					t.Errorf("standard-webhooks, key %q: %v", k, err)
				}
			}
			checkSentinel(t, signature.VerifyStandard(other, h2, body, clock), signature.ErrMismatch)
			if len(body) > 0 {
				tampered := append([]byte{}, body...)
				tampered[0] ^= 1
				checkSentinel(t, signature.VerifyStandard(newKey, h2, tampered, clock), signature.ErrMismatch)
				checkSentinel(t, signature.Verify(newKey, h1, tampered, clock), signature.ErrMismatch)
			}
			// The schemes' headers do not stand in for each other.
			checkSentinel(t, signature.Verify(newKey, h2, body, clock), signature.ErrMissingHeaders)
			checkSentinel(t, signature.VerifyStandard(newKey, h1, body, clock), signature.ErrMissingHeaders)
		})
	}
}

// verifyEither is what a 1flow receiver does during a key rollover.
func verifyEither(h http.Header, body []byte, clock signature.Option, keys ...[]byte) error {
	var err error
	for _, k := range keys {
		if err = signature.Verify(k, h, body, clock); !errors.Is(err, signature.ErrMismatch) {
			return err
		}
	}
	return err
}

func FuzzVerifyStandard(f *testing.F) {
	f.Add([]byte(swSecret), swID, swTimestamp, []byte(swBody), swSignature, int64(1614265330))
	f.Add([]byte(swSecret), swID, swTimestamp, []byte(swBody), "v2,xxx "+swSignature, int64(0))
	f.Add([]byte(swSecret), swID, swTimestamp, []byte(swBody), swOtherSig+" "+swSignature+" v1,", int64(-1))
	f.Add([]byte("whsec_"), "m", "0", []byte{}, "v1,", int64(1<<63-1))
	f.Add([]byte("whsec_%%"), "m.1", "-1", []byte("x"), "v1", int64(253402300800))
	f.Add([]byte("raw"), " m", "99999999999999999999", []byte("\xff\xfe"), ",,, ", int64(1700000000))
	f.Add([]byte{}, "", "", []byte(nil), "", int64(0))
	f.Add(rotCurrent, "whd_0123/endpoint-a", "1700000000", []byte(`{"a":1}`), "v1a,abc v1,", int64(1700000000))
	f.Add([]byte("k\x00"), "a\nb", "+1", []byte("{}"), "v1,"+strings.Repeat("A", 43)+"=", int64(-62135596800))

	f.Fuzz(func(t *testing.T, secret []byte, id, timestamp string, body []byte, sig string, sec int64) {
		// Arbitrary headers: never panics, fails only with a sentinel, and accepts only a v1 signature
		// that SignStandard produces.
		h := http.Header{}
		h.Set(signature.StandardHeaderID, id)
		h.Set(signature.StandardHeaderTimestamp, timestamp)
		h.Set(signature.StandardHeaderSignature, sig)
		want, signErr := signature.SignStandard(secret, id, timestamp, body)
		for _, opts := range [][]signature.Option{nil, {signature.WithTolerance(0)}, {fixedClock(swTime)}} {
			err := signature.VerifyStandard(secret, h, body, opts...)
			if err == nil {
				if signErr != nil || !containsField(sig, want) {
					t.Fatalf("accepted %q; SignStandard gives %q, %v", sig, want, signErr)
				}
				continue
			}
			matched := false
			for _, s := range allSentinels {
				matched = matched || errors.Is(err, s)
			}
			if !matched {
				t.Fatalf("error %v is not one of the exported sentinels", err)
			}
			// Messages are fixed text plus timestamps, so a short secret can occur in them by chance
			// ("9999" in "after the year 9999", "sec_" in "whsec_"): only a secret of realistic length,
			// which cannot, is looked for.
			if s := strings.TrimPrefix(string(secret), "whsec_"); len(s) >= 16 && strings.Contains(err.Error(), s) {
				t.Fatalf("error %q leaks the secret", err)
			}
		}

		// Round trip: SignHeaders signs any non-empty secret and valid id, and its headers always
		// verify with the replay check off, also with a second (rotation) key.
		at := time.Unix(sec, 0)
		hs, err := signature.SignHeaders(signature.SchemeStandardWebhooks, id, at, body, secret, rotCurrent)
		_, keyErr := signature.SignStandard(secret, "", "", nil)
		argsOK := validStandardID(id) && sec >= 0
		keyOK := len(secret) == 0 || keyErr == nil
		if !argsOK || !keyOK {
			if err == nil {
				t.Fatalf("SignHeaders accepted id %q at %d with secret %q", id, sec, secret)
			}
			if argsOK && !errors.Is(err, keyErr) {
				t.Fatalf("malformed secret: SignHeaders error %v, want %v", err, keyErr)
			}
			return
		}
		if err != nil {
			t.Fatalf("SignHeaders(id=%q, t=%d, body=%q): %v", id, sec, body, err)
		}
		if got := hs.Get(signature.StandardHeaderTimestamp); got != strconv.FormatInt(sec, 10) {
			t.Fatalf("webhook-timestamp %q, want %d", got, sec)
		}
		keys := [][]byte{rotCurrent}
		if len(secret) > 0 {
			keys = append(keys, secret)
		}
		for _, k := range keys {
			if err := signature.VerifyStandard(k, hs, body, signature.WithTolerance(0)); err != nil {
				t.Fatalf("round trip failed: secret=%q id=%q t=%d body=%q: %v", k, id, sec, body, err)
			}
		}
		tampered := append([]byte{}, body...)
		if len(tampered) == 0 {
			tampered = []byte{0}
		} else {
			tampered[len(tampered)/2] ^= 0x01
		}
		if err := signature.VerifyStandard(rotCurrent, hs, tampered, signature.WithTolerance(0)); !errors.Is(err, signature.ErrMismatch) {
			t.Fatalf("tampered body: got %v, want ErrMismatch", err)
		}
	})
}

// containsField reports whether the space-separated list holds want.
func containsField(list, want string) bool {
	for _, f := range strings.Split(list, " ") {
		if f == want {
			return true
		}
	}
	return false
}

// validStandardID is the id rule SignHeaders documents for the standard-webhooks scheme.
func validStandardID(id string) bool {
	if id == "" || strings.Contains(id, ".") || strings.Trim(id, " \t") != id {
		return false
	}
	for _, c := range []byte(id) {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
