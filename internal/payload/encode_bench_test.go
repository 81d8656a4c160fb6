package payload

import "testing"

// BenchmarkEncode measures the body of a typical event, which is encoded once per admitted attempt.
func BenchmarkEncode(b *testing.B) {
	ev := fullEvent()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(ev); err != nil {
			b.Fatal(err)
		}
	}
}
