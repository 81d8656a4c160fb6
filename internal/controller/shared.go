package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/internal/engine"
	"github.com/1flow/webhook-operator/internal/metrics"
	"github.com/1flow/webhook-operator/internal/tracing"
)

// Defaults of the engine settings that the manager exposes as flags.
const (
	// DefaultStatusFlushInterval bounds how often one WebhookEndpoint's delivery summary is written.
	DefaultStatusFlushInterval = time.Second
	// DefaultMaxInFlight is the global bound on attempts in flight, across all endpoints.
	DefaultMaxInFlight = 512
	// DefaultNamespaceShareDivisor sets the default per-namespace bound to a quarter of MaxInFlight: a few
	// tenants whose receivers hang cannot take the whole global bound from the others.
	DefaultNamespaceShareDivisor = 4
)

// Options configure the delivery engine shared by both controllers.
type Options struct {
	// Sender makes the HTTP attempts.
	Sender engine.Sender
	// MaxInFlight bounds the attempts in flight across all endpoints.
	MaxInFlight int
	// MaxInFlightPerNamespace bounds one namespace's attempts in flight; 0 means MaxInFlight divided by
	// DefaultNamespaceShareDivisor (at least 1).
	MaxInFlightPerNamespace int
	// StatusFlushInterval bounds how often one endpoint's delivery summary is written.
	StatusFlushInterval time.Duration
	// Clock is the time source; the real clock when nil.
	Clock clock.PassiveClock
	// RequireHTTPS refuses http endpoint URLs (Ready=False, reason InsecureURL).
	RequireHTTPS bool
	// Egress is the policy the Sender enforces at dial time; the controllers also use it to report a
	// URL whose IP literal is blocked before any attempt. Nil allows every address.
	Egress *delivery.EgressPolicy
	// Scope is what this manager serves; its cache must be built with Scope.CacheOptions.
	Scope WatchScope
	// Traces records delivery and attempt spans; nil records none.
	Traces *tracing.Recorder
}

// Shared is what both reconcilers use: the engine, the endpoint resolver and the clock.
type Shared struct {
	clock               clock.PassiveClock
	statusFlushInterval time.Duration
	resolver            *endpointResolver
	engine              *engine.Engine
	// cached reads the manager cache for the backlog and cache metrics.
	cached client.Reader
	// recordOnShutdown records the outcomes that finished while the manager was stopping, and
	// recordSummariesOnShutdown the endpoint summaries (Retry-After pauses, failure counts) they changed.
	recordOnShutdown          func(ctx context.Context, events []types.NamespacedName)
	recordSummariesOnShutdown func(ctx context.Context, endpoints []types.NamespacedName)
	deliveryLog               *deliveryLog
	scope                     WatchScope
	traces                    *tracing.Recorder
	// leader is when this process became leader (or, without leader election, started delivering).
	leader     sync.Once
	leaderTime time.Time
}

// leaderSince returns when this process became leader: the first time either the engine's lifecycle
// started or a reconcile asked, since both start when the lease is won.
func (s *Shared) leaderSince() time.Time {
	s.leader.Do(func() { s.leaderTime = s.clock.Now() })
	return s.leaderTime
}

// NewShared builds the engine and adds its lifecycle to the manager. Endpoints and Secret metadata are
// read from the manager cache and Secret values straight from the API server (the manager's API
// reader), so Secret values are never cached cluster-wide.
func NewShared(mgr ctrl.Manager, opts Options) (*Shared, error) {
	s := newShared(mgr.GetClient(), mgr.GetAPIReader(), opts)
	if err := metrics.RegisterBacklog(s); err != nil {
		return nil, fmt.Errorf("register backlog metrics: %w", err)
	}
	return s, mgr.Add(s)
}

func newShared(cached, live client.Reader, opts Options) *Shared {
	clk := opts.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.MaxInFlightPerNamespace <= 0 {
		opts.MaxInFlightPerNamespace = max(opts.MaxInFlight/DefaultNamespaceShareDivisor, 1)
	}
	if opts.StatusFlushInterval <= 0 {
		opts.StatusFlushInterval = DefaultStatusFlushInterval
	}
	resolver := &endpointResolver{
		cached:       cached,
		live:         live,
		requireHTTPS: opts.RequireHTTPS,
		egress:       opts.Egress,
		secrets:      map[types.NamespacedName]cachedSecret{},
	}
	return &Shared{
		clock:               clk,
		statusFlushInterval: opts.StatusFlushInterval,
		resolver:            resolver,
		deliveryLog:         newDeliveryLog(deliveryLogInterval),
		scope:               opts.Scope,
		traces:              opts.Traces,
		engine: engine.New(engine.Config{
			Sender:                  opts.Sender,
			Endpoints:               resolver,
			Now:                     clk.Now,
			MaxInFlight:             opts.MaxInFlight,
			MaxInFlightPerNamespace: opts.MaxInFlightPerNamespace,
		}),
		cached: cached,
	}
}

// shutdownRecordTimeout bounds the status writes of the outcomes that finished during shutdown.
const shutdownRecordTimeout = 15 * time.Second

// Start implements manager.Runnable: when the manager stops, the engine starts nothing new, lets the
// attempts in flight finish and their outcomes are recorded before the process exits.
func (s *Shared) Start(ctx context.Context) error {
	s.leaderSince()
	<-ctx.Done()
	events := s.engine.Stop()
	recordCtx, cancel := context.WithTimeout(context.Background(), shutdownRecordTimeout)
	defer cancel()
	if len(events) > 0 && s.recordOnShutdown != nil {
		s.recordOnShutdown(recordCtx, events)
	}
	if endpoints := s.engine.UnwrittenSummaries(); len(endpoints) > 0 && s.recordSummariesOnShutdown != nil {
		s.recordSummariesOnShutdown(recordCtx, endpoints)
	}
	return nil
}

// NeedLeaderElection makes only the leader deliver.
func (s *Shared) NeedLeaderElection() bool { return true }

// wakeSource feeds the keys the engine puts in wakes to a controller's queue.
func wakeSource(wakes *engine.Wakes) source.Source {
	return source.Func(func(ctx context.Context, queue workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-wakes.Signal():
					for _, key := range wakes.Take() {
						queue.Add(reconcile.Request{NamespacedName: key})
					}
				}
			}
		}()
		return nil
	})
}

// Backlog implements metrics.Backlog from the cache, at scrape time. An unfinished event that has no
// recorded delivery yet (no endpoint matches, or its first attempts are in flight) counts as one.
func (s *Shared) Backlog() (pending int, oldestAgeSeconds float64) {
	list := &webhooksv1alpha1.DocumentEventList{}
	// Read-only scan: no need to copy every cached object.
	if err := s.cached.List(context.Background(), list, client.UnsafeDisableDeepCopy); err != nil {
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

// CachedObjects implements metrics.Backlog: what the manager's cache holds, which is what its memory
// follows.
func (s *Shared) CachedObjects() map[string]int {
	counts := map[string]int{}
	events := &webhooksv1alpha1.DocumentEventList{}
	if err := s.cached.List(context.Background(), events, client.UnsafeDisableDeepCopy); err == nil {
		counts["DocumentEvent"] = len(events.Items)
	}
	endpoints := &webhooksv1alpha1.WebhookEndpointList{}
	if err := s.cached.List(context.Background(), endpoints, client.UnsafeDisableDeepCopy); err == nil {
		counts["WebhookEndpoint"] = len(endpoints.Items)
	}
	return counts
}

// OpenCircuits implements metrics.Backlog.
func (s *Shared) OpenCircuits() int { return s.engine.OpenCircuits() }
