package controller

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// endpointStats collects delivery outcomes per endpoint in memory, so that the WebhookEndpoint status
// (lastDelivery, consecutiveFailures) is written at most once per flushInterval per endpoint instead of
// once per delivery. The DocumentEvent status stays the record of each delivery; this is a summary.
type endpointStats struct {
	flushInterval time.Duration
	// notify wakes the WebhookEndpoint controller; it is sent once per clean-to-dirty change.
	notify chan event.TypedGenericEvent[*webhooksv1alpha1.WebhookEndpoint]

	mu      sync.Mutex
	entries map[types.NamespacedName]*statsEntry
}

type statsEntry struct {
	last *webhooksv1alpha1.LastDelivery
	// failures counts failed attempts since the last success; when absolute is false it is a delta on top
	// of the count already in status (the operator restarted, or nothing was flushed yet).
	failures  int32
	absolute  bool
	dirty     bool
	lastFlush time.Time
}

func newEndpointStats(flushInterval time.Duration) *endpointStats {
	return &endpointStats{
		flushInterval: flushInterval,
		notify:        make(chan event.TypedGenericEvent[*webhooksv1alpha1.WebhookEndpoint], 1024),
		entries:       map[types.NamespacedName]*statsEntry{},
	}
}

// record notes one attempt to the endpoint.
func (s *endpointStats) record(endpoint types.NamespacedName, last webhooksv1alpha1.LastDelivery) {
	s.mu.Lock()
	e, ok := s.entries[endpoint]
	if !ok {
		e = &statsEntry{}
		s.entries[endpoint] = e
	}
	if e.last == nil || !last.Time.Before(&e.last.Time) {
		e.last = &last
	}
	if last.Success {
		e.failures, e.absolute = 0, true
	} else {
		e.failures++
	}
	wake := !e.dirty
	e.dirty = true
	s.mu.Unlock()

	if wake {
		obj := &webhooksv1alpha1.WebhookEndpoint{}
		obj.Namespace, obj.Name = endpoint.Namespace, endpoint.Name
		s.notify <- event.TypedGenericEvent[*webhooksv1alpha1.WebhookEndpoint]{Object: obj}
	}
}

// flushInto copies pending outcomes into the status. It returns how long to wait before the next flush
// is allowed when outcomes are pending but the last flush was too recent (0 otherwise).
func (s *endpointStats) flushInto(endpoint types.NamespacedName, status *webhooksv1alpha1.WebhookEndpointStatus, now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[endpoint]
	if !ok || !e.dirty {
		return 0
	}
	if wait := e.lastFlush.Add(s.flushInterval).Sub(now); wait > 0 {
		return wait
	}
	if e.last != nil {
		status.LastDelivery = e.last.DeepCopy()
	}
	if e.absolute {
		status.ConsecutiveFailures = e.failures
	} else {
		status.ConsecutiveFailures += e.failures
	}
	e.failures, e.absolute = status.ConsecutiveFailures, true
	e.dirty = false
	e.lastFlush = now
	return 0
}

// forget drops the entry of a deleted endpoint.
func (s *endpointStats) forget(endpoint types.NamespacedName) {
	s.mu.Lock()
	delete(s.entries, endpoint)
	s.mu.Unlock()
}
