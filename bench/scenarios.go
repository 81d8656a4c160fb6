package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// settle is how long a scenario waits after the last delivery before it reads the write counters, so
// that the endpoint delivery summary (written at most once per --endpoint-status-interval, 1s) is counted.
const settle = 1500 * time.Millisecond

// ---------------------------------------------------------------------------------------------------
// throughput and writes

type throughputResult struct {
	events            int
	creators          int
	ceilingSeconds    float64
	ceilingRuns       []float64
	ceilingPerSecond  float64
	createSeconds     float64
	deliveredSeconds  float64
	deliveredPerSec   float64
	connections       int64
	maxInFlight       int32
	requests          int64
	distinct          int
	writes            float64
	writesByMethod    map[string]float64
	writeWindowSecond float64
	operatorCPU       map[string]any
	cpu               map[string]any
}

// throughputResults runs the throughput measurement, which also yields the writes and cpu scenarios.
func (h *harness) throughputResults(ctx context.Context) ([]result, error) {
	thr, err := h.throughput(ctx)
	if err != nil {
		return nil, err
	}
	return []result{thr.result(), thr.writesResult(), thr.cpuResult()}, nil
}

// throughput measures the ceiling (no manager running: the clients create each event and other clients
// patch its status once, as the operator would) right before and right after the operator run, in which the
// same client creates the same number of events while a fresh manager delivers them to one fast
// endpoint. The ceiling is the mean of the two, which evens out drift of the API server over the run.
func (h *harness) throughput(ctx context.Context) (*throughputResult, error) {
	ctx, cancel := context.WithTimeout(ctx, h.sizes.scenarioTimeout)
	defer cancel()
	n, creators := h.sizes.throughputEvents, h.sizes.creators
	res := &throughputResult{events: n, creators: creators}

	step("throughput: ceiling before, %d events, %d clients creating and %d marking them Delivered, no operator",
		n, creators, ceilingPatchers)
	before, err := h.ceiling(ctx, "bench-ceiling-before")
	if err != nil {
		return nil, fmt.Errorf("ceiling before: %w", err)
	}

	step("throughput: operator, %d events from %d clients to 1 fast endpoint", n, creators)
	if err := h.throughputOperator(ctx, res, "bench-throughput"); err != nil {
		return nil, err
	}

	step("throughput: ceiling after")
	after, err := h.ceiling(ctx, "bench-ceiling-after")
	if err != nil {
		return nil, fmt.Errorf("ceiling after: %w", err)
	}
	res.ceilingRuns = []float64{round(float64(n)/before.seconds, 1), round(float64(n)/after.seconds, 1)}
	res.ceilingSeconds = (before.seconds + after.seconds) / 2
	res.cpu = map[string]any{"ceiling_before": before.cpu, "operator": res.operatorCPU, "ceiling_after": after.cpu}
	res.ceilingPerSecond = float64(n) / res.ceilingSeconds
	info("ceiling %.0f/s (before %.0f/s, after %.0f/s); operator %.0f/s; ratio %.3f", res.ceilingPerSecond,
		res.ceilingRuns[0], res.ceilingRuns[1], res.deliveredPerSec, res.deliveredPerSec/res.ceilingPerSecond)
	return res, nil
}

// ceiling creates and marks Delivered the scenario's events with no manager running, and returns how
// long that took.
func (h *harness) ceiling(ctx context.Context, ns string) (ceilingRun, error) {
	n, creators := h.sizes.throughputEvents, h.sizes.creators
	if err := h.setupNamespace(ctx, ns); err != nil {
		return ceilingRun{}, err
	}
	// A watch runs here too, as in the operator run.
	w, err := h.watch(ctx, ns)
	if err != nil {
		return ceilingRun{}, err
	}
	meter := h.meterCPU(nil)
	t0 := time.Now()
	err = h.createAndMarkDelivered(ctx, n, creators, func(i int) *webhooksv1alpha1.DocumentEvent { return typicalEvent(ns, "ev", i) })
	seconds := time.Since(t0).Seconds()
	cpu := meter.read()
	if err == nil {
		_, err = w.waitDelivered(ctx, n)
	}
	w.stop()
	if err != nil {
		return ceilingRun{}, err
	}
	info("%s: %d objects in %.2fs = %.0f/s; CPU seconds %v", ns, n, seconds, float64(n)/seconds, cpu)
	return ceilingRun{seconds: seconds, cpu: cpu}, h.deleteEvents(ctx, ns)
}

// ceilingPatchers is how many clients write the ceiling's statuses: as many as the manager's reconcilers
// (--max-concurrent-reconciles, 16 by default), which write the statuses in the operator run.
const ceilingPatchers = 16

