package routing

import "testing"

// TestDeliveryIDFormat pins the delivery id receivers see: "whd_" and the first 16 bytes, in hex, of
// SHA-256 over "<event UID>/<endpoint UID>".
func TestDeliveryIDFormat(t *testing.T) {
	// printf 'uid-event/uid-endpoint' | sha256sum
	const want = "whd_5a68a4067b08f63bc15e0bfc788cfec2"
	if got := DeliveryID("uid-event", "uid-endpoint"); got != want {
		t.Errorf("DeliveryID = %q, want %q", got, want)
	}
}
