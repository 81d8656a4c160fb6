package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/pkg/signature"
)

// The chaos scenario: a steady stream of events to receivers that fail or hang some of the time, from two
// manager replicas with leader election, while the leader is SIGKILLed again and again and the API server
// is restarted once. It checks the delivery guarantees rather than speed: every event ends Delivered or
// Failed with a reason, nothing recorded Delivered is sent again, and a document keeps one X-Webhook-Id
// per endpoint however often it is sent.

const (
	chaosNamespace = "bench-chaos"
	// leaseName is the manager's leader election Lease (cmd/manager).
	leaseName = "webhook-operator.webhooks.1flow.io"
	// resendSlack is how long after the benchmark saw a delivery recorded Delivered a request for it
	// counts as sent again. The manager records Delivered only after the 2xx, and the benchmark sees the
	// record later still, so any request after that moment was sent after the record; the slack only
	// absorbs scheduling noise.
	resendSlack = 500 * time.Millisecond
	// chaosSeed makes the receivers' failures repeatable (up to the order in which requests arrive).
	chaosSeed = 20261127
)

// fastLeaderElection are the e2e tests' short leases, so that a killed leader is replaced within seconds.
var fastLeaderElection = []string{
	"--leader-elect",
	"--leader-election-lease-duration=3s",
	"--leader-election-renew-deadline=2s",
	"--leader-election-retry-period=500ms",
}

// chaosSizes are the knobs of the chaos scenario.
type chaosSizes struct {
	rate      int           // events per second
	duration  time.Duration // of the stream
	endpoints int           // in one namespace; every event goes to each
	// killAt are the times, from the start of the stream, at which the leader is SIGKILLed.
	killAt []time.Duration
	// apiRestartAt is when the API server is stopped; it stays down apiDown before it is started again.
	apiRestartAt time.Duration
	apiDown      time.Duration
	// drain bounds the wait, after the stream, until every event is Delivered or Failed.
	drain       time.Duration
	failRate    float64 // answer 500
	hangRate    float64 // hold the request past the endpoint timeout
	timeout     time.Duration
	maxAttempts int32
}

func everyUntil(every, end time.Duration) []time.Duration {
	var at []time.Duration
	for t := every; t < end; t += every {
		at = append(at, t)
	}
	return at
}

var fullChaos = chaosSizes{
	rate: 30, duration: 3 * time.Minute, endpoints: 3,
	// Every 20 s; the API server restart at 90 s falls between two kills.
	killAt:       everyUntil(20*time.Second, 170*time.Second),
	apiRestartAt: 90 * time.Second, apiDown: 5 * time.Second,
	drain:    3 * time.Minute,
	failRate: 0.10, hangRate: 0.03, timeout: 2 * time.Second, maxAttempts: 20,
}

var quickChaos = chaosSizes{
	rate: 10, duration: 36 * time.Second, endpoints: 3,
	killAt:       []time.Duration{8 * time.Second, 26 * time.Second},
	apiRestartAt: 16 * time.Second, apiDown: 3 * time.Second,
	drain:    90 * time.Second,
	failRate: 0.10, hangRate: 0.03, timeout: 2 * time.Second, maxAttempts: 20,
}

// ---------------------------------------------------------------------------------------------------
// receiver

// chaosRequest is one request a chaos receiver got.
type chaosRequest struct {
	at, answeredAt time.Time
	id, document   string
	// code is the status answered; 0 for a request held until the sender gave up.
	code int
}

// chaosReceiver verifies every signature, then answers 500, holds the request past the endpoint timeout,
// or answers 200, at random with a fixed seed. It records every request.
type chaosReceiver struct {
	URL      string
	endpoint string
	srv      *http.Server
	secret   []byte
	failRate float64
	hangRate float64
	maxHold  time.Duration
	release  chan struct{}
	once     sync.Once

	badSignatures atomic.Int64

	mu       sync.Mutex
	rng      *rand.Rand
	requests []chaosRequest
}