// createAndMarkDelivered loads the API server as the operator run does: creators clients create the
// events while ceilingPatchers other clients each mark Delivered an event that exists, so that the status
// patches run beside the creates rather than after them in the same client.
func (h *harness) createAndMarkDelivered(ctx context.Context, n, creators int, mk func(i int) *webhooksv1alpha1.DocumentEvent) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	created := make(chan *webhooksv1alpha1.DocumentEvent, n)
	var patchers sync.WaitGroup
	for range ceilingPatchers {
		patchers.Go(func() {
			for ev := range created {
				if ctx.Err() != nil {
					continue
				}
				if err := h.markDelivered(ctx, ev, "fast-00"); err != nil {
					cancel(fmt.Errorf("mark %s Delivered: %w", ev.Name, err))
				}
			}
		})
	}
	err := h.createEvents(ctx, n, creators, mk, func(_ context.Context, _ int, ev *webhooksv1alpha1.DocumentEvent) error {
		created <- ev
		return nil
	})
	close(created)
	patchers.Wait()
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	return err
}

type ceilingRun struct {
	seconds float64
	cpu     map[string]any
}

func (h *harness) throughputOperator(ctx context.Context, res *throughputResult, ns string) error {
	n, creators := res.events, res.creators
	t, err := h.newTenant(ctx, ns, 1, 0, 0)
	if err != nil {
		return err
	}
	defer h.abandon(t)
	res.maxInFlight = t.maxInFlight
	w, err := h.watch(ctx, t.ns)
	if err != nil {
		return err
	}
	defer w.stop()
	before, err := t.m.writeCounts(ctx)
	if err != nil {
		return err
	}
	meter := h.meterCPU(t.m)
	t0 := time.Now()
	created := make(chan error, 1)
	go func() {
		err := h.createEvents(ctx, n, creators, func(i int) *webhooksv1alpha1.DocumentEvent { return typicalEvent(t.ns, "ev", i) }, nil)
		res.createSeconds = time.Since(t0).Seconds()
		created <- err
	}()
	done, err := w.waitDelivered(ctx, n)
	if createErr := <-created; createErr != nil {
		return fmt.Errorf("create events: %w", createErr)
	}
	if err != nil {
		return withLog(err, t.m.logPath)
	}
	res.deliveredSeconds = since(t0, done)
	res.deliveredPerSec = float64(n) / res.deliveredSeconds
	res.operatorCPU = meter.read()
	if _, ok := res.operatorCPU["manager"].(float64); !ok {
		return fmt.Errorf("no CPU time of the manager process %d in /proc", t.m.PID())
	}
	time.Sleep(settle)
	after, err := t.m.writeCounts(ctx)
	if err != nil {
		return err
	}
	res.writeWindowSecond = time.Since(t0).Seconds()
	res.writes, res.writesByMethod = writeDelta(before, after)
	r := t.healthy[0]
	res.connections, res.requests, res.distinct = r.connections.Load(), r.requests.Load(), r.distinct()
	info("operator: %d events Delivered in %.2fs = %.0f/s (creates took %.2fs); %d connections, %.3f writes/event",
		n, res.deliveredSeconds, res.deliveredPerSec, res.createSeconds, res.connections, res.writes/float64(n))
	return h.finish(ctx, t)
}

func (r *throughputResult) result() result {
	ratio := r.deliveredPerSec / r.ceilingPerSecond
	bound := maxInFlightOrDefault(r.maxInFlight)
	ratioMet, connMet := ratio >= throughputRatioTarget, r.connections <= bound
	return result{
		Scenario: scThroughput,
		Value:    round(ratio, 3),
		Unit:     "delivered/ceiling",
		Target:   targets[scThroughput],
		Met:      ratioMet && connMet,
		Details: map[string]any{
			keyEvents:                      r.events,
			"concurrent_clients":           r.creators,
			"ceiling_status_patch_clients": ceilingPatchers,
			"delivered_events_per_second":  round(r.deliveredPerSec, 1),
			"delivered_seconds":            round(r.deliveredSeconds, 3),
			"create_seconds":               round(r.createSeconds, 3),
			"ceiling_events_per_second":    round(r.ceilingPerSecond, 1),
			"ceiling_seconds":              round(r.ceilingSeconds, 3),
			"ceiling_before_and_after":     r.ceilingRuns,
			"ratio":                        round(ratio, 3),
			"ratio_met":                    ratioMet,
			"receiver_connections":         r.connections,
			"endpoint_max_in_flight":       bound,
			"connections_met":              connMet,
			keyReceiverRequests:            r.requests,
			"receiver_distinct_documents":  r.distinct,
			"cpu_seconds":                  r.cpu,
		},
	}
}

