package engine

import (
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	dto "github.com/prometheus/client_model/go"
	"k8s.io/apimachinery/pkg/types"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/internal/metrics"
)

// arrivals records when each request reached the receiver, by URL.
type arrivals struct {
	mu sync.Mutex
	at map[string][]time.Time
}

func (a *arrivals) answer(res delivery.Result) func(delivery.Request) delivery.Result {
	return func(r delivery.Request) delivery.Result {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.at[r.URL] = append(a.at[r.URL], time.Now())
		return res
	}
}

func (a *arrivals) of(url string) []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Time(nil), a.at[url]...)
}

// submitMany submits n attempts of distinct events to ep and returns their event keys.
func submitMany(e *Engine, ep Endpoint, prefix string, n int) []types.NamespacedName {
	events := make([]types.NamespacedName, n)
	for i := range events {
		name := fmt.Sprintf("%s-%d", prefix, i)
		e.Submit(attemptFor(ep, name, "id-"+name))
		events[i] = types.NamespacedName{Namespace: ep.Key.Namespace, Name: name}
	}
	return events
}

// checkOneSentEach checks that every event has exactly one outcome and that it is an HTTP attempt:
// an attempt held back by the rate never ends, so it is never counted.
func checkOneSentEach(t *testing.T, e *Engine, events []types.NamespacedName) {
	t.Helper()
	for _, ev := range events {
		outs := e.Outcomes(ev)
		if len(outs) != 1 || outs[0].Kind != Sent {
			t.Errorf("%s: outcomes %+v, want one Sent", ev.Name, outs)
		}
	}
}

func rateLimitWaitSeconds(t *testing.T, reason string) float64 {
	t.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != metrics.RateLimitWaitSeconds {
			continue
		}
		for _, m := range f.GetMetric() {
			if labelIs(m, "reason", reason) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func labelIs(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue() == value
		}
	}
	return false
}

func TestRateLimitedEndpointSendsNoMoreThanRateTimesTimePlusBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		limited := endpoint("acme", "limited", "uid-limited")
		limited.RateLimit = RateLimit{PerSecond: 2, Burst: 3}
		unlimited := endpoint("acme", "unlimited", "uid-unlimited")
		rec := &arrivals{at: map[string][]time.Time{}}
		sender := newFakeSender(10*time.Millisecond, rec.answer(delivery.Result{StatusCode: 200, Success: true}))
		e := newTestEngine(sender, endpointsOf(limited, unlimited), 64, 64)
		waitedBefore := rateLimitWaitSeconds(t, metrics.WaitRateLimit)

		start := time.Now()
		const n = 20
		limitedEvents := submitMany(e, limited, "l", n)
		unlimitedEvents := submitMany(e, unlimited, "u", n)
		time.Sleep(time.Minute)
		synctest.Wait()

		got := rec.of(limited.Request.URL)
		if len(got) != n {
			t.Fatalf("the limited endpoint received %d requests, want %d", len(got), n)
		}
		for i, at := range got {
			elapsed := at.Sub(start) - sender.delay
			if allowed := float64(limited.RateLimit.Burst) + float64(limited.RateLimit.PerSecond)*elapsed.Seconds(); float64(i+1) > allowed {
				t.Errorf("request %d arrived %s after the first: more than burst + rate × time (%.1f)", i+1, elapsed, allowed)
			}
		}
		// The rate is reached, not only respected: the last request goes out when its token is there.
		if last := got[n-1].Sub(start) - sender.delay; last != 8500*time.Millisecond {
			t.Errorf("the last request started %s after the first, want 8.5s ((20 - 3 burst) / 2 per second)", last)
		}
		checkOneSentEach(t, e, limitedEvents)

		// An endpoint without a rate limit beside it is not held back at all: 20 attempts, 4 at a time.
		if got := rec.of(unlimited.Request.URL); len(got) != n || got[n-1].Sub(start) != 5*sender.delay {
			t.Errorf("the unlimited endpoint received %d requests, the last after %s; want %d after %s",
				len(got), got[len(got)-1].Sub(start), n, 5*sender.delay)
		}
		checkOneSentEach(t, e, unlimitedEvents)

		if waited := rateLimitWaitSeconds(t, metrics.WaitRateLimit) - waitedBefore; waited <= 0 {
			t.Errorf("%s{reason=%q} grew by %v, want the time waited", metrics.RateLimitWaitSeconds, metrics.WaitRateLimit, waited)
		}
	})
}