func newChaosReceiver(endpoint string, seed uint64, sz chaosSizes) (*chaosReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &chaosReceiver{
		URL: "http://" + ln.Addr().String() + "/webhook", endpoint: endpoint, secret: []byte(signingSecret),
		failRate: sz.failRate, hangRate: sz.hangRate, maxHold: 3 * sz.timeout,
		release: make(chan struct{}), rng: rand.New(rand.NewPCG(chaosSeed, seed)),
	}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *chaosReceiver) serve(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	if err := signature.Verify(r.secret, req.Header, body); err != nil {
		r.badSignatures.Add(1)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var payload struct {
		DocumentID string `json:"documentId"`
	}
	_ = json.Unmarshal(body, &payload)
	rec := chaosRequest{at: at, id: req.Header.Get(signature.HeaderID), document: payload.DocumentID}

	r.mu.Lock()
	roll := r.rng.Float64()
	r.mu.Unlock()
	switch {
	case roll < r.hangRate:
		// Hold the request until the sender gives up (its timeout) and drop it without an answer.
		select {
		case <-req.Context().Done():
		case <-r.release:
		case <-time.After(r.maxHold):
		}
		rec.answeredAt = time.Now()
		r.record(rec)
		panic(http.ErrAbortHandler)
	case roll < r.hangRate+r.failRate:
		rec.code = http.StatusInternalServerError
	default:
		rec.code = http.StatusOK
	}
	w.WriteHeader(rec.code)
	rec.answeredAt = time.Now()
	r.record(rec)
}

func (r *chaosReceiver) record(rec chaosRequest) {
	r.mu.Lock()
	r.requests = append(r.requests, rec)
	r.mu.Unlock()
}

func (r *chaosReceiver) snapshot() []chaosRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.requests)
}

func (r *chaosReceiver) close() {
	r.once.Do(func() {
		close(r.release)
		_ = r.srv.Close()
	})
}

// ---------------------------------------------------------------------------------------------------
// replicas

// replicaSet keeps two manager replicas running: it kills the leader on schedule, notices replicas that
// exit on their own (for example after losing the lease while the API server is down) and starts a
// replacement for every replica that is gone.
type replicaSet struct {
	h       *harness
	t0      time.Time
	started int

	mu      sync.Mutex
	running []*manager
	kills   []killRecord
	exits   []exitRecord
	logs    []string
	// exitedAt is when each replica that exited by itself was noticed gone.
	exitedAt []time.Time
	// startErr counts replica starts that failed, startErrs describes the first few.
	startErr  int
	startErrs []string
	// aborted, when set, makes fill give up: the harness failed elsewhere.
	aborted error
}

// killRecord is one SIGKILL of the leader, in seconds from the start of the stream.
type killRecord struct {
	Replica string  `json:"replica"`
	Planned float64 `json:"planned_seconds"`
	At      float64 `json:"at_seconds"`
	// NoLeaderAtFirst is what the replicas said when the leader was not found at once.
	NoLeaderAtFirst string `json:"no_leader_at_first,omitempty"`
}

// exitRecord is a replica that exited by itself.
type exitRecord struct {
	Replica string  `json:"replica"`
	At      float64 `json:"at_seconds"`
	Reason  string  `json:"reason"`
}

func (s *replicaSet) setStart(t0 time.Time) {
	s.mu.Lock()
	s.t0 = t0
	s.mu.Unlock()
}

func (s *replicaSet) abort(err error) {
	s.mu.Lock()
	s.aborted = err
	s.mu.Unlock()
}

func (s *replicaSet) add(ctx context.Context) error {
	s.started++
	name := fmt.Sprintf("chaos-replica-%02d", s.started)
	m, err := s.h.startManager(ctx, name, fastLeaderElection...)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.running = append(s.running, m)
	s.logs = append(s.logs, m.logPath)
	s.mu.Unlock()
	return nil
}

