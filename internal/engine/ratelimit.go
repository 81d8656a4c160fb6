package engine

import (
	"math"
	"time"

	"golang.org/x/time/rate"

	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/internal/metrics"
)

// RateLimit is an endpoint's spec.rateLimit with its burst defaulted; the zero value means no limit.
type RateLimit struct {
	PerSecond, Burst int
}

// throttle holds an endpoint's attempts back, besides its bound on attempts in flight: its rate limit,
// a token bucket, and the pause a receiver asked for with Retry-After. It lives as long as the
// endpoint's other state, not as long as its lane: a lane is released whenever it runs empty, and a
// bucket that started full again each time would not limit a receiver whose deliveries arrive one by
// one.
type throttle struct {
	limit RateLimit
	// bucket is nil when there is no limit.
	bucket      *rate.Limiter
	pausedUntil time.Time
	// wake runs dispatch again when the lane may start its next attempt; wakeAt is when it fires.
	wake   Timer
	wakeAt time.Time
}

// take spends a token for an attempt that starts now, or tells how long until one may start and why
// (a metrics.Wait* reason).
func (t *throttle) take(now time.Time) (wait time.Duration, reason string) {
	if now.Before(t.pausedUntil) {
		return t.pausedUntil.Sub(now), metrics.WaitRetryAfter
	}
	if t.bucket == nil || t.bucket.AllowN(now, 1) {
		return 0, ""
	}
	missing := 1 - t.bucket.TokensAt(now)
	return time.Duration(math.Ceil(missing / float64(t.bucket.Limit()) * float64(time.Second))), metrics.WaitRateLimit
}

// mayStartLocked tells whether the lane's next attempt may start now as far as its endpoint's rate is
// concerned, spending a token when it may, and otherwise makes sure dispatch runs again when it may.
// Until the endpoint has been looked up once its rate limit is not known, so its lane starts a single
// attempt, whose lookup tells.
func (e *Engine) mayStartLocked(l *lane) bool {
	t, known := e.throttles[l.uid]
	if !known {
		return l.running == 0
	}
	now := e.now()
	wait, reason := t.take(now)
	l.noteWait(now, reason)
	if wait > 0 {
		e.wakeLocked(t, now.Add(wait), wait)
	}
	return wait == 0
}

// noteWait counts the time the lane's next attempt has waited for its throttle so far under the reason
// it waited for, and starts counting anew under reason ("" when it no longer waits).
func (l *lane) noteWait(now time.Time, reason string) {
	if !l.waitingSince.IsZero() {
		metrics.AddRateLimitWait(l.waitingFor, now.Sub(l.waitingSince).Seconds())
	}
	l.waitingSince, l.waitingFor = time.Time{}, reason
	if reason != "" {
		l.waitingSince = now
	}
}

// wakeLocked makes sure dispatch runs again at the given time, in wait from now.
func (e *Engine) wakeLocked(t *throttle, at time.Time, wait time.Duration) {
	if t.wake != nil {
		if !t.wakeAt.After(at) {
			return
		}
		t.wake.Stop()
	}
	var timer Timer
	timer = e.afterFunc(wait, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if t.wake == timer {
			t.wake = nil
		}
		e.dispatchLocked()
	})
	t.wake, t.wakeAt = timer, at
}

// learnRateLimitLocked keeps the endpoint's throttle in step with its spec.rateLimit. It returns true the
// first time, when the lane's attempts held back until the rate was known may start. The first time, the
// Retry-After pause is seeded from the status, so a pause outlives a restart.
func (e *Engine) learnRateLimitLocked(ep Endpoint) (first bool) {
	t, known := e.throttles[ep.UID]
	if !known {
		t = &throttle{pausedUntil: ep.RetryAfterUntil}
		e.throttles[ep.UID] = t
	}
	if ep.RateLimit != t.limit {
		perSecond, burst := rate.Limit(ep.RateLimit.PerSecond), max(ep.RateLimit.Burst, 1)
		switch {
		case ep.RateLimit == RateLimit{}:
			t.bucket = nil
		case t.bucket == nil:
			t.bucket = rate.NewLimiter(perSecond, burst)
		default:
			// The tokens saved so far carry over, so that a change cannot be used to reset the bucket.
			now := e.now()
			t.bucket.SetLimitAt(now, perSecond)
			t.bucket.SetBurstAt(now, burst)
		}
		t.limit = ep.RateLimit
	}
	return !known
}

// pauseForRetryAfter holds back every attempt to the endpoint for as long as the receiver asked with
// Retry-After, at most ep.MaxPause: a receiver that throttles one request throttles the endpoint.
func (e *Engine) pauseForRetryAfter(ep Endpoint, res delivery.Result) {
	if res.RetryAfter <= 0 {
		return
	}
	wait := res.RetryAfter
	if ep.MaxPause > 0 {
		wait = min(wait, ep.MaxPause)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.throttles[ep.UID]
	if !ok {
		return // the endpoint went since the attempt started
	}
	if until := e.now().Add(wait); until.After(t.pausedUntil) {
		t.pausedUntil = until
		// The pause is part of the summary: written to the status at once, so that a restart or the
		// next leader honours it.
		if h := e.healthLocked(ep); h != nil {
			h.version++
			e.EndpointWakes.add(ep.Key)
		}
	}
}

// stopWake cancels the pending dispatch, when the throttle is released or the engine stops.
func (t *throttle) stopWake() {
	if t.wake != nil {
		t.wake.Stop()
		t.wake = nil
	}
}