func (r *throughputResult) writesResult() result {
	perEvent := r.writes / float64(r.events)
	byMethod := map[string]any{}
	for method, v := range r.writesByMethod {
		byMethod[method] = v
	}
	var invalid error
	if r.writes < float64(r.events) {
		// Every event the watch saw Delivered took one status write of the manager at least.
		invalid = fmt.Errorf("the manager's metrics count %.0f API writes for %d events it marked Delivered, which need one "+
			"each: the scrape missed writes (%v)", r.writes, r.events, r.writesByMethod)
	}
	return result{
		Scenario: scWrites,
		Value:    round(perEvent, 3),
		Unit:     "API writes/event",
		Target:   targets[scWrites],
		Met:      perEvent <= writesTarget,
		invalid:  invalid,
		Details: map[string]any{
			"source":            "manager metric rest_client_requests_total (POST+PUT+PATCH+DELETE), delta over the throughput run",
			keyEvents:           r.events,
			keyEndpoints:        1,
			"writes":            r.writes,
			"writes_by_method":  byMethod,
			"window_seconds":    round(r.writeWindowSecond, 2),
			"measured_together": scThroughput,
		},
	}
}

// cpuResult divides the manager's CPU time in the operator run by the events it delivered.
// managerMsPerEvent is the manager's CPU milliseconds per delivered event of the operator run.
func (r *throughputResult) managerMsPerEvent() float64 {
	return r.operatorCPU["manager"].(float64) * 1000 / float64(r.events)
}

func (r *throughputResult) cpuResult() result {
	managerSeconds := r.operatorCPU["manager"].(float64)
	perEvent := r.managerMsPerEvent()
	return result{
		Scenario: scCPU,
		Value:    round(perEvent, 3),
		Unit:     "manager CPU ms/delivered event",
		Target:   targets[scCPU],
		Met:      perEvent <= cpuTargetMs,
		Details: map[string]any{
			"source": "user + system CPU time of the manager process (/proc/<pid>/stat, 10 ms ticks) over the throughput " +
				"run's operator part: from the first create until the watch saw the last event Delivered",
			keyEvents:                     r.events,
			keyEndpoints:                  1,
			"manager_cpu_seconds":         managerSeconds,
			"window_seconds":              round(r.deliveredSeconds, 3),
			"cpu_seconds_in_window":       r.operatorCPU,
			"delivered_events_per_second": round(r.deliveredPerSec, 1),
			"measured_together":           scThroughput,
		},
	}
}

// ---------------------------------------------------------------------------------------------------
// latency

func (h *harness) latency(ctx context.Context) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, h.sizes.scenarioTimeout)
	defer cancel()
	rate, duration := h.sizes.latencyRate, h.sizes.latencyDuration
	count := int(float64(rate) * duration.Seconds())
	step("latency: %d events/s for %s (%d events) after %d warm-up events", rate, duration, count, h.sizes.latencyWarmup)
	t, err := h.newTenant(ctx, "bench-latency", 1, 0, 0)
	if err != nil {
		return result{}, err
	}
	defer h.abandon(t)
	r := t.healthy[0]

	interval := time.Second / time.Duration(rate)
	for i := range h.sizes.latencyWarmup {
		if err := h.c.Create(ctx, typicalEvent(t.ns, "warm", i)); err != nil {
			return result{}, fmt.Errorf("create warm-up event: %w", err)
		}
		time.Sleep(interval)
	}
	if _, err := waitReceipts(ctx, t.healthy, h.sizes.latencyWarmup); err != nil {
		return result{}, fmt.Errorf("warm-up: %w", withLog(err, t.m.logPath))
	}

	// Open loop: event i is due at first + i*interval whatever happened to the earlier ones, and its sample
	// starts then. A sender that fell behind (a slow Create, the scheduler) would otherwise start the late
	// samples' clocks late and hide the delay it caused (coordinated omission).
	due := make([]time.Time, count)
	called := make([]time.Time, count)
	returned := make([]time.Time, count)
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	meter := h.meterCPU(t.m)
	first := time.Now()
	for i := range count {
		due[i] = first.Add(time.Duration(i) * interval)
		select {
		case <-time.After(time.Until(due[i])):
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		ev := typicalEvent(t.ns, "lat", i)
		wg.Go(func() {
			called[i] = time.Now()
			err := h.c.Create(ctx, ev)
			returned[i] = time.Now()
			if err != nil {
				errMu.Lock()
				firstErr = errors.Join(firstErr, err)
				errMu.Unlock()
			}
		})
	}
	sendSeconds := time.Since(first).Seconds()
	wg.Wait()
	cpu := meter.read()
	if firstErr != nil {
		return result{}, fmt.Errorf("create events: %w", firstErr)
	}
	if _, err := waitReceipts(ctx, t.healthy, h.sizes.latencyWarmup+count); err != nil {
		return result{}, withLog(err, t.m.logPath)
	}

	endToEnd := make([]float64, count)
	sendLag := make([]float64, count)
	createCall := make([]float64, count)
	afterCreate := make([]float64, count)
	for i := range count {
		got, ok := r.receivedAt(typicalEvent(t.ns, "lat", i).Spec.DocumentID)
		if !ok {
			return result{}, fmt.Errorf("event lat-%05d never reached the receiver", i)
		}
		endToEnd[i] = ms(got.Sub(due[i]))
		sendLag[i] = ms(called[i].Sub(due[i]))
		createCall[i] = ms(returned[i].Sub(called[i]))
		afterCreate[i] = ms(got.Sub(returned[i]))
	}
	p99 := percentile(endToEnd, 0.99)
	details := map[string]any{
		keyEvents:             count,
		"rate_per_second":     rate,
		"achieved_rate":       round(float64(count)/sendSeconds, 1),
		"duration_seconds":    duration.Seconds(),
		"warmup_events":       h.sizes.latencyWarmup,
		"p50_ms":              round(percentile(endToEnd, 0.50), 2),
		"p90_ms":              round(percentile(endToEnd, 0.90), 2),
		"p99_ms":              round(p99, 2),
		"max_ms":              round(percentile(endToEnd, 1), 2),
		"send_lag_p99_ms":     round(percentile(sendLag, 0.99), 2),
		"send_lag_max_ms":     round(percentile(sendLag, 1), 2),
		"create_call_p50_ms":  round(percentile(createCall, 0.50), 2),
		"create_call_p99_ms":  round(percentile(createCall, 0.99), 2),
		"after_create_p50_ms": round(percentile(afterCreate, 0.50), 2),
		"after_create_p99_ms": round(percentile(afterCreate, 0.99), 2),
		keyMeasured: "from the time the schedule (one event every 1/rate s from the first) says the event is due to the " +
			"receiver reading the request; send_lag is from due to the Create call",
		"receiver_connections":   r.connections.Load(),
		keyReceiverRequests:      r.requests.Load(),
		"receiver_distinct_docs": r.distinct(),
		"cpu_seconds":            cpu,
	}
	info("p50 %.2f ms, p99 %.2f ms (create call p99 %.2f ms)", details["p50_ms"], p99, details["create_call_p99_ms"])
	if err := h.finish(ctx, t); err != nil {
		return result{}, err
	}
	return result{
		Scenario: scLatency, Value: round(p99, 2), Unit: "ms (p99)", Target: targets[scLatency],
		Met: p99 <= latencyP99TargetMs, Details: details,
	}, nil
}