// fill starts replicas until two run. A start fails while the API server is down (the manager exits when
// it cannot reach it); it is retried every second for up to two minutes.
func (s *replicaSet) fill(ctx context.Context) error {
	var failingSince time.Time
	for {
		s.mu.Lock()
		n, aborted := len(s.running), s.aborted
		s.mu.Unlock()
		if aborted != nil {
			return aborted
		}
		if n >= 2 {
			return nil
		}
		if err := s.add(ctx); err != nil {
			if failingSince.IsZero() {
				failingSince = time.Now()
			}
			s.mu.Lock()
			s.startErr++
			if len(s.startErrs) < 5 {
				s.startErrs = append(s.startErrs, fmt.Sprintf("%.1fs: %s", since(s.t0, time.Now()), lastLine(err)))
			}
			s.mu.Unlock()
			info("chaos: starting a replica failed: %v", lastLine(err))
			if time.Since(failingSince) > 2*time.Minute {
				return fmt.Errorf("cannot keep two manager replicas running: %w", err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
		}
	}
}

// reap notices replicas that exited on their own, records why, and forgets them.
func (s *replicaSet) reap() {
	s.mu.Lock()
	defer s.mu.Unlock()
	alive := s.running[:0]
	for _, m := range s.running {
		if processAlive(m.PID()) {
			alive = append(alive, m)
			continue
		}
		at := time.Now()
		s.h.forget(m)
		reason := exitReason(m.logPath)
		s.exitedAt = append(s.exitedAt, at)
		s.exits = append(s.exits, exitRecord{Replica: m.name, At: round(since(s.t0, at), 1), Reason: reason})
		info("chaos: replica %s exited by itself at %.1fs: %s", m.name, since(s.t0, at), reason)
	}
	s.running = alive
}

// leader returns the replica whose metrics say it holds the lease, or nil and what each replica said.
func (s *replicaSet) leader(ctx context.Context) (*manager, string) {
	s.mu.Lock()
	running := slices.Clone(s.running)
	s.mu.Unlock()
	var seen []string
	for _, m := range running {
		ok, err := m.isLeader(ctx)
		switch {
		case err != nil:
			seen = append(seen, fmt.Sprintf("%s: %v", m.name, err))
		case ok:
			return m, ""
		default:
			seen = append(seen, m.name+": not leading")
		}
	}
	return nil, strings.Join(seen, "; ")
}

// killLeader waits (bounded) until a replica leads, SIGKILLs it and starts a replacement at once.
func (s *replicaSet) killLeader(ctx context.Context, planned time.Duration) (time.Time, error) {
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	firstMiss := ""
	for {
		s.reap()
		if err := s.fill(ctx); err != nil {
			return time.Time{}, err
		}
		m, seen := s.leader(ctx)
		if m != nil {
			// The kill's time is when the process is gone (Kill waits for it): a receiver can still answer
			// a request of the leader's a moment after the signal was sent.
			s.h.killManager(m)
			at := time.Now()
			entry := killRecord{Replica: m.name, Planned: planned.Seconds(), At: round(since(s.t0, at), 1), NoLeaderAtFirst: firstMiss}
			s.mu.Lock()
			s.running = slices.DeleteFunc(s.running, func(x *manager) bool { return x == m })
			s.kills = append(s.kills, entry)
			s.mu.Unlock()
			info("chaos: SIGKILLed the leader %s at %.1fs", m.name, since(s.t0, at))
			return at, s.fill(ctx)
		}
		if firstMiss == "" {
			firstMiss = seen
		}
		if time.Now().After(deadline) {
			info("chaos: no replica led for 30 s (%s); kill at %s skipped", seen, planned)
			return time.Time{}, nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// endAll takes every running replica out of the set and ends it with end (a graceful stop or a kill).
func (s *replicaSet) endAll(end func(*manager)) {
	s.mu.Lock()
	running := s.running
	s.running = nil
	s.mu.Unlock()
	for _, m := range running {
		end(m)
	}
}

// isLeader reads controller-runtime's leader_election_master_status gauge from the manager's metrics.
func (m *manager) isLeader(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.metrics+"/metrics", nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "leader_election_master_status{") && strings.Contains(line, `name="`+leaseName+`"`) {
			return strings.HasSuffix(strings.TrimSpace(line), " 1"), nil
		}
	}
	return false, nil
}

// processAlive tells whether pid runs (and is not a zombie).
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	text := string(data)
	if i := strings.LastIndexByte(text, ')'); i >= 0 {
		if fields := strings.Fields(text[i+1:]); len(fields) > 0 && fields[0] == "Z" {
			return false
		}
	}
	return true
}

// exitReason returns the last error line of a manager log.
func exitReason(logPath string) string {
	data, err := os.ReadFile(logPath)
	if err != nil {
		return "log unreadable: " + err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := lines[i]
		if strings.Contains(l, "leader election lost") || strings.Contains(l, "panic") || strings.Contains(l, "ERROR") ||
			strings.Contains(l, `"level":"error"`) {
			return truncate(l, 400)
		}
	}
	return truncate(lines[len(lines)-1], 400)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// lastLine returns the last line of an error, which for a failed start is the manager's last log line.
func lastLine(err error) string {
	text := strings.TrimRight(err.Error(), "\n")
	return truncate(text[strings.LastIndexByte(text, '\n')+1:], 300)
}

// panicsIn returns the lines of manager logs that report a panic.
func panicsIn(logPaths ...string) []string {
	out := []string{}
	for _, path := range logPaths {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "panic:") || strings.Contains(l, "Observed a panic") || strings.HasPrefix(l, "fatal error:") {
				out = append(out, filepath.Base(path)+": "+truncate(l, 300))
			}
		}
	}
	return out
}

// ---------------------------------------------------------------------------------------------------
// status tracking

// deliveryRecord is when the benchmark first saw a delivery recorded Delivered.
type deliveryRecord struct {
	at       time.Time
	endpoint string
	event    string
}

func newChaosTracker() *chaosTracker {
	return &chaosTracker{delivered: map[string]deliveryRecord{}, phases: map[string]webhooksv1alpha1.DocumentEventPhase{},
		regressed: map[string]bool{}, byEvent: map[string][]string{}}
}

// chaosTracker follows the events' status through a watch that outlasts the API server restart.
type chaosTracker struct {
	mu        sync.Mutex
	delivered map[string]deliveryRecord // by delivery id
	phases    map[string]webhooksv1alpha1.DocumentEventPhase
	finished  int
	// regressions are deliveries seen Delivered and later seen otherwise: a status write based on an
	// older copy undid the record.
	regressions []regression
	regressed   map[string]bool
	byEvent     map[string][]string // delivery ids seen Delivered, by event
}

// regression is a delivery whose Delivered record was later overwritten.
type regression struct {
	event, endpoint, id string
	phase               string // what the later status said ("" when the delivery was gone)
	deliveredAt, at     time.Time
}

func (t *chaosTracker) observe(ev *webhooksv1alpha1.DocumentEvent, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	phaseOf := map[string]webhooksv1alpha1.DeliveryPhase{}
	for _, d := range ev.Status.Deliveries {
		phaseOf[d.DeliveryID] = d.Phase
		if d.Phase != webhooksv1alpha1.DeliveryDelivered {
			continue
		}
		if _, seen := t.delivered[d.DeliveryID]; !seen {
			t.delivered[d.DeliveryID] = deliveryRecord{at: at, endpoint: d.Endpoint, event: ev.Name}
			t.byEvent[ev.Name] = append(t.byEvent[ev.Name], d.DeliveryID)
		}
	}
	for _, id := range t.byEvent[ev.Name] {
		if t.regressed[id] || phaseOf[id] == webhooksv1alpha1.DeliveryDelivered {
			continue
		}
		rec := t.delivered[id]
		t.regressed[id] = true
		t.regressions = append(t.regressions, regression{event: ev.Name, endpoint: rec.endpoint, id: id,
			phase: string(phaseOf[id]), deliveredAt: rec.at, at: at})
	}
	isFinal := func(p webhooksv1alpha1.DocumentEventPhase) bool {
		return p == webhooksv1alpha1.DocumentEventDelivered || p == webhooksv1alpha1.DocumentEventFailed
	}
	prev := t.phases[ev.Name]
	t.phases[ev.Name] = ev.Status.Phase
	if isFinal(ev.Status.Phase) && !isFinal(prev) {
		t.finished++
	} else if !isFinal(ev.Status.Phase) && isFinal(prev) {
		t.finished--
	}
}

func (t *chaosTracker) finishedCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.finished
}

