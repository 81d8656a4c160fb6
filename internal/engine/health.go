package engine

import (
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
)

type circuitState int

const (
	circuitClosed circuitState = iota
	// circuitOpen pauses attempts until openedAt + cooldown.
	circuitOpen
	// circuitProbing has let exactly one attempt through; its result closes or reopens the circuit.
	circuitProbing
)

// CircuitChange reports what an attempt did to its endpoint's circuit.
type CircuitChange int

const (
	CircuitUnchanged CircuitChange = iota
	CircuitOpened
	CircuitClosed
)

// health is one endpoint's failure count, circuit and latest outcome. The WebhookEndpoint status is its
// durable copy, written by the endpoint reconciler from Summary.
type health struct {
	failures      int32
	circuit       circuitState
	openedAt      time.Time
	probeDeadline time.Time
	last          *webhooksv1alpha1.LastDelivery
	// version counts changes of the summary; flushed is the version last written to the status.
	version, flushed uint64
	lastFlush        time.Time
	// flushedPause is the Retry-After pause last written to the status.
	flushedPause time.Time
	// blockedGeneration is the endpoint generation whose destination the egress policy refused at dial
	// time (0: none), under blockedAllowPrivate, its namespace's private egress then. A spec change,
	// which bumps the generation, or a change of the namespace's private egress lifts it.
	blockedGeneration   int64
	blockedAllowPrivate bool
	blockedMessage      string
}

// healthLocked returns the endpoint's entry, seeded from its status the first time. It returns nil when
// the endpoint is no longer the one of its name (deleted, or recreated under it) since the lookup that
// ep comes from: an attempt that started before reports back, and its result must neither touch the
// new endpoint's state nor bring back the old one's.
func (e *Engine) healthLocked(ep Endpoint) *health {
	if e.uidOf[ep.Key] != ep.UID {
		return nil
	}
	h, ok := e.health[ep.UID]
	if !ok {
		h = &health{failures: ep.ConsecutiveFailures}
		if ep.DestinationBlocked != "" {
			h.blockedGeneration, h.blockedMessage = ep.Generation, strings.TrimSuffix(ep.DestinationBlocked, blockedHint)
			h.blockedAllowPrivate = ep.AllowPrivate
		}
		if ep.FailureThreshold > 0 && h.failures >= ep.FailureThreshold {
			// Open since an unknown time: the first attempt after a restart is the probe.
			h.circuit = circuitOpen
		}
		e.health[ep.UID] = h
	}
	return h
}

// admit decides whether a delivery attempt may start now, and lets the one probe through an open
// circuit whose cool-down has passed. When it may not start, it returns how long until it may. probe
// tells that the attempt is the probe: only its result closes or reopens the circuit, since attempts
// that started before the circuit opened may still report. current is false when the endpoint was
// deleted or recreated since its lookup.
func (e *Engine) admit(ep Endpoint) (ok bool, wait time.Duration, probe, current bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	h := e.healthLocked(ep)
	if h == nil {
		return false, 0, false, false
	}
	if h.circuit == circuitClosed {
		return true, 0, false, true
	}
	now := e.now()
	if wait := circuitWait(h, ep, now); wait > 0 {
		return false, wait, false, true
	}
	h.circuit = circuitProbing
	h.probeDeadline = now.Add(2*ep.Request.Timeout + time.Second)
	return true, 0, true, true
}

// circuitWait is how long until an open or probing circuit admits its next probe (0: now). A probe in
// flight holds the next one back until its deadline, looking again at least every cool-down.
func circuitWait(h *health, ep Endpoint, now time.Time) time.Duration {
	switch h.circuit {
	case circuitOpen:
		return max(h.openedAt.Add(ep.Cooldown).Sub(now), 0)
	case circuitProbing:
		return max(min(h.probeDeadline.Sub(now), ep.Cooldown), 0)
	}
	return 0
}