// ---------------------------------------------------------------------------------------------------
// isolation

type isolationRun struct {
	seconds, perSecond             float64
	statusSeconds, statusPerSecond float64
	// hangingHeld counts the requests the hanging endpoints held; each had to hold hangingHeldRequired.
	hangingHeld, hangingHeldRequired int64
	usage                            usage
	createSeconds                    float64
}

// measuredRun is a tenant whose n typical events were created while a watch and the manager's usage
// accounting were running.
type measuredRun struct {
	tenant        *tenant
	watcher       *watcher
	used          func() (usage, error)
	start         time.Time
	createSeconds float64
}

// startMeasuredRun sets up the tenant, starts the watch and the usage accounting, and creates the events
// from the configured number of clients. close releases the tenant and the watch.
func (h *harness) startMeasuredRun(
	ctx context.Context, ns string, healthy, hanging int, hangTimeout time.Duration, n int,
) (_ *measuredRun, err error) {
	m := &measuredRun{}
	if m.tenant, err = h.newTenant(ctx, ns, healthy, hanging, hangTimeout); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			m.close(h)
		}
	}()
	if m.watcher, err = h.watch(ctx, ns); err != nil {
		return nil, err
	}
	if m.used, err = m.tenant.m.usageSince(ctx); err != nil {
		return nil, err
	}
	m.start = time.Now()
	if err := h.createEvents(ctx, n, h.sizes.creators, func(i int) *webhooksv1alpha1.DocumentEvent { return typicalEvent(ns, "ev", i) }, nil); err != nil {
		return nil, fmt.Errorf("create events: %w", err)
	}
	m.createSeconds = time.Since(m.start).Seconds()
	return m, nil
}

func (m *measuredRun) close(h *harness) {
	if m.watcher != nil {
		m.watcher.stop()
	}
	h.abandon(m.tenant)
}

