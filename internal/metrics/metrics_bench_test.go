package metrics

import "testing"

// BenchmarkRecordDelivered is what one delivered event costs the metrics: one attempt and one finish.
func BenchmarkRecordDelivered(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		RecordAttempt(ResultSuccess, 200, 0.002)
		RecordFinished(true, 1)
	}
}
