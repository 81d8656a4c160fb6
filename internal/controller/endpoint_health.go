package controller

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// circuitState is the circuit breaker state of one endpoint.
type circuitState int

const (
	circuitClosed circuitState = iota
	// circuitOpen pauses attempts until openedAt + cooldown.
	circuitOpen
	// circuitProbing lets exactly one attempt through; its result closes or reopens the circuit.
	circuitProbing
)

// endpointHealth keeps, per endpoint, the consecutive failure count, the circuit breaker and the
// latest delivery outcome. It is in memory; the WebhookEndpoint status is its durable copy, written at
// most once per flushInterval per endpoint instead of once per delivery, and read back (seed) after a
// restart.
type endpointHealth struct {
	flushInterval time.Duration
	// notify wakes the WebhookEndpoint controller when there is something to write.
	notify chan event.TypedGenericEvent[*webhooksv1alpha1.WebhookEndpoint]

	mu      sync.Mutex
	entries map[types.NamespacedName]*healthEntry
}

type healthEntry struct {
	last      *webhooksv1alpha1.LastDelivery
	failures  int32
	circuit   circuitState
	openedAt  time.Time
	dirty     bool
	lastFlush time.Time
	// blockedGeneration is the endpoint generation whose URL the egress policy refused (0: none). Only a
	// spec change, which bumps the generation, lifts the block.
	blockedGeneration int64
	blockedMessage    string
}

func newEndpointHealth(flushInterval time.Duration) *endpointHealth {
	return &endpointHealth{
		flushInterval: flushInterval,
		notify:        make(chan event.TypedGenericEvent[*webhooksv1alpha1.WebhookEndpoint], 1024),
		entries:       map[types.NamespacedName]*healthEntry{},
	}
}

// entry returns the endpoint's entry, creating it from the endpoint's status so that the failure count
// and an open circuit survive a restart. Callers hold h.mu.
func (h *endpointHealth) entry(ep *webhooksv1alpha1.WebhookEndpoint) *healthEntry {
	key := types.NamespacedName{Namespace: ep.Namespace, Name: ep.Name}
	e, ok := h.entries[key]
	if !ok {
		e = &healthEntry{failures: ep.Status.ConsecutiveFailures}
		if e.failures >= ep.GetFailureThreshold() {
			// Open since an unknown time: the first attempt after a restart is the probe.
			e.circuit = circuitOpen
		}
		h.entries[key] = e
	}
	return e
}

// admit decides whether an attempt to the endpoint may start now. When it may not, it returns how long
// until the circuit lets a probe through.
func (h *endpointHealth) admit(ep *webhooksv1alpha1.WebhookEndpoint, now time.Time) (bool, time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.entry(ep)
	switch e.circuit {
	case circuitOpen:
		if wait := e.openedAt.Add(ep.GetCooldown()).Sub(now); wait > 0 {
			return false, wait
		}
		e.circuit = circuitProbing
		return true, 0
	case circuitProbing:
		// The probe's result wakes the waiting events; the cooldown is only a safety net.
		return false, ep.GetCooldown()
	}
	return true, 0
}

// circuitChange reports what an attempt result did to the circuit.
type circuitChange int

const (
	circuitUnchanged circuitChange = iota
	circuitOpened
	circuitClosedAgain
)

// record notes the outcome of one attempt and returns the circuit transition it caused.
func (h *endpointHealth) record(ep *webhooksv1alpha1.WebhookEndpoint, last webhooksv1alpha1.LastDelivery, now time.Time) circuitChange {
	h.mu.Lock()
	e := h.entry(ep)
	if e.last == nil || !last.Time.Before(&e.last.Time) {
		e.last = &last
	}
	change := circuitUnchanged
	if last.Success {
		e.failures = 0
		if e.circuit != circuitClosed {
			change = circuitClosedAgain
		}
		e.circuit = circuitClosed
	} else {
		e.failures++
		switch {
		case e.circuit == circuitProbing:
			e.circuit, e.openedAt = circuitOpen, now
		case e.circuit == circuitClosed && e.failures >= ep.GetFailureThreshold():
			e.circuit, e.openedAt = circuitOpen, now
			change = circuitOpened
		}
	}
	wake := !e.dirty || change != circuitUnchanged
	e.dirty = true
	h.mu.Unlock()

	if wake {
		h.wake(ep)
	}
	return change
}

// block notes that the egress policy refused the endpoint's destination.
func (h *endpointHealth) block(ep *webhooksv1alpha1.WebhookEndpoint, message string) {
	h.mu.Lock()
	e := h.entry(ep)
	wake := e.blockedGeneration != ep.Generation
	e.blockedGeneration, e.blockedMessage = ep.Generation, message
	h.mu.Unlock()
	if wake {
		h.wake(ep)
	}
}

// blockedReadiness returns DestinationBlocked readiness while the current generation is blocked.
func (h *endpointHealth) blockedReadiness(ep *webhooksv1alpha1.WebhookEndpoint) (readiness, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.entry(ep)
	if e.blockedGeneration == 0 || e.blockedGeneration != ep.Generation {
		return readiness{}, false
	}
	return notReady(webhooksv1alpha1.DestinationBlockedReason, "%s; deliveries wait until spec.url changes", e.blockedMessage), true
}

func (h *endpointHealth) wake(ep *webhooksv1alpha1.WebhookEndpoint) {
	obj := &webhooksv1alpha1.WebhookEndpoint{}
	obj.Namespace, obj.Name = ep.Namespace, ep.Name
	h.notify <- event.TypedGenericEvent[*webhooksv1alpha1.WebhookEndpoint]{Object: obj}
}

// circuitReadiness returns CircuitOpen readiness while the circuit is open or probing.
func (h *endpointHealth) circuitReadiness(ep *webhooksv1alpha1.WebhookEndpoint) (readiness, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.entry(ep)
	if e.circuit == circuitClosed {
		return readiness{}, false
	}
	return notReady(webhooksv1alpha1.CircuitOpenReason,
		"%d consecutive failed attempts; attempts pause and a probe is sent every %s until one succeeds",
		e.failures, ep.GetCooldown()), true
}

// flushInto copies the pending outcome into the status. It returns how long to wait before the next
// flush is allowed when one is pending but the last flush was too recent (0 otherwise).
func (h *endpointHealth) flushInto(ep *webhooksv1alpha1.WebhookEndpoint, now time.Time) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.entry(ep)
	if !e.dirty {
		return 0
	}
	if wait := e.lastFlush.Add(h.flushInterval).Sub(now); wait > 0 {
		return wait
	}
	if e.last != nil {
		ep.Status.LastDelivery = e.last.DeepCopy()
	}
	ep.Status.ConsecutiveFailures = e.failures
	e.dirty = false
	e.lastFlush = now
	return 0
}

// openCircuits counts endpoints whose circuit is open or probing.
func (h *endpointHealth) openCircuits() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, e := range h.entries {
		if e.circuit != circuitClosed {
			n++
		}
	}
	return n
}

// forget drops the entry of a deleted endpoint.
func (h *endpointHealth) forget(endpoint types.NamespacedName) {
	h.mu.Lock()
	delete(h.entries, endpoint)
	h.mu.Unlock()
}