// record applies the result of an admitted attempt to the endpoint's health.
func (e *Engine) record(ep Endpoint, event string, res delivery.Result, probe bool) CircuitChange {
	e.mu.Lock()
	h := e.healthLocked(ep)
	if h == nil {
		e.mu.Unlock()
		return CircuitUnchanged
	}
	if res.Blocked {
		// Our own policy refused the dial: the receiver did not fail, so the failure count stays. A probe
		// goes back to waiting; the block holds deliveries until the URL changes.
		if probe && h.circuit == circuitProbing {
			h.circuit = circuitOpen
		}
		wake := h.blockedGeneration != ep.Generation || h.blockedAllowPrivate != ep.AllowPrivate
		h.blockedGeneration, h.blockedAllowPrivate, h.blockedMessage = ep.Generation, ep.AllowPrivate, res.Error
		e.mu.Unlock()
		if wake {
			e.EndpointWakes.add(ep.Key)
		}
		return CircuitUnchanged
	}
	last := webhooksv1alpha1.LastDelivery{
		Event:      event,
		Time:       metav1.NewTime(res.Start),
		StatusCode: int32(res.StatusCode),
		Duration:   webhooksv1alpha1.AttemptDuration(res.Duration),
		Success:    res.Success,
	}
	if h.last == nil || !last.Time.Before(&h.last.Time) {
		h.last = &last
	}
	change := CircuitUnchanged
	if res.Success {
		h.failures = 0
		if h.circuit != circuitClosed {
			change = CircuitClosed
		}
		h.circuit = circuitClosed
	} else {
		h.failures++
		switch {
		case probe && h.circuit == circuitProbing:
			h.circuit, h.openedAt = circuitOpen, e.now()
		case h.circuit == circuitClosed && ep.FailureThreshold > 0 && h.failures >= ep.FailureThreshold:
			h.circuit, h.openedAt = circuitOpen, e.now()
			change = CircuitOpened
		}
	}
	wake := h.version == h.flushed || change != CircuitUnchanged
	h.version++
	e.mu.Unlock()
	if wake {
		e.EndpointWakes.add(ep.Key)
	}
	return change
}

const blockedHint = "; deliveries wait until spec.url or the egress policy changes"

// blockedReadiness returns DestinationBlocked while the endpoint's current generation is blocked.
func (e *Engine) blockedReadiness(ep Endpoint) Readiness {
	e.mu.Lock()
	defer e.mu.Unlock()
	generation, allowPrivate, message := int64(0), ep.AllowPrivate, ""
	if h, ok := e.health[ep.UID]; ok {
		generation, allowPrivate, message = h.blockedGeneration, h.blockedAllowPrivate, h.blockedMessage
	} else if ep.DestinationBlocked != "" {
		// Not seen yet by this process: what the status says. The entry itself is only created from
		// a fresh lookup, when an attempt starts.
		generation, message = ep.Generation, strings.TrimSuffix(ep.DestinationBlocked, blockedHint)
	}
	if generation == 0 || generation != ep.Generation || allowPrivate != ep.AllowPrivate {
		return ep.Readiness
	}
	return Readiness{Reason: webhooksv1alpha1.DestinationBlockedReason, Message: message + blockedHint}
}

// circuitReadiness describes an open circuit.
func (e *Engine) circuitReadiness(ep Endpoint) Readiness {
	e.mu.Lock()
	defer e.mu.Unlock()
	failures := int32(0)
	if h, ok := e.health[ep.UID]; ok {
		failures = h.failures
	}
	return Readiness{Reason: webhooksv1alpha1.CircuitOpenReason, Message: fmt.Sprintf(
		"%s; attempts pause and a probe is sent every %s until one succeeds",
		delivery.Count(failures, "consecutive failed attempt"), ep.Cooldown)}
}

