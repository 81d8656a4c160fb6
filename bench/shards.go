package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// The shards scenario: two managers split one API server with complementary label selectors
// (--watch-label-selector), each with its own leader election id. One namespace holds an endpoint and
// half of the events for each shard. Every event must be delivered exactly once, by its own shard's
// manager to its own shard's endpoint, and each manager's cache must hold only its own objects.
//
// The cache is read from the managers' webhook_operator_cached_objects while nothing can finish: the
// events exist before the managers start and the receivers answer no webhook until both caches were
// read. What the caches hold then is what their initial lists put there, and it stays put.

const (
	shardLabel      = "webhooks.1flow.io/shard"
	shardsNamespace = "bench-shards"
	// heldTimeout is the endpoints' attempt timeout: longer than the receivers hold the first requests,
	// so that none is sent twice.
	heldTimeout = 60 * time.Second
)

// shard is one manager, its endpoint and receiver, and what its cache held.
type shard struct {
	value    string // of shardLabel on its events and endpoint
	selector string // its --watch-label-selector
	recv     *receiver
	m        *manager
	cache    shardCache
}

// shardCache compares a manager's cache with the objects its selector matches in the API server.
type shardCache struct {
	Selector string             `json:"selector"`
	Cached   map[string]float64 `json:"cached_objects"`
	Own      map[string]int     `json:"own_objects_in_api_server"`
	Foreign  int                `json:"foreign_objects_cached"`
	Missing  int                `json:"own_objects_not_cached"`
}

// shardDelivery is what one shard's receiver got.
type shardDelivery struct {
	Expected  int   `json:"expected_documents"`
	Requests  int64 `json:"receiver_requests"`
	Distinct  int   `json:"distinct_documents"`
	FromOther int   `json:"documents_of_the_other_shard"`
}

func shardEvent(i int) *webhooksv1alpha1.DocumentEvent {
	value := shardValue(i)
	ev := typicalEvent(shardsNamespace, value, i)
	ev.Labels = map[string]string{shardLabel: value}
	return ev
}

// shardValue spreads the events evenly over the two shards.
func shardValue(i int) string { return []string{"a", "b"}[i%2] }

func (h *harness) shards(ctx context.Context) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, h.sizes.scenarioTimeout)
	defer cancel()
	n := h.sizes.shardEvents
	shards := []*shard{{value: "a", selector: shardLabel + "=a"}, {value: "b", selector: shardLabel + "!=a"}}
	step("shards: two managers (--watch-label-selector %s and %s), %d events, half in each shard", shards[0].selector, shards[1].selector, n)
	if err := h.setupNamespace(ctx, shardsNamespace); err != nil {
		return result{}, err
	}
	gate := make(chan struct{})
	gateOpen := false
	defer func() {
		if !gateOpen {
			close(gate)
		}
		for _, s := range shards {
			if s.recv != nil {
				s.recv.close()
			}
			if s.m != nil {
				h.killManager(s.m)
			}
		}
	}()
	for _, s := range shards {
		var err error
		if s.recv, err = newGatedReceiver(gate); err != nil {
			return result{}, err
		}
		ep := signedEndpoint(shardsNamespace, "shard-"+s.value, s.recv.URL, heldTimeout)
		ep.Labels = map[string]string{shardLabel: s.value}
		if err := h.createEndpoint(ctx, ep); err != nil {
			return result{}, err
		}
	}
	if err := h.createEvents(ctx, n, h.sizes.creators, shardEvent, nil); err != nil {
		return result{}, fmt.Errorf("create events: %w", err)
	}
	w, err := h.watch(ctx, shardsNamespace)
	if err != nil {
		return result{}, err
	}
	defer w.stop()

	t0 := time.Now()
	for _, s := range shards {
		if s.m, err = h.startManager(ctx, "bench-shard-"+s.value, "--watch-label-selector="+s.selector,
			"--leader-election-id=webhook-operator-shard-"+s.value+".webhooks.1flow.io"); err != nil {
			return result{}, err
		}
	}
	// Each endpoint is made Ready by its own shard's manager only.
	if _, err := h.waitEndpointsReady(ctx, shardsNamespace, len(shards)); err != nil {
		return result{}, withLog(err, shards[0].m.logPath+" and "+shards[1].m.logPath)
	}
	foreign, missing := 0, 0
	for _, s := range shards {
		if s.cache, err = h.readShardCache(ctx, s); err != nil {
			return result{}, err
		}
		foreign += s.cache.Foreign
		missing += s.cache.Missing
		info("shard %s (%s): cache %v, own objects in the API server %v", s.value, s.selector, s.cache.Cached, s.cache.Own)
	}

	close(gate)
	gateOpen = true
	done, err := w.waitDelivered(ctx, n)
	if err != nil {
		return result{}, withLog(err, shards[0].m.logPath+" and "+shards[1].m.logPath)
	}
	time.Sleep(settle)
	deliveries := map[string]shardDelivery{}
	exactlyOnce := true
	for i, s := range shards {
		d := shardDelivery{Expected: (n + 1 - i) / 2, Requests: s.recv.requests.Load(), Distinct: s.recv.distinct()}
		for _, id := range s.recv.documentIDs() {
			if !strings.HasPrefix(id, shardsNamespace+"-"+s.value+"-") {
				d.FromOther++
			}
		}
		exactlyOnce = exactlyOnce && d.Requests == int64(d.Expected) && d.Distinct == d.Expected && d.FromOther == 0
		deliveries[s.value] = d
	}
	w.mu.Lock()
	recordedDeliveries := w.deliveries
	w.mu.Unlock()
	exactlyOnce = exactlyOnce && recordedDeliveries == n
	info("%d events Delivered %.2fs after the first manager started; %d deliveries recorded; receivers %v",
		n, since(t0, done), recordedDeliveries, deliveries)

	caches := map[string]shardCache{}
	for _, s := range shards {
		caches[s.value] = s.cache
		h.stopManager(s.m)
	}
	cleanup, cancelCleanup := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancelCleanup()
	if err := h.deleteEvents(cleanup, shardsNamespace); err != nil {
		return result{}, err
	}
	return result{
		Scenario: scShards, Value: float64(foreign), Unit: "foreign objects cached", Target: targets[scShards],
		Met: foreign == 0 && missing == 0 && exactlyOnce,
		Details: map[string]any{
			keyEvents:                    n,
			"caches_while_held":          caches,
			"own_objects_not_cached":     missing,
			"receivers":                  deliveries,
			"deliveries_recorded":        recordedDeliveries,
			"delivered_exactly_once":     exactlyOnce,
			"start_to_delivered_seconds": round(since(t0, done), 3),
			keyMeasured: "cache: webhook_operator_cached_objects of each manager, compared with the objects its selector " +
				"matches in the API server (DocumentEvents that still need work, WebhookEndpoints), while the receivers hold " +
				"every webhook; exactly once: each receiver got each of its shard's documents in one request and none of the " +
				"other shard's, and each event has one delivery recorded",
		},
	}, nil
}

