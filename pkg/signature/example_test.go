package signature_test

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/1flow/webhook-operator/pkg/signature"
)

func ExampleSignHeaders() {
	body := []byte(`{"test": 2432232314}`)
	current := []byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	previous := []byte("whsec_cm90YXRpb24ta2V5LTAxMjM0NTY3ODlhYmNkZWZnaGk=")
	h, err := signature.SignHeaders(signature.SchemeStandardWebhooks, "msg_p5jXN8AQM9LWM0D4loKWxJek",
		time.Unix(1614265330, 0), body, current, previous)
	if err != nil {
		panic(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "https://receiver.invalid/hook", nil)
	for k, v := range h {
		req.Header[k] = v
	}
	fmt.Println(req.Header.Get("webhook-timestamp"))
	// Current key first, previous key second (reproducible with openssl dgst -sha256 -mac HMAC).
	fmt.Println(req.Header.Get("webhook-signature"))
	// Output:
	// 1614265330
	// v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1,+Oc9R0p6KQI63lR/m3PaRJnq7XhmWZP8EZYypYVEsXs=
}

func ExampleVerifyStandard() {
	secret := []byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	body := []byte(`{"test": 2432232314}`) // the raw body, before any JSON parsing
	h := http.Header{}
	h.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set("webhook-timestamp", "1614265330")
	h.Set("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")

	// A real receiver uses its own clock (the default); this one pretends it is 2021-02-25.
	clock := signature.WithClock(func() time.Time { return time.Unix(1614265330, 0) })
	fmt.Println(signature.VerifyStandard(secret, h, body, clock))
	fmt.Println(signature.VerifyStandard(secret, h, []byte(`{"test": 1}`), clock))
	// Output:
	// <nil>
	// signature: signature does not match
}

// A 1flow receiver during a key rollover: the sender signs with one key, so try the new key and then
// the old one.
func ExampleVerify_keyRotation() {
	newKey, oldKey := []byte("new-secret"), []byte("old-secret")
	body := []byte(`{"a":1}`)
	at := time.UnixMilli(1700000000000)
	h, _ := signature.SignHeaders(signature.SchemeOneFlow, "whd_1", at, body, oldKey) // sender not switched yet

	clock := signature.WithClock(func() time.Time { return at })
	err := signature.Verify(newKey, h, body, clock)
	if errors.Is(err, signature.ErrMismatch) {
		err = signature.Verify(oldKey, h, body, clock)
	}
	fmt.Println(err)
	// Output: <nil>
}