// ---------------------------------------------------------------------------------------------------
// the scenario

// chaosRun is one run of the scenario and the timeline of what it did to the system.
type chaosRun struct {
	h       *harness
	sz      chaosSizes
	reps    *replicaSet
	tracker *chaosTracker
	recvs   []*chaosReceiver

	t0           time.Time // the stream starts
	streamEnd    time.Time // the last create was issued
	createsDone  time.Time // every create returned
	created      atomic.Int64
	createGaveUp atomic.Int64
	killTimes    []time.Time
	apiStopped   time.Time // kube-apiserver got SIGTERM
	apiStarted   time.Time // it answers /healthz again
	apiBack      time.Time // and serves the API (a List of endpoints works)
	apiRestarts  int
	drained      bool
	drainSecs    float64
}

func (h *harness) chaos(ctx context.Context) (result, error) {
	sz := h.sizes.chaos
	ctx, cancel := context.WithTimeout(ctx, sz.duration+sz.drain+4*time.Minute)
	defer cancel()
	step("chaos: %d events/s for %s to %d endpoints (%.0f%% 500, %.0f%% hang past the %s timeout), two replicas; "+
		"SIGKILL the leader at %v, restart the API server at %s", sz.rate, sz.duration, sz.endpoints,
		sz.failRate*100, sz.hangRate*100, sz.timeout, sz.killAt, sz.apiRestartAt)

	run := &chaosRun{h: h, sz: sz, reps: &replicaSet{h: h, t0: time.Now()}, tracker: newChaosTracker()}
	defer run.closeReceivers()
	defer run.reps.endAll(run.reps.h.killManager)
	if err := run.setup(ctx); err != nil {
		return result{}, err
	}
	w, err := h.startWatch(ctx, &watcher{ns: chaosNamespace, observe: run.tracker.observe, outlasting: true})
	if err != nil {
		return result{}, err
	}
	defer w.stop()

	if err := run.stream(ctx); err != nil {
		return result{}, err
	}
	created := int(run.created.Load())
	info("chaos: stream ended after %.1fs: %d events created (%d gave up); %d kills, %d API server restart(s)",
		since(run.t0, run.streamEnd), created, run.createGaveUp.Load(), len(run.killTimes), run.apiRestarts)
	if err := run.drain(ctx, created); err != nil {
		return result{}, err
	}

	list := &webhooksv1alpha1.DocumentEventList{}
	if err := retry(ctx, func() error { return h.c.List(ctx, list, client.InNamespace(chaosNamespace)) }); err != nil {
		return result{}, fmt.Errorf("list DocumentEvents: %w", err)
	}
	res := run.analyze(list.Items)
	if err := run.dump(filepath.Join(h.work, "chaos-requests.jsonl")); err != nil {
		info("chaos: could not write the request log: %v", err)
	}

	run.reps.endAll(run.reps.h.stopManager)
	run.closeReceivers()
	cleanup, cancelCleanup := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
	defer cancelCleanup()
	if err := h.deleteEvents(cleanup, chaosNamespace); err != nil {
		return result{}, err
	}
	return res, nil
}