func (h *harness) isolationRun(ctx context.Context, ns string, hanging int) (*isolationRun, error) {
	n, healthy := h.sizes.isolationEvents, h.sizes.isolationHealthy
	m, err := h.startMeasuredRun(ctx, ns, healthy, hanging, h.sizes.hangingTimeout, n)
	if err != nil {
		return nil, err
	}
	defer m.close(h)
	t, w, used, t0, createSeconds := m.tenant, m.watcher, m.used, m.start, m.createSeconds
	received, err := waitReceipts(ctx, t.healthy, n)
	if err != nil {
		return nil, withLog(err, t.m.logPath)
	}
	recorded, err := w.waitDeliveries(ctx, n*healthy)
	if err != nil {
		return nil, withLog(err, t.m.logPath)
	}
	run := &isolationRun{seconds: since(t0, received), statusSeconds: since(t0, recorded), createSeconds: createSeconds}
	// Until every healthy delivery is recorded: the hanging attempts are still in flight then.
	if run.usage, err = used(); err != nil {
		return nil, err
	}
	run.perSecond = float64(n*healthy) / run.seconds
	run.statusPerSecond = float64(n*healthy) / run.statusSeconds
	run.hangingHeldRequired = heldPerHangingEndpoint(t, n)
	if run.hangingHeld, err = waitHeld(ctx, t.hanging, run.hangingHeldRequired, h.sizes.hangingTimeout); err != nil {
		return nil, err
	}
	info("%s: %d healthy deliveries received in %.2fs = %.0f/s (creates took %.2fs, recorded in status after %.2fs); "+
		"%d requests held by hanging endpoints; manager: %.2f writes/event, %.2f CPU seconds",
		ns, n*healthy, run.seconds, run.perSecond, run.createSeconds, run.statusSeconds, run.hangingHeld,
		run.usage.writes/float64(n), run.usage.cpuSeconds)
	if err := h.finish(ctx, t); err != nil {
		return nil, err
	}
	return run, nil
}

// heldPerHangingEndpoint is how many requests each hanging endpoint of a run must hold for the run to
// measure isolation: all it may have in flight. A run whose hanging endpoints answered, or were never
// called, compares healthy endpoints with healthy endpoints and scores about 1 whatever the operator does.
func heldPerHangingEndpoint(t *tenant, events int) int64 {
	return min(maxInFlightOrDefault(t.maxInFlight), int64(events))
}

// waitHeld waits, up to limit, until every receiver held at least need requests, and returns how many
// they held in all; a receiver that did not is an error: the run is invalid.
func waitHeld(ctx context.Context, recvs []*receiver, need int64, limit time.Duration) (int64, error) {
	total := func() (held int64, short []string) {
		for i, r := range recvs {
			n := r.held.Load()
			held += n
			if n < need {
				short = append(short, fmt.Sprintf("hang-%02d held %d", i, n))
			}
		}
		return held, short
	}
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, limit, true, func(context.Context) (bool, error) {
		_, short := total()
		return len(short) == 0, nil
	})
	held, short := total()
	if err != nil {
		return held, fmt.Errorf("invalid run: each hanging endpoint must hold %d requests unanswered for %s or longer; "+
			"%s after the healthy deliveries, %s", need, heldAfter, limit, strings.Join(short, ", "))
	}
	return held, nil
}

// isolation runs rounds of two side-by-side runs, healthy endpoints only and the same plus hanging
// ones, alternating which goes first so that drift of the shared machine over the scenario cancels out.
// The value is the geometric mean of the rounds' ratios: one run lasts seconds, and a busy moment of
// the machine moves a single ratio by 10-20%.
func (h *harness) isolation(ctx context.Context) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, h.sizes.scenarioTimeout)
	defer cancel()
	n, healthy, hanging := h.sizes.isolationEvents, h.sizes.isolationHealthy, h.sizes.isolationHanging
	step("isolation: %d rounds of %d events to %d healthy endpoints, and the same plus %d that never answer (timeout %s)",
		h.sizes.isolationRounds, n, healthy, hanging, h.sizes.hangingTimeout)
	var (
		ratios, statusRatios []float64
		rounds               []map[string]any
		sumA, sumB           float64
		held, heldRequired   int64
	)
	for i := range h.sizes.isolationRounds {
		var a, b *isolationRun
		runA := func() (err error) {
			a, err = h.isolationRun(ctx, fmt.Sprintf("bench-isolation-healthy-%d", i+1), 0)
			if err != nil {
				return fmt.Errorf("healthy-only run: %w", err)
			}
			return nil
		}
		runB := func() (err error) {
			b, err = h.isolationRun(ctx, fmt.Sprintf("bench-isolation-mixed-%d", i+1), hanging)
			if err != nil {
				return fmt.Errorf("run with hanging endpoints: %w", err)
			}
			return nil
		}
		first, second := runA, runB
		if i%2 == 1 {
			first, second = runB, runA
		}
		if err := first(); err != nil {
			return result{}, err
		}
		if err := second(); err != nil {
			return result{}, err
		}
		ratio := b.perSecond / a.perSecond
		ratios = append(ratios, ratio)
		statusRatios = append(statusRatios, b.statusPerSecond/a.statusPerSecond)
		sumA += a.seconds
		sumB += b.seconds
		held, heldRequired = max(held, b.hangingHeld), b.hangingHeldRequired
		info("round %d: ratio %.3f", i+1, ratio)
		rounds = append(rounds, map[string]any{
			"ratio":                              round3(ratio),
			"healthy_only_deliveries_per_second": round(a.perSecond, 1),
			"with_hanging_deliveries_per_second": round(b.perSecond, 1),
			"healthy_only_seconds":               round3(a.seconds),
			"with_hanging_seconds":               round3(b.seconds),
			"healthy_only_create_seconds":        round3(a.createSeconds),
			"with_hanging_create_seconds":        round3(b.createSeconds),
			"healthy_only_recorded_seconds":      round3(a.statusSeconds),
			"with_hanging_recorded_seconds":      round3(b.statusSeconds),
			"healthy_only_writes_per_event":      round3(a.usage.writes / float64(n)),
			"with_hanging_writes_per_event":      round3(b.usage.writes / float64(n)),
			"healthy_only_manager_cpu_seconds":   round(a.usage.cpuSeconds, 2),
			"with_hanging_manager_cpu_seconds":   round(b.usage.cpuSeconds, 2),
			"healthy_only_ran_first":             i%2 == 0,
		})
	}
	logSum := 0.0
	for _, r := range ratios {
		logSum += math.Log(r)
	}
	ratio := math.Exp(logSum / float64(len(ratios)))
	return result{
		Scenario: scIsolation, Value: round3(ratio), Unit: "healthy deliveries/s, with/without hanging",
		Target: targets[scIsolation], Met: ratio >= isolationRatioTarget,
		Details: map[string]any{
			keyEvents:                 n,
			"healthy_endpoints":       healthy,
			"hanging_endpoints":       hanging,
			"hanging_timeout_seconds": h.sizes.hangingTimeout.Seconds(),
			"hanging_requests_held":   held,
			"hanging_requests_held_required_per_endpoint": heldRequired,
			"rounds":        rounds,
			"ratios":        roundAll(ratios),
			"pooled_ratio":  round3(sumA / sumB),
			"status_ratios": roundAll(statusRatios),
			keyMeasured: "healthy deliveries (events x healthy endpoints) over the time from the first create until every " +
				"healthy receiver had every event; the value is the geometric mean of the rounds' ratios",
		},
	}, nil
}