// readShardCache waits (bounded) until the manager's cache holds as many objects of each kind as its
// selector matches in the API server, gives a foreign object that arrives later a moment to show, and
// compares the two. Nothing finishes meanwhile: the receivers hold every webhook.
func (h *harness) readShardCache(ctx context.Context, s *shard) (shardCache, error) {
	selector, err := labels.Parse(s.selector)
	if err != nil {
		return shardCache{}, err
	}
	own, err := h.ownObjects(ctx, selector)
	if err != nil {
		return shardCache{}, err
	}
	var cached map[string]float64
	caught := func(ctx context.Context) (bool, error) {
		metrics, err := s.m.scrape(ctx)
		if err != nil {
			return false, err
		}
		if len(metrics.cachedObjects) == 0 {
			return false, fmt.Errorf("manager %s has no %s metric", s.m.name, cachedObjectsMetric)
		}
		cached = metrics.cachedObjects
		for kind, n := range own {
			if cached[kind] < float64(n) {
				return false, nil
			}
		}
		return true, nil
	}
	// Running out of time is a finding (own objects not cached), not a failure.
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, caught); err != nil && !wait.Interrupted(err) {
		return shardCache{}, err
	}
	time.Sleep(time.Second)
	if _, err := caught(ctx); err != nil {
		return shardCache{}, err
	}
	c := shardCache{Selector: s.selector, Cached: cached, Own: own}
	for kind, n := range own {
		c.Foreign += max(0, int(cached[kind])-n)
		c.Missing += max(0, n-int(cached[kind]))
	}
	return c, nil
}

// ownObjects counts, in the whole API server, the objects a manager with this selector serves: its
// DocumentEvents that still need work and its WebhookEndpoints.
func (h *harness) ownObjects(ctx context.Context, selector labels.Selector) (map[string]int, error) {
	events := &webhooksv1alpha1.DocumentEventList{}
	if err := h.c.List(ctx, events, client.MatchingLabelsSelector{Selector: selector}); err != nil {
		return nil, fmt.Errorf("list DocumentEvents: %w", err)
	}
	unfinished := 0
	for i := range events.Items {
		switch events.Items[i].Status.Phase {
		case webhooksv1alpha1.DocumentEventDelivered, webhooksv1alpha1.DocumentEventFailed:
		default:
			unfinished++
		}
	}
	endpoints := &webhooksv1alpha1.WebhookEndpointList{}
	if err := h.c.List(ctx, endpoints, client.MatchingLabelsSelector{Selector: selector}); err != nil {
		return nil, fmt.Errorf("list WebhookEndpoints: %w", err)
	}
	return map[string]int{"DocumentEvent": unfinished, "WebhookEndpoint": len(endpoints.Items)}, nil
}
