package engine

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/1flow/webhook-operator/internal/delivery"
)

// instantSender answers every attempt at once and keeps nothing, so that only the engine's work counts.
type instantSender struct{}

func (instantSender) Send(_ context.Context, r delivery.Request) delivery.Result { return ok(r) }

// BenchmarkDeliveryCycle measures the engine's own share of one delivery: submit, admission, the
// attempt's goroutine, the outcome in the mailbox, the wake and the acknowledgement.
func BenchmarkDeliveryCycle(b *testing.B) {
	ep := endpoint("ns", "hook", "uid-1")
	e := New(Config{Sender: instantSender{}, Endpoints: endpointsOf(ep), Now: time.Now, MaxInFlight: 512})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		id := strconv.Itoa(i)
		e.Submit(attemptFor(ep, "ev-"+id, "id-"+id))
		<-e.EventWakes.Signal()
		for _, key := range e.EventWakes.Take() {
			e.Ack(key, e.Outcomes(key))
		}
	}
}