// maxInFlightOrDefault is the bound of an endpoint whose spec.maxInFlight is v.
func maxInFlightOrDefault(v int32) int64 {
	if v == 0 {
		return webhooksv1alpha1.DefaultMaxInFlight
	}
	return int64(v)
}

func round3(v float64) float64 { return round(v, 3) }

func roundAll(values []float64) []float64 {
	out := make([]float64, len(values))
	for i, v := range values {
		out[i] = round3(v)
	}
	return out
}

// ---------------------------------------------------------------------------------------------------
// fanout

type fanoutRun struct {
	seconds, receivedSeconds float64
	writesPerEvent           float64
	cpuSeconds               float64
}

func (h *harness) fanoutRun(ctx context.Context, ns string, endpoints int) (*fanoutRun, error) {
	n := h.sizes.fanoutEvents
	m, err := h.startMeasuredRun(ctx, ns, endpoints, 0, 0, n)
	if err != nil {
		return nil, err
	}
	defer m.close(h)
	t, w, used, t0 := m.tenant, m.watcher, m.used, m.start
	done, err := w.waitDelivered(ctx, n)
	if err != nil {
		return nil, withLog(err, t.m.logPath)
	}
	received, err := waitReceipts(ctx, t.healthy, n)
	if err != nil {
		return nil, withLog(err, t.m.logPath)
	}
	time.Sleep(settle)
	u, err := used()
	if err != nil {
		return nil, err
	}
	run := &fanoutRun{seconds: since(t0, done), receivedSeconds: since(t0, received),
		writesPerEvent: u.writes / float64(n), cpuSeconds: u.cpuSeconds}
	info("%s: %d events x %d endpoints Delivered in %.2fs = %.0f deliveries/s; %.2f writes/event; manager %.2f CPU seconds",
		ns, n, endpoints, run.seconds, float64(n*endpoints)/run.seconds, run.writesPerEvent, run.cpuSeconds)
	if err := h.finish(ctx, t); err != nil {
		return nil, err
	}
	return run, nil
}

func (h *harness) fanout(ctx context.Context) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, h.sizes.scenarioTimeout)
	defer cancel()
	n, k := h.sizes.fanoutEvents, h.sizes.fanoutEndpoints
	step("fanout: %d events to 1 endpoint, then %d events to %d endpoints each", n, n, k)
	base, err := h.fanoutRun(ctx, "bench-fanout-single", 1)
	if err != nil {
		return result{}, fmt.Errorf("1-endpoint run: %w", err)
	}
	fan, err := h.fanoutRun(ctx, "bench-fanout-ten", k)
	if err != nil {
		return result{}, fmt.Errorf("%d-endpoint run: %w", k, err)
	}
	singlePerSec := float64(n) / base.seconds
	deliveriesPerSec := float64(n*k) / fan.seconds
	ratio := deliveriesPerSec / singlePerSec
	return result{
		Scenario: scFanout, Value: round(ratio, 2), Unit: "x (deliveries/s at 10 endpoints over events/s at 1)",
		Target: targets[scFanout], Met: ratio >= fanoutRatioTarget,
		Details: map[string]any{
			keyEvents:                               n,
			"endpoints_per_event":                   k,
			"single_endpoint_events_per_second":     round(singlePerSec, 1),
			"fanout_deliveries_per_second":          round(deliveriesPerSec, 1),
			"fanout_events_per_second":              round(float64(n)/fan.seconds, 1),
			"single_endpoint_seconds":               round(base.seconds, 3),
			"fanout_seconds":                        round(fan.seconds, 3),
			"fanout_received_seconds":               round(fan.receivedSeconds, 3),
			"single_endpoint_writes_per_event":      round(base.writesPerEvent, 3),
			"fanout_writes_per_event":               round(fan.writesPerEvent, 3),
			"single_endpoint_manager_cpu_seconds":   round(base.cpuSeconds, 2),
			"fanout_manager_cpu_seconds":            round(fan.cpuSeconds, 2),
			keyMeasured:                             "from the first create until every event's status.phase is Delivered, both runs side by side",
			"fanout_deliveries_received_per_second": round(float64(n*k)/fan.receivedSeconds, 1),
		},
	}, nil
}

