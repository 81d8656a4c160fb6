package engine

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/1flow/webhook-operator/internal/delivery"
)

// An attempt to an endpoint that was deleted and recreated under the same name reports back after the
// recreation: its result belongs to the old endpoint and must leave the new one's state alone.
func TestAStaleAttemptLeavesTheRecreatedEndpointsStateAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		old := endpoint("acme", "ep", "uid-old")
		old.Request.URL = "https://old.acme/hook"
		eps := endpointsOf(old)
		rec := &arrivals{at: map[string][]time.Time{}}
		sender := newFakeSender(0, func(r delivery.Request) delivery.Result {
			if r.URL == old.Request.URL {
				time.Sleep(30 * time.Second) // the old receiver hangs until its timeout
				return delivery.Result{Error: "timeout"}
			}
			return rec.answer(delivery.Result{StatusCode: 429, Error: "HTTP 429", RetryAfter: time.Minute})(r)
		})
		e := newTestEngine(sender, eps, 8, 8)
		e.Submit(attemptFor(old, "stale", "id-stale"))
		synctest.Wait()

		recreated := endpoint("acme", "ep", "uid-new")
		recreated.MaxPause, recreated.FailureThreshold = time.Hour, 1
		eps.set(recreated)
		e.ObserveEndpoint(recreated.Key, recreated.UID)
		e.Submit(attemptFor(recreated, "throttled", "id-throttled"))
		synctest.Wait()
		if !e.CircuitOpen(recreated.UID) {
			t.Fatal("the recreated endpoint's circuit did not open on its first failure (threshold 1)")
		}

		time.Sleep(31 * time.Second) // the stale attempt reports back, 30 s into the new endpoint's pause
		synctest.Wait()
		if !e.CircuitOpen(recreated.UID) {
			t.Error("the stale attempt's result closed or forgot the recreated endpoint's open circuit")
		}
		for _, uid := range e.KnownUIDs() {
			if uid == old.UID {
				t.Error("the stale attempt's result brought back state for the deleted endpoint")
			}
		}
		e.Submit(attemptFor(recreated, "next", "id-next"))
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		got := rec.of(recreated.Request.URL)
		if len(got) != 2 {
			t.Fatalf("the recreated endpoint received %d requests, want 2", len(got))
		}
		if gap := got[1].Sub(got[0]); gap < time.Minute {
			t.Errorf("the next request went out %s after the 429, inside the 1m Retry-After pause", gap)
		}
	})
}

// Adding a rate limit to an endpoint the engine already knows, or tightening one, applies to the
// attempts that were let out of the lane under the old limit and have not started yet.
func TestARateLimitAddedOrTightenedHoldsAttemptsLetOutUnderTheOldOne(t *testing.T) {
	for _, tt := range []struct {
		name   string
		before RateLimit
	}{
		{"added", RateLimit{}},
		{"tightened", RateLimit{PerSecond: 100, Burst: 100}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ep := endpoint("acme", "ep", "uid-1")
				ep.MaxInFlight, ep.RateLimit = 5, tt.before
				eps := endpointsOf(ep)
				rec := &arrivals{at: map[string][]time.Time{}}
				sender := newFakeSender(10*time.Millisecond, rec.answer(delivery.Result{StatusCode: 200, Success: true}))
				// The engine's own clock decides; a lookup that is slower than the dispatch is what
				// lets attempts out of the lane before the edit is seen.
				e := newTestEngine(sender, eps, 8, 8)
				sendOne(t, e, ep, "learn")
				learned := len(rec.of(ep.Request.URL))

				// The lookup sees the edit; the lane does not know it yet.
				eps.edit(ep.Key, func(e *Endpoint) { e.RateLimit = RateLimit{PerSecond: 1, Burst: 1} })
				start := time.Now()
				events := submitMany(e, ep, "burst", 5)
				time.Sleep(10 * time.Second)
				synctest.Wait()
				got := rec.of(ep.Request.URL)[learned:]
				if len(got) != 5 {
					t.Fatalf("%d requests after the edit, want 5", len(got))
				}
				for i, at := range got {
					if allowed := 1 + at.Sub(start).Seconds(); float64(i+1) > allowed+1e-9 {
						t.Errorf("request %d went out %s after the edit: more than burst 1 + 1/s × time", i+1, at.Sub(start))
					}
				}
				checkOneSentEach(t, e, events)
			})
		})
	}
}

// A receiver's Retry-After pause is part of the summary written to the endpoint's status at once, and a
// new engine (a restart, or the next leader) that reads it back holds attempts until it ends.
func TestARetryAfterPauseSurvivesARestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ep := endpoint("acme", "ep", "uid-1")
		ep.MaxPause = time.Hour
		eps := endpointsOf(ep)
		rec := &arrivals{at: map[string][]time.Time{}}
		sender := newFakeSender(10*time.Millisecond, rec.answer(delivery.Result{StatusCode: 503, RetryAfter: time.Minute}))
		e := newTestEngine(sender, eps, 8, 8)
		first := sendOne(t, e, ep, "first")
		// Written at once, whatever the flush interval: a restart in between would lose the pause.
		s, due, _ := e.SummaryDue(ep.UID, time.Hour)
		if !due {
			e.Flushed(ep.UID, s)
			s, due, _ = e.SummaryDue(ep.UID, time.Hour)
		}
		want := first.Result.Start.Add(first.Result.Duration).Add(time.Minute)
		if s.RetryAfterUntil.Before(want.Add(-time.Second)) {
			t.Fatalf("summary due %t with retryAfterUntil %s, want about %s", due, s.RetryAfterUntil, want)
		}
		e.Stop()

		// The next process reads the pause back from the status.
		eps.edit(ep.Key, func(e *Endpoint) { e.RetryAfterUntil = s.RetryAfterUntil })
		sender.setAnswer(rec.answer(delivery.Result{StatusCode: 200, Success: true}))
		restarted := newTestEngine(sender, eps, 8, 8)
		events := submitMany(restarted, ep, "after", 2)
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		got := rec.of(ep.Request.URL)
		if len(got) != 3 {
			t.Fatalf("%d requests, want 3", len(got))
		}
		for _, at := range got[1:] {
			if at.Before(s.RetryAfterUntil) {
				t.Errorf("a request went out at %s, inside the pause until %s", at, s.RetryAfterUntil)
			}
		}
		checkOneSentEach(t, restarted, events)
	})
}
