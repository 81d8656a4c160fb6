package signature

import (
	"testing"
	"time"
)

// benchBody is about the size of a typical document.ready body.
var benchBody = []byte(`{"event":"document.ready","success":true,"documentId":"doc_abc123xyz",` +
	`"status":{"extractionStatus":"INDEXED","docType":"INVOICE","createdAt":"2024-01-02T03:04:05Z",` +
	`"updatedAt":"2024-01-02T03:05:06.789Z","extractionErrors":[]},` +
	`"document":{"description":"Invoice #42","totalAmount":1234.56,"documentDate":"2024-01-02"},` +
	`"extraction":{"fields":{"vendor":"ACME","vat":19},"tables":{"items":[{"sku":"A1","qty":2,"price":9.99}]}}}`)

// BenchmarkSignHeaders measures the signing of one attempt, once per scheme.
func BenchmarkSignHeaders(b *testing.B) {
	t := time.Unix(1700000000, 0)
	for _, scheme := range []Scheme{SchemeOneFlow, SchemeStandardWebhooks} {
		b.Run(string(scheme), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := SignHeaders(scheme, "msg_2b4c6d8e0f", t, benchBody, []byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
