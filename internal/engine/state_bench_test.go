package engine

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// BenchmarkStatePerEndpoint measures what the engine keeps per endpoint once each of many endpoints has
// had one delivery, the cost of an operator that serves many tenants (docs/operations.md quotes it), and
// checks that nothing is kept once they are gone.
//
//	go test ./internal/engine -run '^$' -bench StatePerEndpoint -benchtime 3x
func BenchmarkStatePerEndpoint(b *testing.B) {
	const endpoints = 10_000
	for b.Loop() {
		eps := endpointsOf()
		all := make([]Endpoint, endpoints)
		for i := range all {
			all[i] = endpoint(fmt.Sprintf("tenant-%d", i%200), fmt.Sprintf("ep-%d", i), types.UID(fmt.Sprintf("uid-%d", i)))
			eps.set(all[i])
		}
		e := newTestEngine(newFakeSender(0, ok), eps, 64, 64)
		before := heapInUse()
		for i, ep := range all {
			e.Submit(attemptFor(ep, fmt.Sprintf("ev-%d", i), fmt.Sprintf("id-%d", i)))
		}
		for _, ep := range all {
			event := types.NamespacedName{Namespace: ep.Key.Namespace, Name: "ev-" + ep.Key.Name[len("ep-"):]}
			for outcomes := e.Outcomes(event); ; outcomes = e.Outcomes(event) {
				if len(outcomes) > 0 {
					e.Ack(event, outcomes)
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
		if st := e.Stats(); st.Busy != 0 || st.Mailbox != 0 {
			b.Fatalf("deliveries left: %+v", st)
		}
		held := heapInUse()
		for _, ep := range all {
			e.ForgetEndpoint(ep.Key)
		}
		if st := e.Stats(); st != (Stats{}) {
			b.Fatalf("state left after every endpoint went: %+v", st)
		}
		b.ReportMetric(float64(held-before)/endpoints, "B/endpoint")
		runtime.KeepAlive(eps)
	}
}

func heapInUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}