// Readiness is the engine's verdict on an endpoint on top of ep.Readiness: a destination refused at
// dial time, then the circuit. wait is how long until an open circuit admits its probe. It changes
// nothing: the probe itself is admitted only when an attempt starts.
func (e *Engine) Readiness(ep Endpoint) (rd Readiness, wait time.Duration) {
	if !ep.Readiness.Ready {
		return ep.Readiness, 0
	}
	if rd := e.blockedReadiness(ep); !rd.Ready {
		return rd, 0
	}
	e.mu.Lock()
	h, ok := e.health[ep.UID]
	if !ok && ep.FailureThreshold > 0 && ep.ConsecutiveFailures >= ep.FailureThreshold {
		// Not seen since a restart with the circuit open: the first attempt is the probe.
		e.mu.Unlock()
		return e.circuitReadiness(ep), 0
	}
	if !ok || h.circuit == circuitClosed {
		e.mu.Unlock()
		return ep.Readiness, 0
	}
	wait = circuitWait(h, ep, e.now())
	e.mu.Unlock()
	return e.circuitReadiness(ep), wait
}

// CircuitOpen reports whether the endpoint's circuit is open or probing.
func (e *Engine) CircuitOpen(uid types.UID) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	h, ok := e.health[uid]
	return ok && h.circuit != circuitClosed
}

// OpenCircuits counts endpoints whose circuit is open or probing.
func (e *Engine) OpenCircuits() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, h := range e.health {
		if h.circuit != circuitClosed {
			n++
		}
	}
	return n
}

// Summary is an endpoint's delivery summary to write to its status.
type Summary struct {
	Last     *webhooksv1alpha1.LastDelivery
	Failures int32
	// RetryAfterUntil is the end of the receiver's Retry-After pause (zero: never paused).
	RetryAfterUntil time.Time
	version         uint64
}

// SummaryDue returns the summary when it changed since the last write and interval has passed since
// that write, or at once when a new Retry-After pause began: a pause that is not durable yet would be
// lost by a restart. Otherwise wait is how long until it may be written (0: nothing to write). The
// summary counts as written only once Flushed confirms it, so a failed status patch loses nothing.
func (e *Engine) SummaryDue(uid types.UID, interval time.Duration) (s Summary, due bool, wait time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	h, ok := e.health[uid]
	if !ok || h.version == h.flushed {
		return Summary{}, false, 0
	}
	var pausedUntil time.Time
	if t, ok := e.throttles[uid]; ok {
		pausedUntil = t.pausedUntil
	}
	if wait := h.lastFlush.Add(interval).Sub(e.now()); wait > 0 && pausedUntil.Equal(h.flushedPause) {
		return Summary{}, false, wait
	}
	s = Summary{Failures: h.failures, RetryAfterUntil: pausedUntil, version: h.version}
	if h.last != nil {
		s.Last = h.last.DeepCopy()
	}
	return s, true, 0
}

// SummaryWritten reports the endpoint's failure count and whether the engine holds it as written to the
// status (nothing pending). ok is false when the engine holds nothing for the endpoint.
func (e *Engine) SummaryWritten(uid types.UID) (failures int32, written, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	h, ok := e.health[uid]
	if !ok {
		return 0, false, false
	}
	return h.failures, h.version == h.flushed, true
}

// UnwrittenSummaries returns the endpoints whose summary changed since it was last written, sorted: at
// shutdown, a Retry-After pause learnt from an attempt that finished while the controllers were stopping
// is written by the manager that learnt it, or lost.
func (e *Engine) UnwrittenSummaries() []types.NamespacedName {
	e.mu.Lock()
	defer e.mu.Unlock()
	var keys []types.NamespacedName
	for key, uid := range e.uidOf {
		if h, ok := e.health[uid]; ok && h.version != h.flushed {
			keys = append(keys, key)
		}
	}
	slices.SortFunc(keys, compareKeys)
	return keys
}

// Flushed confirms that the summary was written to the status.
func (e *Engine) Flushed(uid types.UID, s Summary) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if h, ok := e.health[uid]; ok && s.version > h.flushed {
		h.flushed = s.version
		h.lastFlush = e.now()
		h.flushedPause = s.RetryAfterUntil
	}
}
