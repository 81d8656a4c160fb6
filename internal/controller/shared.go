package controller

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"

	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/internal/metrics"
)

// Defaults of the engine settings that the manager exposes as flags.
const (
	// DefaultStatusFlushInterval bounds how often one WebhookEndpoint's delivery summary is written.
	DefaultStatusFlushInterval = time.Second
	// DefaultMaxInFlight is the global bound on attempts in flight, across all endpoints.
	DefaultMaxInFlight = 512
)

// Options configure the delivery engine shared by both controllers.
type Options struct {
	// Sender makes the HTTP attempts.
	Sender Sender
	// MaxInFlight bounds the attempts in flight across all endpoints.
	MaxInFlight int
	// StatusFlushInterval bounds how often one endpoint's delivery summary is written.
	StatusFlushInterval time.Duration
	// Clock is the time source; the real clock when nil.
	Clock clock.PassiveClock
	// RequireHTTPS refuses http endpoint URLs (Ready=False, reason InsecureURL).
	RequireHTTPS bool
	// Egress is the policy the Sender enforces at dial time; the controllers also use it to report a
	// URL whose IP literal is blocked before any attempt. Nil allows every address.
	Egress *delivery.EgressPolicy
}

// Shared is the state both controllers use: the Secret resolver, endpoint health and the dispatcher.
type Shared struct {
	clock      clock.PassiveClock
	resolver   *endpointResolver
	health     *endpointHealth
	dispatcher *dispatcher
	tests      *testRuns
	// events reads DocumentEvents from the manager cache for the backlog metrics.
	events client.Reader
}

// NewShared builds the shared state and adds the dispatcher to the manager. Secret metadata is read
// from the manager cache and Secret values straight from the API server (the manager's API reader),
// so Secret values are never cached cluster-wide.
func NewShared(mgr ctrl.Manager, opts Options) (*Shared, error) {
	clk := opts.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.StatusFlushInterval <= 0 {
		opts.StatusFlushInterval = DefaultStatusFlushInterval
	}
	health := newEndpointHealth(opts.StatusFlushInterval)
	s := &Shared{
		clock: clk,
		resolver: &endpointResolver{
			metadata:     mgr.GetClient(),
			live:         mgr.GetAPIReader(),
			requireHTTPS: opts.RequireHTTPS,
			egress:       opts.Egress,
			secrets:      map[types.NamespacedName]cachedSecret{},
		},
		health:     health,
		dispatcher: newDispatcher(opts.Sender, health, opts.MaxInFlight, clk.Now),
		tests:      newTestRuns(),
		events:     mgr.GetClient(),
	}
	if err := metrics.RegisterBacklog(s); err != nil {
		return nil, fmt.Errorf("register backlog metrics: %w", err)
	}
	return s, mgr.Add(s.dispatcher)
}

// Backlog implements metrics.Backlog from the cache, at scrape time. An unfinished event that has no
// recorded delivery yet (no endpoint matches, or its first attempts are in flight) counts as one.
func (s *Shared) Backlog() (pending int, oldestAgeSeconds float64) {
	list := &webhooksv1alpha1.DocumentEventList{}
	// Read-only scan: no need to copy every cached object.
	if err := s.events.List(context.Background(), list, client.UnsafeDisableDeepCopy); err != nil {
		return 0, 0
	}
	now := s.clock.Now()
	for i := range list.Items {
		ev := &list.Items[i]
		if isFinished(ev) {
			continue
		}
		open := 0
		for _, d := range ev.Status.Deliveries {
			if !d.Phase.IsFinal() {
				open++
			}
		}
		if len(ev.Status.Deliveries) == 0 {
			open = 1
		}
		if open == 0 {
			continue
		}
		pending += open
		oldestAgeSeconds = max(oldestAgeSeconds, now.Sub(ev.CreationTimestamp.Time).Seconds())
	}
	return pending, oldestAgeSeconds
}

// OpenCircuits implements metrics.Backlog.
func (s *Shared) OpenCircuits() int { return s.health.openCircuits() }