// ---------------------------------------------------------------------------------------------------
// memory

type memoryPoint struct {
	Events       int     `json:"events_in_cluster"`
	RSSMiB       float64 `json:"rss_mib"`
	PeakMiB      float64 `json:"peak_rss_mib"`
	HeapInuseMiB float64 `json:"heap_inuse_mib"`
	HeapAllocMiB float64 `json:"heap_alloc_mib"`
	Goroutines   float64 `json:"goroutines"`
	AfterSeconds float64 `json:"after_seconds"`
	// CachedObjects is what the manager's cache holds, by kind (its webhook_operator_cached_objects).
	CachedObjects map[string]float64 `json:"cached_objects,omitempty"`
}

// memoryPoint reads the manager's RSS from /proc and its Go heap and cache sizes from its metrics.
func (m *manager) memoryPoint(ctx context.Context, events int, t0 time.Time) (memoryPoint, error) {
	cur, peak, err := m.rss()
	if err != nil {
		return memoryPoint{}, err
	}
	metrics, err := m.scrape(ctx)
	if err != nil {
		return memoryPoint{}, err
	}
	return memoryPoint{
		Events: events, RSSMiB: mib(cur), PeakMiB: mib(peak),
		HeapInuseMiB:  mib(int64(metrics.gauges["go_memstats_heap_inuse_bytes"])),
		HeapAllocMiB:  mib(int64(metrics.gauges["go_memstats_heap_alloc_bytes"])),
		Goroutines:    metrics.gauges["go_goroutines"],
		AfterSeconds:  round(time.Since(t0).Seconds(), 1),
		CachedObjects: metrics.cachedObjects,
	}, nil
}

