package main

import (
	"context"
	"fmt"
	"os"

	"github.com/1flow/webhook-operator/internal/localcluster"
)

// tracingCost runs the operator part of the throughput run twice, back to back with the same sizes: with
// tracing off (no OTEL_* variables, as every other scenario runs) and with spans exported over OTLP/HTTP
// to a collector in this process. Its value is the manager CPU per delivered event that tracing adds.
// The run is valid only if the collector received the spans: one attempt and one delivery span per event.
func (h *harness) tracingCost(ctx context.Context) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, h.sizes.scenarioTimeout)
	defer cancel()
	off := &throughputResult{events: h.sizes.throughputEvents, creators: h.sizes.creators}
	step("tracing: %d events to 1 fast endpoint, tracing off", off.events)
	if err := h.throughputOperator(ctx, off, "bench-tracing-off"); err != nil {
		return result{}, err
	}

	collector := localcluster.StartOTLPCollector()
	defer collector.Close()
	on := &throughputResult{events: h.sizes.throughputEvents, creators: h.sizes.creators}
	step("tracing: %d events to 1 fast endpoint, spans exported to %s", on.events, collector.URL)
	// The manager is a child process: it reads the variables at start.
	for name, value := range map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
	} {
		if err := os.Setenv(name, value); err != nil {
			return result{}, err
		}
		defer func() { _ = os.Unsetenv(name) }()
	}
	if err := h.throughputOperator(ctx, on, "bench-tracing-on"); err != nil {
		return result{}, err
	}
	spans := len(collector.Spans())
	added := on.managerMsPerEvent() - off.managerMsPerEvent()
	info("tracing: manager %.3f ms/event off, %.3f ms/event on; %d spans collected", off.managerMsPerEvent(),
		on.managerMsPerEvent(), spans)
	return result{
		Scenario: scTracing,
		Value:    round(added, 3),
		Unit:     "manager CPU ms/delivered event added by tracing",
		Target:   targets[scTracing],
		Met:      spans >= 2*on.events,
		Details: map[string]any{
			keyEvents:                  on.events,
			"manager_ms_per_event_off": round(off.managerMsPerEvent(), 3),
			"manager_ms_per_event_on":  round(on.managerMsPerEvent(), 3),
			"delivered_per_second_off": round(off.deliveredPerSec, 1),
			"delivered_per_second_on":  round(on.deliveredPerSec, 1),
			"spans_collected":          spans,
			"valid_when":               fmt.Sprintf("at least %d spans (an attempt and a delivery span per event) reached the collector", 2*on.events),
			"writes_per_event_off":     round(off.writes/float64(off.events), 3),
			"writes_per_event_on":      round(on.writes/float64(on.events), 3),
		},
	}, nil
}
