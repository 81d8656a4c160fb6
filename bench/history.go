package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// The history and restart scenarios: teams keep finished events as their delivery history (no TTL), so
// a manager starts with a cluster full of them. One run measures both: a fresh manager process starts
// with historySmall and then with historyLarge finished events in the cluster, and each time an event
// is waiting for it. history is the ratio of the two peak RSS, restart the time from the larger start
// to the waiting event's delivery.

const historyNamespace = "bench-history"

// startReading is what one manager start with a retained history measured.
type startReading struct {
	RetainedEvents int `json:"retained_finished_events"`
	// FirstDeliverySeconds runs from just before the process was started to the receiver reading the
	// waiting event's webhook.
	FirstDeliverySeconds float64 `json:"start_to_first_delivery_seconds"`
	// ProbesSeconds is when the process answered its readiness probe.
	ProbesSeconds float64 `json:"start_to_probes_seconds"`
	// QuietSeconds is when its CPU use fell below quietCPU after the delivery; memory is read then.
	QuietSeconds float64     `json:"start_to_quiet_seconds"`
	Memory       memoryPoint `json:"memory"`
	CPUSeconds   float64     `json:"manager_cpu_seconds"`
	Writes       float64     `json:"api_writes"`
	// RequestsForRetained counts webhooks sent for the finished events, which must be none.
	RequestsForRetained int64 `json:"requests_for_retained_events"`
}

func (h *harness) historyResults(ctx context.Context) ([]result, error) {
	ctx, cancel := context.WithTimeout(ctx, h.sizes.historyTimeout)
	defer cancel()
	sizes := []int{h.sizes.historySmall, h.sizes.historyLarge}
	step("history: a fresh manager starts with %d, then with %d finished events in the cluster, an event waiting each time", sizes[0], sizes[1])
	t, err := h.newTenant(ctx, historyNamespace, 1, 0, 0)
	if err != nil {
		return nil, err
	}
	defer h.abandon(t)

	var (
		starts        []startReading
		createSeconds float64
		created       int
	)
	for _, size := range sizes {
		// No manager runs while the history is written: it would deliver each event before its status
		// says Delivered.
		h.stopManager(t.m)
		begin := time.Now()
		if err := h.createFinished(ctx, created, size-created); err != nil {
			return nil, err
		}
		createSeconds += time.Since(begin).Seconds()
		created = size
		reading, err := h.measureStart(ctx, t, size, len(starts))
		if err != nil {
			return nil, err
		}
		starts = append(starts, reading)
		info("%d finished events: first delivery %.2fs after the start, peak RSS %.1f MiB, RSS %.1f MiB, cache %v",
			size, reading.FirstDeliverySeconds, reading.Memory.PeakMiB, reading.Memory.RSSMiB, reading.Memory.CachedObjects)
	}
	objectBytes, managedFieldsBytes, err := h.objectSize(ctx, historyNamespace, finishedEvent(0).Name)
	if err != nil {
		return nil, err
	}
	if err := h.finish(ctx, t); err != nil {
		return nil, err
	}

	small, large := starts[0], starts[1]
	ratio := large.Memory.PeakMiB / small.Memory.PeakMiB
	shared := func() map[string]any {
		return map[string]any{
			"retained_finished_events":   sizes,
			"starts":                     starts,
			"object_json_bytes":          objectBytes,
			"managed_fields_json_bytes":  managedFieldsBytes,
			"history_created_per_second": round(float64(created)/createSeconds, 1),
		}
	}
	history := result{
		Scenario: scHistory, Value: round3(ratio), Unit: fmt.Sprintf("peak RSS with %d / with %d finished events", sizes[1], sizes[0]),
		Target: targets[scHistory], Met: ratio <= historyRatioTarget, Details: shared(),
	}
	history.Details[keyMeasured] = "VmHWM of a fresh manager process (same flags) that starts with the finished events in the " +
		"cluster and delivers one waiting event, read once its CPU use has fallen below 5% of a CPU for a second"
	restart := result{
		Scenario: scRestart, Value: round(large.FirstDeliverySeconds, 2), Unit: fmt.Sprintf("s (start to first delivery, %d finished events)", sizes[1]),
		Target: targets[scRestart], Met: large.FirstDeliverySeconds <= restartTargetSeconds, Details: shared(),
	}
	restart.Details["measured_together"] = scHistory
	restart.Details[keyMeasured] = "from just before the manager process is started to the receiver reading the webhook of an " +
		"event created just before; the other events in the cluster are all finished"
	return []result{history, restart}, nil
}

// finishedEvent is the i-th event of the retained history.
func finishedEvent(i int) *webhooksv1alpha1.DocumentEvent {
	return typicalEvent(historyNamespace, "old", i)
}

// createFinished adds n events to the retained history, numbered from from: each is created and then
// marked Delivered with the status write the operator makes, as if delivered long ago.
func (h *harness) createFinished(ctx context.Context, from, n int) error {
	var done atomic.Int64
	begin := time.Now()
	return h.createEvents(ctx, n, h.sizes.historyCreators, func(i int) *webhooksv1alpha1.DocumentEvent { return finishedEvent(from + i) },
		func(ctx context.Context, _ int, ev *webhooksv1alpha1.DocumentEvent) error {
			if err := h.markDelivered(ctx, ev, "fast-00"); err != nil {
				return err
			}
			// Minutes at full size: say how far it got.
			if d := done.Add(1); d%10000 == 0 {
				info("%d of %d finished events stored (%.0f/s)", d, n, float64(d)/time.Since(begin).Seconds())
			}
			return nil
		})
}

// measureStart creates an event, starts a fresh manager for the tenant (the tenant's previous one is
// stopped) and measures the start. seq numbers the starts, and so the waiting events.
func (h *harness) measureStart(ctx context.Context, t *tenant, retained, seq int) (startReading, error) {
	r := t.healthy[0]
	if err := h.c.Create(ctx, typicalEvent(t.ns, "new", seq)); err != nil {
		return startReading{}, fmt.Errorf("create the waiting event: %w", err)
	}
	t0 := time.Now()
	m, err := h.startManager(ctx, fmt.Sprintf("%s-%d", t.ns, retained))
	if err != nil {
		return startReading{}, err
	}
	t.m = m
	probes := time.Since(t0)
	delivered, err := waitReceipts(ctx, t.healthy, seq+1)
	if err != nil {
		return startReading{}, withLog(err, m.logPath)
	}
	if _, err := m.waitQuiet(ctx, time.Minute); err != nil {
		return startReading{}, err
	}
	quiet := time.Since(t0)
	// The cluster holds the retained events and the waiting ones of this and earlier starts.
	point, err := m.memoryPoint(ctx, retained+seq+1, t0)
	if err != nil {
		return startReading{}, err
	}
	cpu, err := m.cpuSeconds()
	if err != nil {
		return startReading{}, err
	}
	// The process's counters start at zero: every write counted is one of this start.
	requests, err := m.writeCounts(ctx)
	if err != nil {
		return startReading{}, err
	}
	writes, _ := writeDelta(nil, requests)
	return startReading{
		RetainedEvents:       retained,
		FirstDeliverySeconds: round(since(t0, delivered), 3),
		ProbesSeconds:        round(probes.Seconds(), 3),
		QuietSeconds:         round(quiet.Seconds(), 1),
		Memory:               point,
		CPUSeconds:           round(cpu, 2),
		Writes:               writes,
		RequestsForRetained:  r.requests.Load() - int64(seq+1),
	}, nil
}