// setup creates the namespace, one receiver and endpoint per sz.endpoints, starts two replicas and waits
// until the leader marked every endpoint Ready.
func (run *chaosRun) setup(ctx context.Context) error {
	h, sz := run.h, run.sz
	if err := h.setupNamespace(ctx, chaosNamespace); err != nil {
		return err
	}
	for i := range sz.endpoints {
		name := fmt.Sprintf("chaos-%02d", i)
		r, err := newChaosReceiver(name, uint64(i), sz)
		if err != nil {
			return err
		}
		run.recvs = append(run.recvs, r)
		ep := &webhooksv1alpha1.WebhookEndpoint{
			ObjectMeta: metav1.ObjectMeta{Namespace: chaosNamespace, Name: name},
			Spec: webhooksv1alpha1.WebhookEndpointSpec{
				URL:       r.URL,
				SecretRef: &webhooksv1alpha1.SecretKeyReference{Name: signingSecretName},
				Timeout:   &metav1.Duration{Duration: sz.timeout},
				Retry: &webhooksv1alpha1.RetryPolicy{
					MaxAttempts:     sz.maxAttempts,
					InitialInterval: &metav1.Duration{Duration: time.Second},
					MaxInterval:     &metav1.Duration{Duration: 5 * time.Second},
				},
				// High enough that the receivers' random failures never open it.
				CircuitBreaker: &webhooksv1alpha1.CircuitBreakerPolicy{
					FailureThreshold: 50, Cooldown: &metav1.Duration{Duration: 5 * time.Second},
				},
			},
		}
		if err := h.c.Create(ctx, ep); err != nil {
			return fmt.Errorf("create WebhookEndpoint %s: %w", name, err)
		}
	}
	if err := run.reps.fill(ctx); err != nil {
		return err
	}
	_, err := h.waitEndpointsReady(ctx, chaosNamespace, sz.endpoints)
	return err
}

