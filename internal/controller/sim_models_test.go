package controller

import (
	"slices"
	"sync"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/internal/engine"
)

// simTimers runs the engine's timers (a lane held back by its rate limit or a Retry-After pause) from
// the simulation's loop, in the order of their times, instead of from goroutines of their own: a
// timer that fired on its own would race the loop, and a seed would not replay.
type simTimers struct {
	mu      sync.Mutex
	pending []*simTimer
	seq     int
}

type simTimer struct {
	at      time.Time
	seq     int
	f       func()
	stopped bool
	owner   *simTimers
}

// Stop implements engine.Timer.
func (t *simTimer) Stop() bool {
	t.owner.mu.Lock()
	defer t.owner.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

func (ts *simTimers) afterFunc(d time.Duration, f func()) engine.Timer {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t := &simTimer{at: time.Now().Add(d), seq: ts.seq, f: f, owner: ts}
	ts.seq++
	ts.pending = append(ts.pending, t)
	return t
}

// next returns the time of the earliest timer that has not been stopped.
func (ts *simTimers) next() (time.Time, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.pending = slices.DeleteFunc(ts.pending, func(t *simTimer) bool { return t.stopped })
	if len(ts.pending) == 0 {
		return time.Time{}, false
	}
	return slices.MinFunc(ts.pending, compareTimers).at, true
}

func compareTimers(a, b *simTimer) int {
	if c := a.at.Compare(b.at); c != 0 {
		return c
	}
	return a.seq - b.seq
}

// fireDue runs the earliest timer that is due, if any.
func (ts *simTimers) fireDue() bool {
	at, ok := ts.next()
	if !ok || at.After(time.Now()) {
		return false
	}
	ts.mu.Lock()
	t := slices.MinFunc(ts.pending, compareTimers)
	ts.pending = slices.DeleteFunc(ts.pending, func(p *simTimer) bool { return p == t })
	t.stopped = true
	ts.mu.Unlock()
	t.f()
	return true
}

// rateModel is an endpoint's token bucket as the receiver can check it: full when the limit in force
// began (a new manager, or an edit of spec.rateLimit), refilled at its rate, one token a request.
type rateModel struct {
	limit  webhooksv1alpha1.RateLimit
	tokens float64
	last   time.Time
}

// checkRate checks that a request to ep starting now stays within its rate limit.
func (sim *simulation) checkRate(ep *webhooksv1alpha1.WebhookEndpoint, id string) {
	var limit webhooksv1alpha1.RateLimit
	if perSecond, burst, limited := ep.GetRateLimit(); limited {
		limit = webhooksv1alpha1.RateLimit{RequestsPerSecond: int32(perSecond), Burst: int32(burst)}
	}
	now := time.Now()
	m := sim.rates[ep.UID]
	if m == nil || m.limit != limit {
		m = &rateModel{limit: limit, tokens: float64(limit.Burst), last: now}
		sim.rates[ep.UID] = m
	}
	if limit.RequestsPerSecond == 0 {
		return
	}
	m.tokens = min(float64(limit.Burst), m.tokens+now.Sub(m.last).Seconds()*float64(limit.RequestsPerSecond))
	m.last = now
	if m.tokens < 1-1e-6 {
		sim.violation("attempt %s to endpoint %s exceeds its rate limit %d/s, burst %d (%.3f tokens)",
			id, ep.Name, limit.RequestsPerSecond, limit.Burst, m.tokens)
	}
	m.tokens--
}

// checkPause checks that no request starts inside a Retry-After pause: one this manager was told of, or
// one a status recorded when it started (which is how a restarted manager or the next leader knows it).
func (sim *simulation) checkPause(ep *webhooksv1alpha1.WebhookEndpoint, id string) {
	if until, now := sim.pauses[ep.UID], time.Now(); now.Before(until) {
		sim.violation("attempt %s to endpoint %s inside its Retry-After pause, %s before it ends",
			id, ep.Name, until.Sub(now))
	}
}

// pauseResult returns what the pause model learns when a request ends: the pause its answer asks for,
// capped by the endpoint's maxInterval as the request started.
func (sim *simulation) pauseResult(ep *webhooksv1alpha1.WebhookEndpoint, res delivery.Result) func() {
	uid, maxPause, incarnation := ep.UID, ep.GetMaxInterval(), sim.incarnation
	return func() {
		if res.RetryAfter <= 0 || incarnation != sim.incarnation {
			return
		}
		if until := time.Now().Add(min(res.RetryAfter, maxPause)); until.After(sim.pauses[uid]) {
			sim.pauses[uid] = until
		}
	}
}

// checkInFlight checks the bounds on requests in flight that the manager started: the endpoint's
// spec.maxInFlight, the namespace's share and the global bound. Requests of a crashed manager are
// another process's.
func (sim *simulation) checkInFlight(ep *webhooksv1alpha1.WebhookEndpoint, id string, pending []*pendingRequest) {
	var endpoint, namespace, global int
	for _, p := range pending {
		if p.incarnation != sim.incarnation {
			continue
		}
		global++
		if p.namespace == ep.Namespace {
			namespace++
		}
		if p.uid == ep.UID {
			endpoint++
		}
	}
	// The request that starts now is not pending yet.
	switch {
	case endpoint+1 > ep.GetMaxInFlight():
		sim.violation("attempt %s: %d requests in flight to endpoint %s, spec.maxInFlight is %d", id, endpoint+1, ep.Name, ep.GetMaxInFlight())
	case namespace+1 > simMaxInFlightPerNamespace:
		sim.violation("attempt %s: %d requests in flight in namespace %s, its share is %d", id, namespace+1, ep.Namespace, simMaxInFlightPerNamespace)
	case global+1 > simMaxInFlight:
		sim.violation("attempt %s: %d requests in flight, the global bound is %d", id, global+1, simMaxInFlight)
	}
}

// checkNotSentAfterSuccess checks that a delivery whose receiver answered 2xx to this manager is not
// sent again by it, unless a redelivery was requested since. (A manager that crashed before recording
// the answer legitimately sends it again: at least once.)
func (sim *simulation) checkNotSentAfterSuccess(id string, ep *webhooksv1alpha1.WebhookEndpoint) {
	if at, ok := sim.succeeded[id]; ok && at.incarnation == sim.incarnation {
		sim.violation("delivery %s to %s was answered 2xx at %s and is sent again by the same manager",
			id, ep.Name, at.time.Format("15:04:05.000"))
	}
}

type successSeen struct {
	incarnation int
	time        time.Time
}

// checkSpans checks that no two spans recorded so far share an id.
func (sim *simulation) checkSpans() {
	if sim.spans == nil {
		return
	}
	ended := sim.spans.Ended()
	for _, span := range ended[sim.spansSeen:] {
		sc := span.SpanContext()
		key := sc.TraceID().String() + "/" + sc.SpanID().String()
		if earlier, dup := sim.spanIDs[key]; dup {
			sim.violation("span %q has the id %s of an earlier span %q", span.Name(), key, earlier)
		}
		sim.spanIDs[key] = span.Name()
	}
	sim.spansSeen = len(ended)
}

// recordedPauses is what a new manager knows of the receivers' Retry-After pauses: what the endpoints'
// statuses say.
func (sim *simulation) recordedPauses() {
	clear(sim.pauses)
	for _, k := range sim.store.sortedKeys() {
		if ep, ok := sim.store.latest(k).(*webhooksv1alpha1.WebhookEndpoint); ok && ep != nil && ep.Status.RetryAfterUntil != nil {
			sim.pauses[ep.UID] = ep.Status.RetryAfterUntil.Time
		}
	}
}

// successResult returns what the model of answered deliveries learns when a request ends: a 2xx
// reaches the manager that sent it only if that manager still runs.
func (sim *simulation) successResult(id string, res delivery.Result) func() {
	incarnation := sim.incarnation
	return func() {
		if res.Success && incarnation == sim.incarnation {
			sim.succeeded[id] = successSeen{incarnation: incarnation, time: time.Now()}
		}
	}
}

// oversize is told of a status write that the API server refused because the object would exceed
// etcd's limit: the event must not have been sent, since what its receivers got could never be
// recorded and would be sent again after every restart.
func (sim *simulation) oversize(obj client.Object, size int) {
	sim.trace("status write of %s refused: %d bytes", obj.GetName(), size)
	if n := sim.sentTo[obj.GetUID()]; n > 0 {
		sim.violation("event %s was sent %d times, but its status cannot be written (%d bytes over etcd's limit of %d)",
			obj.GetName(), n, size-simMaxObjectBytes, simMaxObjectBytes)
	}
}