// memory fills the cluster with events in steps, reading the manager's memory once every event of a step
// is Delivered, then restarts the manager, whose initial list of every event is the other peak.
func (h *harness) memory(ctx context.Context) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, h.sizes.scenarioTimeout)
	defer cancel()
	n := h.sizes.memoryEvents
	ext := largeExtraction(h.sizes.memoryPayload)
	mk := func(i int) *webhooksv1alpha1.DocumentEvent {
		ev := typicalEvent("bench-memory", "ev", i)
		ev.Spec.Extraction = ext
		return ev
	}
	step("memory: %d events of about %d bytes (spec JSON %d bytes) in steps %v, then a manager restart",
		n, h.sizes.memoryPayload, specBytes(mk(0)), h.sizes.memoryCheckpoints)
	t, err := h.newTenant(ctx, "bench-memory", 1, 0, 0)
	if err != nil {
		return result{}, err
	}
	defer h.abandon(t)
	w, err := h.watch(ctx, t.ns)
	if err != nil {
		return result{}, err
	}
	defer w.stop()
	t0 := time.Now()
	idle, err := t.m.memoryPoint(ctx, 0, t0)
	if err != nil {
		return result{}, err
	}

	var points []memoryPoint
	created := 0
	for _, cp := range h.sizes.memoryCheckpoints {
		cp = min(cp, n)
		if cp <= created {
			continue
		}
		from := created
		if err := h.createEvents(ctx, cp-from, h.sizes.memoryCreators, func(i int) *webhooksv1alpha1.DocumentEvent { return mk(from + i) }, nil); err != nil {
			return result{}, fmt.Errorf("create events: %w", err)
		}
		created = cp
		if _, err := w.waitDelivered(ctx, cp); err != nil {
			return result{}, withLog(err, t.m.logPath)
		}
		time.Sleep(500 * time.Millisecond)
		p, err := t.m.memoryPoint(ctx, cp, t0)
		if err != nil {
			return result{}, err
		}
		points = append(points, p)
		info("%5d events Delivered: RSS %.1f MiB, peak %.1f MiB, Go heap in use %.1f MiB", cp, p.RSSMiB, p.PeakMiB, p.HeapInuseMiB)
	}
	if created < n {
		return result{}, fmt.Errorf("memory checkpoints %v stop before %d events", h.sizes.memoryCheckpoints, n)
	}
	runPeak := points[len(points)-1].PeakMiB
	sentBefore := t.healthy[0].requests.Load()

	h.stopManager(t.m)
	m, err := h.startManager(ctx, "bench-memory-restart")
	if err != nil {
		return result{}, err
	}
	t.m = m
	if _, err := h.waitEndpointsReady(ctx, t.ns, 1); err != nil {
		return result{}, withLog(err, m.logPath)
	}
	quiet, err := watchRestart(ctx, m, t.healthy[0], sentBefore, h.sizes.restartWatch)
	if err != nil {
		return result{}, err
	}
	restart, err := m.memoryPoint(ctx, n, t0)
	if err != nil {
		return result{}, err
	}
	info("after a restart with %d events in the cluster: RSS %.1f MiB, peak %.1f MiB, Go heap in use %.1f MiB; "+
		"in the %s after Ready %d requests resent, %.0f API writes %v",
		n, restart.RSSMiB, restart.PeakMiB, restart.HeapInuseMiB, h.sizes.restartWatch, quiet.resent, quiet.writes, quiet.writesByMethod)
	objectBytes, managedFieldsBytes, err := h.objectSize(ctx, t.ns, mk(0).Name)
	if err != nil {
		return result{}, err
	}
	if err := h.finish(ctx, t); err != nil {
		return result{}, err
	}

	peak := max(runPeak, restart.PeakMiB)
	first, last := points[0], points[len(points)-1]
	growth := 0.0
	if last.Events > first.Events {
		growth = (last.PeakMiB - first.PeakMiB) / float64(last.Events-first.Events) * 1000
	}
	quietMet := quiet.resent == 0 && quiet.writes == 0
	return result{
		Scenario: scMemory, Value: round(peak, 1), Unit: "MiB (peak RSS)", Target: targets[scMemory],
		Met: peak <= memoryTargetMiB && quietMet,
		Details: map[string]any{
			keyEvents:                        n,
			"spec_bytes_per_event":           specBytes(mk(0)),
			"object_json_bytes":              objectBytes,
			"managed_fields_json_bytes":      managedFieldsBytes,
			"idle":                           idle,
			"checkpoints":                    points,
			"peak_rss_during_delivery_mib":   runPeak,
			"after_restart":                  restart,
			"requests_resent_after_restart":  quiet.resent,
			"writes_after_restart":           quiet.writes,
			"writes_after_restart_by_method": quiet.writesByMethod,
			"restart_watch": fmt.Sprintf("from the restarted process's start until %s after it marked the endpoint Ready, "+
				"polled every %s", h.sizes.restartWatch, restartPoll),
			"restart_first_seen_seconds_after_ready": quiet.firstSeen,
			"restart_quiet_met":                      quietMet,
			"peak_growth_mib_per_1000_events":        round(growth, 2),
			keyMeasured: "VmHWM (peak) and VmRSS of the manager process from /proc/<pid>/status, Go heap from its metrics; " +
				"every event in the cluster is Delivered at each checkpoint",
		},
	}, nil
}

// restartPoll is how often watchRestart looks; it only dates what it finds, since both counters are
// cumulative.
const restartPoll = 500 * time.Millisecond

// restartActivity is what a restarted manager did in a cluster whose events were all recorded Delivered:
// nothing, when it trusts the recorded statuses.
type restartActivity struct {
	resent         int64
	writes         float64
	writesByMethod map[string]float64
	// firstSeen has, for "resend" and "write", the seconds after Ready of the poll that first saw one.
	firstSeen map[string]float64
}

// watchRestart follows a manager process that has just marked its endpoints Ready for window, and
// returns the requests r received beyond sentBefore and the API writes the process made since it started.
func watchRestart(ctx context.Context, m *manager, r *receiver, sentBefore int64, window time.Duration) (restartActivity, error) {
	a := restartActivity{firstSeen: map[string]float64{}}
	ready := time.Now()
	tick := time.NewTicker(restartPoll)
	defer tick.Stop()
	for {
		// The process's counters start at zero: every write it counts is one of the restart.
		requests, err := m.writeCounts(ctx)
		if err != nil {
			return a, err
		}
		a.writes, a.writesByMethod = writeDelta(nil, requests)
		a.resent = r.requests.Load() - sentBefore
		elapsed := time.Since(ready)
		for what, seen := range map[string]bool{"resend": a.resent > 0, "write": a.writes > 0} {
			if _, dated := a.firstSeen[what]; seen && !dated {
				a.firstSeen[what] = round(elapsed.Seconds(), 1)
			}
		}
		if elapsed >= window {
			return a, nil
		}
		select {
		case <-ctx.Done():
			return a, ctx.Err()
		case <-tick.C:
		}
	}
}

func mib(b int64) float64 { return round(float64(b)/(1<<20), 1) }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