func (run *chaosRun) closeReceivers() {
	for _, r := range run.recvs {
		r.close()
	}
}

// stream creates the events at the configured rate while the faults happen: the leader is killed on
// schedule, replicas that exit are replaced, and the API server is restarted once. It returns when every
// create has returned.
func (run *chaosRun) stream(ctx context.Context) error {
	run.t0 = time.Now()
	run.reps.setStart(run.t0)

	// The API server restart runs beside the stream and the kills. A failure ends the scenario: fill,
	// which may be retrying starts while the API server is down, gives up at once.
	apiDone := make(chan error, 1)
	go func() {
		err := run.restartAPIServer(ctx)
		if err != nil {
			info("chaos: restarting the API server failed: %v", err)
			run.reps.abort(err)
		}
		apiDone <- err
	}()

	streamCtx, stopStream := context.WithCancel(ctx)
	defer stopStream()
	var creates sync.WaitGroup
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		run.sendEvents(ctx, streamCtx, &creates)
	}()

	apiRestarted, err := run.supervise(ctx, streamDone, apiDone)
	stopStream()
	<-streamDone
	creates.Wait()
	run.createsDone = time.Now()
	if err != nil {
		return err
	}
	if !apiRestarted {
		if err := <-apiDone; err != nil {
			return fmt.Errorf("restart the API server: %w", err)
		}
	}
	return nil
}

// sendEvents starts one create per tick, each in its own goroutine that retries through the outage.
func (run *chaosRun) sendEvents(ctx, streamCtx context.Context, creates *sync.WaitGroup) {
	defer func() { run.streamEnd = time.Now() }()
	count := int(float64(run.sz.rate) * run.sz.duration.Seconds())
	tick := time.NewTicker(time.Second / time.Duration(run.sz.rate))
	defer tick.Stop()
	for i := range count {
		if i > 0 {
			select {
			case <-tick.C:
			case <-streamCtx.Done():
				return
			}
		}
		ev := typicalEvent(chaosNamespace, "chaos", i)
		creates.Go(func() {
			if err := createThroughOutage(ctx, run.h.c, ev); err != nil {
				run.createGaveUp.Add(1)
				return
			}
			run.created.Add(1)
		})
	}
}

