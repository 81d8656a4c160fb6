package delivery

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/1flow/webhook-operator/pkg/signature"
)

// BenchmarkSend measures one signed attempt to a loopback receiver over a kept-alive connection. The
// receiver runs in the same process, so its share is in the numbers too.
func BenchmarkSend(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	for _, scheme := range []signature.Scheme{signature.SchemeOneFlow, signature.SchemeStandardWebhooks} {
		b.Run(string(scheme), func(b *testing.B) {
			s := NewSender()
			req := Request{
				URL: srv.URL + "/hook", Body: testBody(), ID: "msg_2b4c6d8e0f", Scheme: scheme,
				Secret: []byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), Timeout: 10 * time.Second,
			}
			b.ReportAllocs()
			for b.Loop() {
				if res := s.Send(context.Background(), req); !res.Success {
					b.Fatal(res.Error)
				}
			}
		})
	}
}