func TestRetryAfterPausesTheWholeEndpoint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		throttled := endpoint("acme", "throttled", "uid-throttled")
		throttled.MaxInFlight, throttled.MaxPause = 1, time.Hour
		other := endpoint("acme", "other", "uid-other")
		eps := endpointsOf(throttled, other)
		rec := &arrivals{at: map[string][]time.Time{}}
		sender := newFakeSender(10*time.Millisecond, rec.answer(delivery.Result{
			StatusCode: 429, Error: "HTTP 429 Too Many Requests", RetryAfter: 30 * time.Second,
		}))
		e := newTestEngine(sender, eps, 64, 64)
		waitedBefore := rateLimitWaitSeconds(t, metrics.WaitRetryAfter)

		first := submitMany(e, throttled, "first", 1)
		synctest.Wait()
		sender.setAnswer(rec.answer(delivery.Result{StatusCode: 200, Success: true}))
		queued := submitMany(e, throttled, "queued", 3)
		otherEvents := submitMany(e, other, "other", 3)
		time.Sleep(time.Minute)
		synctest.Wait()

		got := rec.of(throttled.Request.URL)
		if len(got) != 4 {
			t.Fatalf("the throttled endpoint received %d requests, want 4", len(got))
		}
		if paused := got[1].Sub(got[0]); paused != 30*time.Second+sender.delay {
			t.Errorf("the next delivery went out %s after the 429, want 30s later (Retry-After)", paused)
		}
		checkOneSentEach(t, e, append(first, queued...))
		// Another endpoint is not paused by the 429 of this one.
		for _, at := range rec.of(other.Request.URL) {
			if at.After(got[0].Add(time.Second)) {
				t.Errorf("the other endpoint received a request at %s, within the pause of the throttled one", at)
			}
		}
		checkOneSentEach(t, e, otherEvents)
		if waited := rateLimitWaitSeconds(t, metrics.WaitRetryAfter) - waitedBefore; waited != 30 {
			t.Errorf("%s{reason=%q} grew by %v, want 30", metrics.RateLimitWaitSeconds, metrics.WaitRetryAfter, waited)
		}
	})
}

func TestRetryAfterPauseIsCappedByMaxPause(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ep := endpoint("acme", "ep", "uid-1")
		ep.MaxInFlight, ep.MaxPause = 1, 5*time.Second
		rec := &arrivals{at: map[string][]time.Time{}}
		sender := newFakeSender(10*time.Millisecond, rec.answer(delivery.Result{StatusCode: 503, RetryAfter: 24 * time.Hour}))
		e := newTestEngine(sender, endpointsOf(ep), 8, 8)
		submitMany(e, ep, "first", 1)
		synctest.Wait()
		sender.setAnswer(rec.answer(delivery.Result{StatusCode: 200, Success: true}))
		submitMany(e, ep, "next", 1)
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := rec.of(ep.Request.URL); len(got) != 2 || got[1].Sub(got[0]) != 5*time.Second+sender.delay {
			t.Errorf("requests at %v, want the second 5s after the first (MaxPause)", got)
		}
	})
}

func TestRateLimitOutlivesTheLaneAndIsReleasedWithTheEndpoint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ep := endpoint("acme", "ep", "uid-1")
		ep.RateLimit = RateLimit{PerSecond: 1, Burst: 1}
		rec := &arrivals{at: map[string][]time.Time{}}
		sender := newFakeSender(0, rec.answer(delivery.Result{StatusCode: 200, Success: true}))
		e := newTestEngine(sender, endpointsOf(ep), 8, 8)
		// One delivery at a time: the lane is released between them, the bucket is not.
		for i := range 3 {
			submitMany(e, ep, fmt.Sprintf("one-%d", i), 1)
			synctest.Wait()
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		got := rec.of(ep.Request.URL)
		if len(got) != 3 || got[2].Sub(got[0]) != 2*time.Second {
			t.Errorf("requests at %v, want one a second", got)
		}
		e.ForgetEndpoint(ep.Key)
		if st := e.Stats(); st.Throttles != 0 || st.Lanes != 0 {
			t.Errorf("after ForgetEndpoint: %+v, want no throttle and no lane", st)
		}
	})
}