// supervise keeps two replicas running and kills the leader on schedule until the stream has been
// sent. It reports whether the API server restart has finished (successfully) meanwhile.
func (run *chaosRun) supervise(ctx context.Context, streamDone <-chan struct{}, apiDone <-chan error) (bool, error) {
	apiRestarted := false
	killIdx := 0
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return apiRestarted, ctx.Err()
		case <-streamDone:
			return apiRestarted, nil
		case err := <-apiDone:
			if err != nil {
				return apiRestarted, fmt.Errorf("restart the API server: %w", err)
			}
			apiRestarted = true
			continue
		case <-tick.C:
		}
		run.reps.reap()
		if err := run.reps.fill(ctx); err != nil {
			return apiRestarted, err
		}
		if killIdx < len(run.sz.killAt) && time.Since(run.t0) >= run.sz.killAt[killIdx] {
			at, err := run.reps.killLeader(ctx, run.sz.killAt[killIdx])
			if err != nil {
				return apiRestarted, err
			}
			if !at.IsZero() {
				run.killTimes = append(run.killTimes, at)
			}
			killIdx++
		}
	}
}

// drain waits, bounded by sz.drain, until every created event is Delivered or Failed, still replacing
// replicas that exit. Running out of time is a finding (lost events), not a harness failure.
func (run *chaosRun) drain(ctx context.Context, created int) error {
	drainCtx, cancel := context.WithTimeout(ctx, run.sz.drain)
	defer cancel()
	for run.tracker.finishedCount() < created && drainCtx.Err() == nil {
		run.reps.reap()
		if err := run.reps.fill(ctx); err != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
	run.drained = run.tracker.finishedCount() >= created
	run.drainSecs = time.Since(run.createsDone).Seconds()
	info("chaos: %d of %d events finished %.1fs after the stream", run.tracker.finishedCount(), created, run.drainSecs)
	// A moment for requests in flight (a late resend would show here) before the receivers are read.
	time.Sleep(2 * time.Second)
	run.reps.reap()
	return nil
}

// restartAPIServer stops the API server at sz.apiRestartAt and starts it again after sz.apiDown.
func (run *chaosRun) restartAPIServer(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(time.Until(run.t0.Add(run.sz.apiRestartAt))):
	}
	run.apiStopped = time.Now()
	info("chaos: stopping the API server at %.1fs", since(run.t0, run.apiStopped))
	if err := run.h.cluster.StopAPIServer(); err != nil {
		return err
	}
	info("chaos: the API server stopped in %.1fs", time.Since(run.apiStopped).Seconds())
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(run.sz.apiDown):
	}
	if err := run.h.cluster.StartAPIServer(ctx, func() { run.apiStarted = time.Now() }); err != nil {
		return err
	}
	run.apiBack = time.Now()
	run.apiRestarts++
	// The CPU meter of later scenarios looks the control plane up by pid.
	run.h.controlPlane = controlPlanePIDs()
	info("chaos: the API server serves again at %.1fs (down %.1fs)", since(run.t0, run.apiBack), run.apiBack.Sub(run.apiStopped).Seconds())
	return nil
}

// createThroughOutage creates ev, retrying any error (the API server may be down) for up to a minute. An
// AlreadyExists after a failed attempt means that attempt went through.
func createThroughOutage(ctx context.Context, c client.Client, ev *webhooksv1alpha1.DocumentEvent) error {
	deadline := time.Now().Add(time.Minute)
	for attempt := 0; ; attempt++ {
		err := c.Create(ctx, ev.DeepCopy())
		if err == nil || attempt > 0 && apierrors.IsAlreadyExists(err) {
			return nil
		}
		if apierrors.IsInvalid(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
