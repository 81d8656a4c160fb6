package main

import (
	"context"
	"fmt"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// The tenants scenario: one manager serves many namespaces, each with its own signing Secret, endpoints
// and receivers (one per endpoint, each on its own port, as endpoints of different teams are different
// hosts), and one event per namespace that goes to every endpoint of its namespace.

// scenarioLabel marks the events of a scenario that watches every namespace, so that its watch sees
// only them.
const scenarioLabel = "bench.webhooks.1flow.io/scenario"

// setupWorkers create the namespaces and endpoints concurrently; creation, not the manager, is what
// they wait for.
const setupWorkers = 8

func tenantNamespace(i int) string { return fmt.Sprintf("bench-tenant-%03d", i) }

func (h *harness) tenants(ctx context.Context) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, h.sizes.scenarioTimeout)
	defer cancel()
	namespaces, perNamespace := h.sizes.tenantNamespaces, h.sizes.tenantEndpoints
	endpoints := namespaces * perNamespace
	step("tenants: one manager, %d namespaces with %d endpoints each (%d endpoints and receivers), one event per namespace",
		namespaces, perNamespace, endpoints)

	tenants := make([]*tenant, namespaces)
	defer func() {
		for _, t := range tenants {
			h.abandon(t)
		}
	}()
	begin := time.Now()
	err := forEach(ctx, namespaces, setupWorkers, func(ctx context.Context, i int) (err error) {
		tenants[i], err = h.prepareTenant(ctx, tenantNamespace(i), perNamespace, 0, 0)
		return err
	})
	if err != nil {
		return result{}, err
	}
	setupSeconds := time.Since(begin).Seconds()
	var receivers []*receiver
	for _, t := range tenants {
		receivers = append(receivers, t.healthy...)
	}

	t0 := time.Now()
	m, err := h.startManager(ctx, "bench-tenants")
	if err != nil {
		return result{}, err
	}
	defer h.killManager(m)
	for _, t := range tenants {
		if _, err := h.waitEndpointsReady(ctx, t.ns, perNamespace); err != nil {
			return result{}, withLog(err, m.logPath)
		}
	}
	readySeconds := time.Since(t0).Seconds()
	ready, err := m.memoryPoint(ctx, 0, t0)
	if err != nil {
		return result{}, err
	}
	info("%d endpoints Ready %.1fs after the start: RSS %.1f MiB, peak %.1f MiB", endpoints, readySeconds, ready.RSSMiB, ready.PeakMiB)

	w, err := h.startWatch(ctx, &watcher{labels: client.MatchingLabels{scenarioLabel: scTenants}})
	if err != nil {
		return result{}, err
	}
	defer w.stop()
	meter := h.meterCPU(m)
	t1 := time.Now()
	err = h.createEvents(ctx, namespaces, h.sizes.creators, func(i int) *webhooksv1alpha1.DocumentEvent {
		ev := typicalEvent(tenantNamespace(i), "ev", 0)
		ev.Labels = map[string]string{scenarioLabel: scTenants}
		return ev
	}, nil)
	if err != nil {
		return result{}, fmt.Errorf("create events: %w", err)
	}
	received, err := waitReceipts(ctx, receivers, 1)
	if err != nil {
		return result{}, withLog(err, m.logPath)
	}
	recorded, err := w.waitDelivered(ctx, namespaces)
	if err != nil {
		return result{}, withLog(err, m.logPath)
	}
	cpu := meter.read()
	time.Sleep(settle)
	delivered, err := m.memoryPoint(ctx, namespaces, t0)
	if err != nil {
		return result{}, err
	}
	var requests int64
	for _, r := range receivers {
		requests += r.requests.Load()
	}
	info("%d deliveries received %.2fs after the first create, recorded %.2fs; peak RSS %.1f MiB", endpoints,
		since(t1, received), since(t1, recorded), delivered.PeakMiB)

	h.stopManager(m)
	cleanup, cancelCleanup := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancelCleanup()
	err = forEach(cleanup, namespaces, setupWorkers, func(ctx context.Context, i int) error {
		if err := h.deleteEvents(ctx, tenantNamespace(i)); err != nil {
			return err
		}
		return h.deleteEndpoints(ctx, tenantNamespace(i))
	})
	if err != nil {
		return result{}, err
	}

	peak := delivered.PeakMiB
	return result{
		Scenario: scTenants, Value: peak, Unit: "MiB (peak RSS)", Target: targets[scTenants],
		Met: peak <= tenantsTargetMiB,
		Details: map[string]any{
			"namespaces":                  namespaces,
			"endpoints_per_namespace":     perNamespace,
			keyEndpoints:                  endpoints,
			keyEvents:                     namespaces,
			"deliveries":                  endpoints,
			"all_delivered":               true,
			keyReceiverRequests:           requests,
			"receivers":                   "one per endpoint, each on its own loopback port",
			"setup_seconds":               round(setupSeconds, 1),
			"start_to_all_ready_seconds":  round(readySeconds, 2),
			"received_seconds":            round(since(t1, received), 3),
			"recorded_seconds":            round(since(t1, recorded), 3),
			"after_ready":                 ready,
			"after_delivery":              delivered,
			"cpu_seconds_during_delivery": cpu,
			keyMeasured: "VmHWM of the manager process (/proc/<pid>/status) once every event is recorded Delivered; " +
				"received and recorded run from the first create until every receiver had its event and every event was Delivered",
		},
	}, nil
}
