package controller

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"hash/fnv"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-logr/logr"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/internal/engine"
	"github.com/1flow/webhook-operator/internal/routing"
	"github.com/1flow/webhook-operator/internal/tracing"
)

// The deterministic simulation drives the real reconcilers and the real engine against a simulated API
// server with a lagging cache and injected faults, simulated receivers and simulated time (a
// testing/synctest bubble). One seeded generator chooses every operation, fault and answer, and attempts
// run one at a time, so a seed replays exactly: make simulate SEED=n.
var (
	simSeeds = flag.Int("sim.seeds", 20, "number of seeds TestSimulation runs (seeds 1..n)")
	simSeed  = flag.Uint64("sim.seed", 0, "run only this seed (replay)")
	simSteps = flag.Int("sim.steps", 400, "operations per seed before the healing phase")
	simTrace = flag.Bool("sim.trace", false, "log every operation, reconcile and attempt")
)

func TestSimulation(t *testing.T) {
	ctrl.SetLogger(logr.Discard())
	if *simSeed != 0 {
		runSimulation(t, *simSeed, *simSteps)
		return
	}
	for seed := uint64(1); seed <= uint64(*simSeeds); seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { runSimulation(t, seed, *simSteps) })
	}
}

// TestSimulationReplaysExactly runs one seed twice: every operation, reconcile, request and status
// write must come in the same order at the same simulated time, or a failing seed could not be replayed.
func TestSimulationReplaysExactly(t *testing.T) {
	ctrl.SetLogger(logr.Discard())
	const seed, steps = 2, 150
	first := runSimulation(t, seed, steps)
	second := runSimulation(t, seed, steps)
	if first.lines == 0 || first != second {
		t.Fatalf("seed %d gave %+v, then %+v: not the same run", seed, first, second)
	}
}

// simDigest sums up a run: how many trace lines it produced and a hash of them.
type simDigest struct {
	lines int
	hash  uint64
}

func runSimulation(t *testing.T, seed uint64, steps int) simDigest {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("replay with: make simulate SEED=%d", seed)
		}
	})
	var digest simDigest
	synctest.Test(t, func(t *testing.T) {
		sim := newSimulation(t, seed)
		for step := 0; step < steps && !t.Failed(); step++ {
			sim.step()
		}
		if !t.Failed() {
			sim.heal()
		}
		sim.finish()
		digest = simDigest{lines: sim.traced, hash: sim.digest.Sum64()}
	})
	return digest
}

const (
	simNamespaces              = 2
	simEndpointsPerNS          = 3
	simSettleBound             = 4 * time.Hour
	simAPIFaultRate            = 0.08
	simCacheCatchUpRate        = 0.3
	simMaxInFlight             = 6
	simMaxInFlightPerNamespace = 4
	// simMaxObjectBytes is etcd's default --max-request-bytes: the simulated API server refuses a write
	// that would store a larger object, as the real one does.
	simMaxObjectBytes = 3 << 19
)

type reqKind int

const (
	reqEvent reqKind = iota
	reqEndpoint
	// reqFinished is a request of the finished-events controller (TTL, redelivery of a finished event).
	reqFinished
)

type simRequest struct {
	kind reqKind
	key  types.NamespacedName
}

// simulation holds the simulated world and what the invariants remember about it.
type simulation struct {
	t     *testing.T
	seed  uint64
	rng   *rand.Rand
	store *simStore
	recv  *simReceivers
	mgr   *simManager
	// incarnation counts manager starts; attempts of an earlier incarnation never start new ones.
	incarnation int
	queue       map[simRequest]time.Time
	failures    map[simRequest]int
	created     int

	// Observations for the invariants.
	eventUID    map[string]types.UID // documentId → event UID
	eventKeyOf  map[types.UID]types.NamespacedName
	deliveredAt map[string]time.Time // delivery id → when it was recorded Delivered
	finishedAt  map[types.UID]time.Time
	ttlOf       map[types.UID]time.Duration
	testValues  map[string]string // test id → annotation value
	testsSent   map[string]int    // test id + incarnation → requests
	blockedGen  map[string]bool   // endpoint uid/generation whose dial was refused
	circuits    map[types.UID]*circuitModel
	violations  int

	// rates is each endpoint's token bucket as the receiver sees it, pauses the Retry-After pause this
	// manager was told of, succeeded the deliveries answered 2xx (by delivery id).
	rates     map[types.UID]*rateModel
	pauses    map[types.UID]time.Time
	succeeded map[string]successSeen
	// sentTo counts the requests of each event, by event UID, across all managers.
	sentTo map[types.UID]int
	// endpointLag delays the endpoint controller's reconciles, as one busy worker does; while
	// endpointsBusy is set, it runs none at all.
	endpointLag   time.Duration
	endpointsBusy bool
	// spans records every span; spanIDs the ids seen so far (trace/span) and the span's name.
	spans     *tracetest.SpanRecorder
	spanIDs   map[string]string
	spansSeen int
	// traced counts the trace lines and digest hashes them, whether or not they are printed.
	traced int
	digest hash.Hash64
}

// circuitModel is the circuit breaker as the receiver side can tell it from the answers it gave.
type circuitModel struct {
	failures      int32
	openedAt      time.Time
	open          bool
	probeInFlight bool
}

type simManager struct {
	shared    *Shared
	events    *DocumentEventReconciler
	endpoints *WebhookEndpointReconciler
	timers    simTimers
	spawnMu   sync.Mutex
	spawned   []func()
	// stopping is set when graceful shutdown began: no attempt may start after it.
	stopping bool
	// gone is set when the process ended (crash, restart, end of the run): what it would still start
	// never runs. The engine's timers (rate limits) may ask from their own goroutines, hence the lock.
	gone bool
}

// end marks the manager's process as gone.
func (m *simManager) end() {
	m.spawnMu.Lock()
	m.gone = true
	m.spawnMu.Unlock()
}

func newSimulation(t *testing.T, seed uint64) *simulation {
	sim := &simulation{
		t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		queue: map[simRequest]time.Time{}, failures: map[simRequest]int{},
		eventUID: map[string]types.UID{}, eventKeyOf: map[types.UID]types.NamespacedName{},
		deliveredAt: map[string]time.Time{}, finishedAt: map[types.UID]time.Time{},
		ttlOf: map[types.UID]time.Duration{}, testValues: map[string]string{}, testsSent: map[string]int{},
		blockedGen: map[string]bool{}, circuits: map[types.UID]*circuitModel{},
		rates: map[types.UID]*rateModel{}, pauses: map[types.UID]time.Time{}, succeeded: map[string]successSeen{},
		sentTo: map[types.UID]int{}, spans: tracetest.NewSpanRecorder(), spanIDs: map[string]string{}, digest: fnv.New64a(),
	}
	sim.store = newSimStore(sim.rng, time.Now)
	sim.store.faults = true
	sim.store.onCacheChange = sim.watch
	sim.store.onDelete = sim.deleted
	sim.store.onPut = sim.observe
	sim.store.onOversize = sim.oversize
	sim.recv = &simReceivers{sim: sim, modes: map[string]receiverMode{}}
	for n := range simNamespaces {
		ns := fmt.Sprintf("tenant-%d", n)
		for i := range simEndpointsPerNS {
			sim.createSecret(ns, fmt.Sprintf("secret-%d", i))
			sim.createEndpoint(ns, fmt.Sprintf("ep-%d", i))
		}
	}
	sim.start()
	return sim
}

// start runs a new manager incarnation: a fresh engine, and a cache that lists everything anew.
func (sim *simulation) start() {
	if sim.mgr != nil {
		sim.mgr.end()
	}
	sim.incarnation++
	incarnation := sim.incarnation
	mgr := &simManager{}
	cached := &simClient{store: sim.store, faultRate: simAPIFaultRate}
	live := &simClient{store: sim.store, live: true}
	mgr.shared = newShared(live, live, Options{
		Sender:              sim.recv,
		MaxInFlight:         simMaxInFlight,
		StatusFlushInterval: time.Second,
		Traces:              tracing.NewRecorder(tracing.NewTracerProvider(sdktrace.WithSpanProcessor(sim.spans))),
	})
	// Attempts run one at a time, and the engine's timers fire, from the simulation's own loop, so that
	// a seed replays exactly.
	mgr.shared.engine = engine.New(engine.Config{
		Sender: sim.recv, Endpoints: mgr.shared.resolver, Now: time.Now,
		MaxInFlight: simMaxInFlight, MaxInFlightPerNamespace: simMaxInFlightPerNamespace,
		AfterFunc: mgr.timers.afterFunc,
		Go: func(attempt func()) {
			mgr.spawnMu.Lock()
			defer mgr.spawnMu.Unlock()
			if mgr.gone {
				return
			}
			if mgr.stopping {
				sim.violation("an attempt started after graceful shutdown began")
			}
			mgr.spawned = append(mgr.spawned, attempt)
		},
	})
	mgr.events = &DocumentEventReconciler{Client: cached, APIReader: live, Recorder: &events.FakeRecorder{},
		Jitter: sim.rng.Float64, shared: mgr.shared, fresh: newFreshnessGuard(),
		scheduleFinished: func(key types.NamespacedName, after time.Duration) {
			if sim.incarnation == incarnation {
				sim.enqueue(reqFinished, key, after)
			}
		}}
	mgr.endpoints = &WebhookEndpointReconciler{Client: cached, APIReader: live, Recorder: &events.FakeRecorder{}, shared: mgr.shared}
	mgr.shared.recordOnShutdown = mgr.events.recordOnShutdown
	mgr.shared.recordSummariesOnShutdown = mgr.endpoints.recordSummariesOnShutdown
	sim.mgr = mgr

	clear(sim.queue)
	// What a new process knows of a circuit is what the status says when it first admits an attempt; of
	// a Retry-After pause, what the status says; its rate limits start with full buckets.
	clear(sim.circuits)
	sim.recordedPauses()
	clear(sim.rates)
	// A fresh process lists everything; a standby that takes over has watched all along, and its cache
	// may lag behind the last writes of the leader it replaces.
	if sim.rng.IntN(2) == 0 {
		sim.store.catchUpAll()
	}
	for _, k := range sim.store.sortedKeys() {
		if sim.store.latest(k) == nil {
			continue
		}
		switch k.kind {
		case "DocumentEvent":
			sim.enqueue(reqEvent, k.NamespacedName, 0)
			// The finished-events source lists the finished events from the API server.
			sim.finishedList(sim.store.latest(k))
		case "WebhookEndpoint":
			sim.enqueue(reqEndpoint, k.NamespacedName, 0)
		}
	}
}

func (sim *simulation) violation(format string, args ...any) {
	sim.violations++
	sim.t.Errorf("t=%s seed=%d: "+format, append([]any{time.Now().UTC().Format("15:04:05.000"), sim.seed}, args...)...)
}

func (sim *simulation) trace(format string, args ...any) {
	line := fmt.Sprintf("t=%s "+format, append([]any{time.Now().UTC().Format("15:04:05.000000")}, args...)...)
	sim.traced++
	_, _ = sim.digest.Write([]byte(line + "\n"))
	if *simTrace {
		sim.t.Log(line)
	}
}

func (sim *simulation) enqueue(kind reqKind, key types.NamespacedName, after time.Duration) {
	if kind == reqEndpoint {
		after += sim.endpointLag
	}
	r := simRequest{kind, key}
	at := time.Now().Add(after)
	if due, ok := sim.queue[r]; !ok || at.Before(due) {
		sim.queue[r] = at
	}
}

// watch turns a cache change into the reconcile requests that the controllers' watches would make.
func (sim *simulation) watch(oldObj, newObj client.Object) {
	obj := newObj
	if obj == nil {
		obj = oldObj
	}
	key := client.ObjectKeyFromObject(obj)
	switch o := obj.(type) {
	case *webhooksv1alpha1.DocumentEvent:
		if oldObj == nil || newObj == nil || oldObj.GetGeneration() != newObj.GetGeneration() ||
			!maps.Equal(oldObj.GetAnnotations(), newObj.GetAnnotations()) {
			sim.enqueue(reqEvent, key, 0)
		}
		if newObj != nil {
			// The finished-events watch lags like the cache does.
			sim.finishedWatch(newObj)
		}
	case *webhooksv1alpha1.WebhookEndpoint:
		if oldObj == nil || newObj == nil || oldObj.GetGeneration() != newObj.GetGeneration() ||
			!maps.Equal(oldObj.GetAnnotations(), newObj.GetAnnotations()) {
			sim.enqueue(reqEndpoint, key, 0)
		}
		pass := oldObj == nil || newObj == nil
		if !pass {
			pass = endpointUsabilityChanged().Update(event.UpdateEvent{ObjectOld: oldObj, ObjectNew: newObj})
		}
		if pass {
			for _, r := range sim.mgr.events.eventsWaitingOn(context.Background(), o) {
				sim.enqueue(reqEvent, r.NamespacedName, 0)
			}
		}
	case *corev1.Secret:
		meta := &metav1.PartialObjectMetadata{ObjectMeta: o.ObjectMeta}
		for _, r := range sim.mgr.endpoints.endpointsUsingSecret(context.Background(), meta) {
			sim.enqueue(reqEndpoint, r.NamespacedName, 0)
		}
		for _, r := range sim.mgr.events.eventsWaitingOnSecret(context.Background(), meta) {
			sim.enqueue(reqEvent, r.NamespacedName, 0)
		}
	}
}

// finishedList queues what the finished-events source's list at start would for the event.
func (sim *simulation) finishedList(obj client.Object) {
	ev, ok := obj.(*webhooksv1alpha1.DocumentEvent)
	if !ok || !ev.Status.Phase.IsFinished() {
		return
	}
	if after, ok := sim.mgr.events.finishedDue(ev); ok {
		sim.enqueue(reqFinished, client.ObjectKeyFromObject(ev), after)
	}
}

// finishedWatch queues what the finished-events source's metadata watch would for the event: a
// finished event that carries a redelivery request.
func (sim *simulation) finishedWatch(obj client.Object) {
	if ev, ok := obj.(*webhooksv1alpha1.DocumentEvent); ok && ev.Status.Phase.IsFinished() &&
		ev.Annotations[webhooksv1alpha1.RedeliverRequestedAtAnnotation] != "" {
		sim.enqueue(reqFinished, client.ObjectKeyFromObject(ev), 0)
	}
}

// deleted checks that a DocumentEvent is deleted only after its TTL from the moment it finished.
func (sim *simulation) deleted(obj client.Object) {
	ev, ok := obj.(*webhooksv1alpha1.DocumentEvent)
	if !ok {
		return
	}
	finished, ok := sim.finishedAt[ev.UID]
	if !ok {
		sim.violation("event %s deleted before it finished", ev.Name)
		return
	}
	// completionTime has the API's microsecond precision.
	if ttl := sim.ttlOf[ev.UID]; time.Now().Before(finished.Truncate(time.Microsecond).Add(ttl)) {
		sim.violation("event %s deleted %s after it finished; its TTL is %s", ev.Name, time.Since(finished), ttl)
	}
}

// observe notes what a status write recorded: Delivered deliveries and finished events.
func (sim *simulation) observe(obj client.Object) {
	ev, ok := obj.(*webhooksv1alpha1.DocumentEvent)
	if !ok {
		return
	}
	redeliveryPending := redeliveryRequested(ev)
	for _, d := range ev.Status.Deliveries {
		if d.Phase == webhooksv1alpha1.DeliveryDelivered && !redeliveryPending {
			if _, seen := sim.deliveredAt[d.DeliveryID]; !seen {
				sim.deliveredAt[d.DeliveryID] = time.Now()
			}
		}
	}
	sim.trace("status of %s: %s %s", ev.Name, ev.Status.Phase, deliverySummary(ev))
	if ev.Status.Phase.IsFinished() {
		if _, seen := sim.finishedAt[ev.UID]; !seen {
			sim.finishedAt[ev.UID] = time.Now()
		}
	} else {
		delete(sim.finishedAt, ev.UID)
	}
}

// checkSummaries checks that an endpoint summary the engine holds as written is what the status says.
func (sim *simulation) checkSummaries() {
	for _, k := range sim.store.sortedKeys() {
		ep, ok := sim.store.latest(k).(*webhooksv1alpha1.WebhookEndpoint)
		if !ok || ep == nil {
			continue
		}
		failures, written, known := sim.mgr.shared.engine.SummaryWritten(ep.UID)
		if known && written && failures != ep.Status.ConsecutiveFailures {
			sim.violation("endpoint %s: the engine counts %d consecutive failures as written, the status says %d",
				ep.Name, failures, ep.Status.ConsecutiveFailures)
		}
	}
}

// step is one operation of the simulated world, then the reconciles and attempts it causes.
func (sim *simulation) step() {
	defer sim.checkSpans()
	defer sim.checkSummaries()
	if sim.rng.Float64() < 0.5 {
		sim.operate()
	}
	sim.spuriousReconcile()
	sim.store.catchUpSome(simCacheCatchUpRate)
	sim.reconcileDue()
	sim.advance(time.Duration(sim.rng.Int64N(int64(3 * time.Second))))
}

// spuriousReconcile requeues a random object now and then, as resyncs and unrelated watch events do:
// a reconcile must be harmless whenever it runs, whatever copy of the object the cache serves.
func (sim *simulation) spuriousReconcile() {
	if sim.rng.Float64() >= 0.3 {
		return
	}
	keys := sim.store.sortedKeys()
	k := keys[sim.rng.IntN(len(keys))]
	switch k.kind {
	case "DocumentEvent":
		sim.enqueue(reqEvent, k.NamespacedName, 0)
	case "WebhookEndpoint":
		sim.enqueue(reqEndpoint, k.NamespacedName, 0)
	}
}

// operate applies one random change to the world.
func (sim *simulation) operate() {
	ns := fmt.Sprintf("tenant-%d", sim.rng.IntN(simNamespaces))
	name := fmt.Sprintf("ep-%d", sim.rng.IntN(simEndpointsPerNS))
	switch p := sim.rng.IntN(100); {
	case p < 30:
		for range 1 + sim.rng.IntN(12) {
			sim.createEvent(ns)
		}
	case p < 38:
		sim.editEndpoint(ns, name)
	case p < 46:
		sim.recv.setMode(name, receiverMode(sim.rng.IntN(int(modeCount))))
	case p < 50:
		sim.deleteEndpoint(ns, name)
	case p < 56:
		if sim.endpointByName(ns, name) == nil {
			sim.createEndpoint(ns, name)
		}
	case p < 62:
		sim.rotateSecret(ns, fmt.Sprintf("secret-%d", sim.rng.IntN(simEndpointsPerNS)))
	case p < 64:
		sim.store.remove(simKey{"Secret", types.NamespacedName{Namespace: ns, Name: fmt.Sprintf("secret-%d", sim.rng.IntN(simEndpointsPerNS))}})
	case p < 66:
		sim.replaceSecret(ns, fmt.Sprintf("secret-%d", sim.rng.IntN(simEndpointsPerNS)))
	case p < 72:
		sim.requestTest(ns, name)
	case p < 77:
		sim.requestRedelivery(ns)
	case p < 80:
		sim.crash()
	case p < 82:
		sim.gracefulRestart()
	case p < 85:
		sim.recreateEndpoint(ns, name)
	case p < 87:
		sim.lagEndpointController()
	case p < 88:
		sim.createOversizeEvent(ns)
	default:
		sim.createEvent(ns)
	}
}

// replaceSecret deletes a Secret and creates it again within one step, as kubectl replace --force
// does, while the endpoint controller is too busy to notice: new events meanwhile find the Secret
// missing and wait, and the endpoint's Ready condition never changes. What they wait for, the
// Secret, must wake them.
func (sim *simulation) replaceSecret(ns, name string) {
	sim.endpointsBusy = true
	sim.store.remove(simKey{"Secret", types.NamespacedName{Namespace: ns, Name: name}})
	for range 1 + sim.rng.IntN(3) {
		sim.createEvent(ns)
	}
	sim.store.catchUpSome(simCacheCatchUpRate)
	// Long enough for the events' other deliveries to finish, whose outcomes would wake them.
	sim.advance(time.Duration(2000+sim.rng.IntN(4000)) * time.Millisecond)
	sim.endpointsBusy = false
	sim.createSecret(ns, name)
}

// recreateEndpoint deletes an endpoint and creates it again under the same name, while its attempts
// may be in flight: the new endpoint is another one.
func (sim *simulation) recreateEndpoint(ns, name string) {
	if sim.endpointByName(ns, name) == nil {
		return
	}
	sim.deleteEndpoint(ns, name)
	sim.createEndpoint(ns, name)
}

// lagEndpointController makes the endpoint controller slow to react (its one worker busy), or quick
// again: the DocumentEvent controller must not depend on its timing.
func (sim *simulation) lagEndpointController() {
	sim.endpointLag = 0
	if sim.rng.IntN(2) == 0 {
		sim.endpointLag = time.Duration(500+sim.rng.IntN(4500)) * time.Millisecond
	}
	sim.trace("endpoint controller lag %s", sim.endpointLag)
}

// createOversizeEvent creates an event whose payload brings it close to etcd's object limit: some
// leave room for their status, some do not. None may be sent unless its status can be written.
func (sim *simulation) createOversizeEvent(ns string) {
	target := simMaxObjectBytes - 8<<10 - sim.rng.IntN(256<<10)
	sim.createEventWith(ns, func(ev *webhooksv1alpha1.DocumentEvent) {
		encoded, err := json.Marshal(ev)
		if err != nil {
			sim.t.Fatal(err)
		}
		const wrapper = `{"detail":""},`
		padding := strings.Repeat("x", max(target-len(encoded)-len(wrapper), 0))
		ev.Spec.DocumentStatus.ExtractionErrors = append(ev.Spec.DocumentStatus.ExtractionErrors,
			apiextensionsv1.JSON{Raw: []byte(`{"detail":"` + padding + `"}`)})
	})
	sim.trace("created ev-%d of about %d bytes", sim.created, target)
}

func (sim *simulation) createSecret(ns, name string) {
	k := simKey{"Secret", types.NamespacedName{Namespace: ns, Name: name}}
	if sim.store.latest(k) != nil {
		return
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Data: map[string][]byte{webhooksv1alpha1.DefaultSigningSecretKey: []byte(fmt.Sprintf("key-%d", sim.rng.Uint32()))}}
	sim.store.create(s)
}

func (sim *simulation) rotateSecret(ns, name string) {
	k := simKey{"Secret", types.NamespacedName{Namespace: ns, Name: name}}
	current := sim.store.latest(k)
	if current == nil {
		sim.createSecret(ns, name)
		return
	}
	s := current.DeepCopyObject().(*corev1.Secret)
	s.Data = map[string][]byte{webhooksv1alpha1.DefaultSigningSecretKey: []byte(fmt.Sprintf("key-%d", sim.rng.Uint32()))}
	if sim.rng.IntN(4) == 0 {
		s.Data = map[string][]byte{"other": []byte("x")} // the key goes missing
	}
	sim.store.updateSpec(s, false)
}

func (sim *simulation) endpointURL(ep *webhooksv1alpha1.WebhookEndpoint) string {
	return fmt.Sprintf("http://%s.%s.sim/%d", ep.Name, ep.Namespace, sim.rng.IntN(1000))
}

func (sim *simulation) createEndpoint(ns, name string) {
	ep := &webhooksv1alpha1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	ep.Spec.URL = sim.endpointURL(ep)
	ep.Spec.SecretRef = &webhooksv1alpha1.SecretKeyReference{Name: fmt.Sprintf("secret-%d", sim.rng.IntN(simEndpointsPerNS))}
	sim.randomizeSettings(ep)
	sim.store.create(ep)
}

func (sim *simulation) randomizeSettings(ep *webhooksv1alpha1.WebhookEndpoint) {
	ep.Spec.Timeout = &metav1.Duration{Duration: time.Duration(1+sim.rng.IntN(5)) * time.Second}
	ep.Spec.MaxInFlight = int32(1 + sim.rng.IntN(3))
	ep.Spec.Retry = &webhooksv1alpha1.RetryPolicy{
		MaxAttempts:     int32(2 + sim.rng.IntN(6)),
		InitialInterval: &metav1.Duration{Duration: time.Duration(200+sim.rng.IntN(800)) * time.Millisecond},
		MaxInterval:     &metav1.Duration{Duration: time.Duration(2+sim.rng.IntN(20)) * time.Second},
	}
	ep.Spec.CircuitBreaker = &webhooksv1alpha1.CircuitBreakerPolicy{
		FailureThreshold: int32(2 + sim.rng.IntN(4)),
		Cooldown:         &metav1.Duration{Duration: time.Duration(1+sim.rng.IntN(20)) * time.Second},
	}
	sim.randomizeRateLimit(ep)
}

// randomizeRateLimit sets, changes or removes spec.rateLimit.
func (sim *simulation) randomizeRateLimit(ep *webhooksv1alpha1.WebhookEndpoint) {
	ep.Spec.RateLimit = nil
	if sim.rng.IntN(2) == 0 {
		ep.Spec.RateLimit = &webhooksv1alpha1.RateLimit{RequestsPerSecond: int32(1 + sim.rng.IntN(4))}
		if sim.rng.IntN(2) == 0 {
			ep.Spec.RateLimit.Burst = int32(1 + sim.rng.IntN(3))
		}
	}
}

func (sim *simulation) endpointByName(ns, name string) *webhooksv1alpha1.WebhookEndpoint {
	obj := sim.store.latest(simKey{"WebhookEndpoint", types.NamespacedName{Namespace: ns, Name: name}})
	if obj == nil {
		return nil
	}
	return obj.(*webhooksv1alpha1.WebhookEndpoint)
}

func (sim *simulation) editEndpoint(ns, name string) {
	current := sim.endpointByName(ns, name)
	if current == nil {
		return
	}
	ep := current.DeepCopy()
	switch sim.rng.IntN(6) {
	case 5:
		sim.randomizeRateLimit(ep)
	case 0:
		ep.Spec.URL = sim.endpointURL(ep)
	case 1:
		ep.Spec.Suspend = !ep.Spec.Suspend
	case 2:
		ep.Spec.SecretRef = &webhooksv1alpha1.SecretKeyReference{Name: fmt.Sprintf("secret-%d", sim.rng.IntN(simEndpointsPerNS))}
	case 3:
		sim.randomizeSettings(ep)
	case 4:
		scheme := webhooksv1alpha1.SignatureScheme1Flow
		if ep.GetSignatureScheme() == scheme {
			scheme = webhooksv1alpha1.SignatureSchemeStandardWebhooks
		}
		ep.Spec.Signature = &webhooksv1alpha1.SignaturePolicy{Scheme: scheme}
	}
	sim.store.updateSpec(ep, true)
}

func (sim *simulation) deleteEndpoint(ns, name string) {
	sim.store.remove(simKey{"WebhookEndpoint", types.NamespacedName{Namespace: ns, Name: name}})
}

func (sim *simulation) createEvent(ns string) { sim.createEventWith(ns, nil) }

// createEventWith creates an event, shaped by shape (when not nil) before it is stored.
func (sim *simulation) createEventWith(ns string, shape func(*webhooksv1alpha1.DocumentEvent)) {
	sim.created++
	ev := &webhooksv1alpha1.DocumentEvent{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("ev-%d", sim.created)}}
	ev.Spec.DocumentID = fmt.Sprintf("doc-%d", sim.created)
	if sim.rng.IntN(3) == 0 {
		ev.Spec.TTLSecondsAfterFinished = ptr.To(int32(sim.rng.IntN(120)))
	}
	if sim.rng.IntN(5) == 0 {
		ev.Spec.DocumentStatus.ExtractionErrors = []apiextensionsv1.JSON{{Raw: []byte(`{"code":"E1"}`)}, {}}
	}
	if shape != nil {
		shape(ev)
	}
	sim.store.create(ev)
	sim.eventUID[ev.Spec.DocumentID] = ev.UID
	sim.eventKeyOf[ev.UID] = client.ObjectKeyFromObject(ev)
	if ev.Spec.TTLSecondsAfterFinished != nil {
		sim.ttlOf[ev.UID] = time.Duration(*ev.Spec.TTLSecondsAfterFinished) * time.Second
	}
}

func (sim *simulation) requestTest(ns, name string) {
	current := sim.endpointByName(ns, name)
	if current == nil {
		return
	}
	ep := current.DeepCopy()
	value := strconv.Itoa(sim.rng.IntN(1 << 30))
	if ep.Annotations == nil {
		ep.Annotations = map[string]string{}
	}
	ep.Annotations[webhooksv1alpha1.TestRequestedAtAnnotation] = value
	sim.testValues["whtest_"+testID(ep, value)] = value
	sim.store.updateSpec(ep, false)
}

// requestRedelivery annotates a random finished event of the namespace.
func (sim *simulation) requestRedelivery(ns string) {
	var finished []*webhooksv1alpha1.DocumentEvent
	for _, k := range sim.store.sortedKeys() {
		if k.kind != "DocumentEvent" || k.Namespace != ns {
			continue
		}
		if obj := sim.store.latest(k); obj != nil && obj.(*webhooksv1alpha1.DocumentEvent).Status.Phase.IsFinished() {
			finished = append(finished, obj.(*webhooksv1alpha1.DocumentEvent))
		}
	}
	if len(finished) == 0 {
		return
	}
	ev := finished[sim.rng.IntN(len(finished))].DeepCopy()
	if ev.Annotations == nil {
		ev.Annotations = map[string]string{}
	}
	ev.Annotations[webhooksv1alpha1.RedeliverRequestedAtAnnotation] = time.Now().Format(time.RFC3339Nano)
	if sim.rng.IntN(2) == 0 {
		ev.Annotations[webhooksv1alpha1.RedeliverScopeAnnotation] = webhooksv1alpha1.RedeliverScopeFailed
	}
	for _, d := range ev.Status.Deliveries {
		delete(sim.deliveredAt, d.DeliveryID)
		delete(sim.succeeded, d.DeliveryID)
	}
	sim.store.updateSpec(ev, false)
}

// crash ends the manager without any goodbye: its attempts in flight still reach the receivers, and
// their results are lost.
func (sim *simulation) crash() {
	sim.trace("crash")
	sim.start()
}

// gracefulRestart stops the manager as SIGTERM does: nothing new starts, attempts in flight finish and
// are recorded, then a new manager starts.
func (sim *simulation) gracefulRestart() {
	sim.trace("graceful restart")
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	mgr := sim.mgr
	mgr.spawnMu.Lock()
	mgr.stopping = true
	mgr.spawnMu.Unlock()
	go func() {
		defer close(done)
		_ = mgr.shared.Start(ctx)
	}()
	for {
		synctest.Wait()
		sim.runAttempts()
		select {
		case <-done:
			sim.start()
			return
		default:
		}
		if !sim.recv.completeNext() {
			sim.violation("graceful shutdown cannot finish: no attempt is in flight, yet the manager waits")
			return
		}
	}
}

// reconcileDue runs every reconcile that is due, in a fixed order, with the attempts each one starts.
func (sim *simulation) reconcileDue() {
	for range 1000 {
		sim.collectWakes()
		var due []simRequest
		now := time.Now()
		for r, at := range sim.queue {
			if !at.After(now) && sim.mayReconcile(r) {
				due = append(due, r)
			}
		}
		if len(due) == 0 {
			return
		}
		slices.SortFunc(due, func(a, b simRequest) int {
			if a.kind != b.kind {
				return int(a.kind) - int(b.kind)
			}
			return strings.Compare(a.key.String(), b.key.String())
		})
		for _, r := range due {
			delete(sim.queue, r)
			sim.reconcile(r)
			sim.runAttempts()
		}
	}
	sim.violation("reconciles keep requeueing at the same instant")
}

// mayReconcile tells whether a request can run now: none of the endpoint controller's while it is busy.
func (sim *simulation) mayReconcile(r simRequest) bool {
	return !sim.endpointsBusy || r.kind != reqEndpoint
}

func (sim *simulation) reconcile(r simRequest) {
	var res ctrl.Result
	var err error
	req := ctrl.Request{NamespacedName: r.key}
	defer func() { sim.trace("reconcile %d %s: %+v %v", r.kind, r.key, res, err) }()
	switch r.kind {
	case reqEvent:
		res, err = sim.mgr.events.Reconcile(context.Background(), req)
	case reqFinished:
		res, err = (&finishedEventReconciler{events: sim.mgr.events}).Reconcile(context.Background(), req)
	default:
		res, err = sim.mgr.endpoints.Reconcile(context.Background(), req)
	}
	switch {
	case err != nil && isTerminal(err):
	case err != nil:
		if apierrors.IsInvalid(err) {
			sim.violation("status write rejected by the schema: %v", err)
		}
		sim.failures[r]++
		sim.enqueue(r.kind, r.key, min(time.Duration(sim.failures[r])*50*time.Millisecond, 5*time.Second))
	case res.RequeueAfter > 0:
		delete(sim.failures, r)
		sim.enqueue(r.kind, r.key, res.RequeueAfter)
	default:
		delete(sim.failures, r)
	}
}

func isTerminal(err error) bool {
	return errors.Is(err, reconcile.TerminalError(nil))
}

// collectWakes turns the engine's wakes into reconcile requests, as the channel sources do.
func (sim *simulation) collectWakes() {
	for _, key := range sim.mgr.shared.engine.EventWakes.Take() {
		sim.enqueue(reqEvent, key, 0)
	}
	for _, key := range sim.mgr.shared.engine.EndpointWakes.Take() {
		sim.enqueue(reqEndpoint, key, 0)
	}
}

// runAttempts runs the attempts the engine started, one at a time, each until it waits on its receiver.
func (sim *simulation) runAttempts() {
	for {
		mgr := sim.mgr
		mgr.spawnMu.Lock()
		if len(mgr.spawned) == 0 {
			mgr.spawnMu.Unlock()
			return
		}
		next := mgr.spawned[0]
		mgr.spawned = mgr.spawned[1:]
		mgr.spawnMu.Unlock()
		go next()
		synctest.Wait()
	}
}

// advance moves simulated time forward by up to d, completing the attempts that end meanwhile and
// running the reconciles that fall due.
func (sim *simulation) advance(d time.Duration) {
	deadline := time.Now().Add(d)
	for {
		next := deadline
		if at, ok := sim.recv.nextFinish(); ok && at.Before(next) {
			next = at
		}
		for r, at := range sim.queue {
			if at.Before(next) && sim.mayReconcile(r) {
				next = at
			}
		}
		if at, ok := sim.mgr.timers.next(); ok && at.Before(next) {
			next = at
		}
		if wait := time.Until(next); wait > 0 {
			time.Sleep(wait)
		}
		for sim.mgr.timers.fireDue() {
			sim.runAttempts()
		}
		for sim.recv.completeDue() {
			sim.runAttempts()
		}
		sim.store.catchUpSome(simCacheCatchUpRate)
		sim.reconcileDue()
		if !time.Now().Before(deadline) {
			return
		}
	}
}

// heal removes every fault and makes only the changes a user would make to what is broken, then
// checks that everything finishes within a bound. It never touches an endpoint that is fine: a change
// would wake every event waiting on it and hide a delivery that nothing else would ever wake.
func (sim *simulation) heal() {
	sim.store.faults = false
	sim.endpointLag = 0
	for name := range sim.recv.modes {
		sim.recv.setMode(name, modeOK)
	}
	for n := range simNamespaces {
		ns := fmt.Sprintf("tenant-%d", n)
		for i := range simEndpointsPerNS {
			secret := fmt.Sprintf("secret-%d", i)
			if s := sim.store.latest(simKey{"Secret", types.NamespacedName{Namespace: ns, Name: secret}}); s == nil ||
				len(s.(*corev1.Secret).Data[webhooksv1alpha1.DefaultSigningSecretKey]) == 0 {
				sim.rotateSecretTo(ns, secret)
			}
			name := fmt.Sprintf("ep-%d", i)
			current := sim.endpointByName(ns, name)
			if current == nil {
				sim.createEndpoint(ns, name)
				continue
			}
			ep := current.DeepCopy()
			ep.Spec.Suspend = false
			if sim.blockedGen[blockedKey(ep.UID, ep.Generation)] {
				ep.Spec.URL = sim.endpointURL(ep)
			}
			if !reflect.DeepEqual(ep.Spec, current.Spec) {
				sim.store.updateSpec(ep, true)
			}
		}
		// A fresh event for every namespace sends the probes that close the circuits.
		sim.createEvent(ns)
		// A user replaces a Secret in use while the endpoint controller is busy: the events created
		// meanwhile wait for it, and only the Secret's return can wake them.
		replaced := map[string]bool{}
		for i := range simEndpointsPerNS {
			if ep := sim.endpointByName(ns, fmt.Sprintf("ep-%d", i)); ep != nil && !replaced[ep.Spec.SecretRef.Name] {
				replaced[ep.Spec.SecretRef.Name] = true
				sim.replaceSecret(ns, ep.Spec.SecretRef.Name)
			}
		}
	}
	start := time.Now()
	for time.Since(start) < simSettleBound && !sim.settled() {
		sim.store.catchUpAll()
		sim.reconcileDue()
		sim.advance(10 * time.Second)
	}
	sim.checkSettled(time.Since(start))
}

func (sim *simulation) rotateSecretTo(ns, name string) {
	k := simKey{"Secret", types.NamespacedName{Namespace: ns, Name: name}}
	if sim.store.latest(k) == nil {
		sim.createSecret(ns, name)
		return
	}
	s := sim.store.latest(k).DeepCopyObject().(*corev1.Secret)
	s.Data = map[string][]byte{webhooksv1alpha1.DefaultSigningSecretKey: []byte("healed")}
	sim.store.updateSpec(s, false)
}

// legitimateFailures are the reasons a delivery may end Failed even when the world is healthy.
var legitimateFailures = map[string]bool{
	webhooksv1alpha1.AttemptsExhaustedReason: true,
	webhooksv1alpha1.EndpointDeletedReason:   true,
	webhooksv1alpha1.EventTooLargeReason:     true,
}

func (sim *simulation) settled() bool {
	for _, k := range sim.store.sortedKeys() {
		if k.kind != "DocumentEvent" {
			continue
		}
		if obj := sim.store.latest(k); obj != nil && !obj.(*webhooksv1alpha1.DocumentEvent).Status.Phase.IsFinished() {
			return false
		}
	}
	st := sim.mgr.shared.engine.Stats()
	return st.InFlight == 0 && st.Mailbox == 0 && sim.mgr.shared.engine.OpenCircuits() == 0
}

func (sim *simulation) checkSettled(took time.Duration) {
	for _, k := range sim.store.sortedKeys() {
		obj := sim.store.latest(k)
		if obj == nil {
			continue
		}
		switch o := obj.(type) {
		case *webhooksv1alpha1.DocumentEvent:
			if !o.Status.Phase.IsFinished() {
				sim.violation("event %s still %s %s after healing: %s", o.Name, o.Status.Phase, took, deliverySummary(o))
				continue
			}
			for _, d := range o.Status.Deliveries {
				if d.Phase == webhooksv1alpha1.DeliveryFailed && !legitimateFailures[d.Reason] {
					sim.violation("event %s: delivery to %s failed with %s: %s", o.Name, d.Endpoint, d.Reason, d.LastError)
				}
			}
		case *webhooksv1alpha1.WebhookEndpoint:
			if sim.mgr.shared.engine.CircuitOpen(o.UID) {
				sim.violation("endpoint %s: circuit still open after healing", o.Name)
			}
		}
	}
	// In-memory state is bounded by the live objects.
	st := sim.mgr.shared.engine.Stats()
	if st.Mailbox != 0 || st.Busy != 0 || st.InFlight != 0 || st.Lanes != 0 {
		sim.violation("engine not idle after settling: %+v", st)
	}
	live := map[types.UID]bool{}
	referenced := map[types.NamespacedName]bool{}
	for _, k := range sim.store.sortedKeys() {
		if ep, ok := sim.store.latest(k).(*webhooksv1alpha1.WebhookEndpoint); ok && ep != nil {
			live[ep.UID] = true
			for _, name := range referencedSecrets(ep) {
				referenced[types.NamespacedName{Namespace: ep.Namespace, Name: name}] = true
			}
		}
	}
	for _, uid := range sim.mgr.shared.engine.KnownUIDs() {
		if !live[uid] {
			sim.violation("engine still holds state for endpoint uid %s, which no longer exists", uid)
		}
	}
	if st.Health > len(live) || st.Tests > len(live) {
		sim.violation("engine holds %d health and %d test entries for %d endpoints", st.Health, st.Tests, len(live))
	}
	if n := sim.mgr.shared.resolver.cachedSecrets(); n > len(referenced) {
		sim.violation("%d Secret values cached, only %d referenced", n, len(referenced))
	}
}

func deliverySummary(ev *webhooksv1alpha1.DocumentEvent) string {
	parts := make([]string, 0, len(ev.Status.Deliveries))
	for _, d := range ev.Status.Deliveries {
		parts = append(parts, fmt.Sprintf("%s=%s/%s(%d) %s", d.Endpoint, d.Phase, d.Reason, d.Attempts, d.LastError))
	}
	return strings.Join(parts, "; ")
}

// finish completes what is still in flight so that the bubble can end.
func (sim *simulation) finish() {
	sim.checkSpans()
	sim.mgr.end() // no new attempts
	sim.incarnation++
	for sim.recv.completeNext() {
		synctest.Wait()
	}
	sim.t.Logf("seed %d: %d events, %d manager starts, %d requests, %d violations, simulated %s",
		sim.seed, sim.created, sim.incarnation-1, sim.recv.total, sim.violations, time.Since(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)))
}

// receiverMode is how a simulated receiver answers.
type receiverMode int

const (
	modeOK receiverMode = iota
	modeFail
	modeThrottle
	modeHang
	modeBlocked
	modeFlaky
	modeCount
)

// simReceivers is the Sender of the simulation: every request is checked against the invariants when
// it starts, and it ends at a simulated time that the simulation's loop reaches.
type simReceivers struct {
	sim *simulation
	// retryAfter, when set, is the Retry-After of every throttled answer (otherwise random).
	retryAfter time.Duration
	mu         sync.Mutex
	modes      map[string]receiverMode // by endpoint name
	pending    []*pendingRequest
	seq        int
	total      int
}

type pendingRequest struct {
	seq      int
	finishAt time.Time
	result   delivery.Result
	done     chan delivery.Result
	onDone   func()
	// incarnation is the manager that sent it; uid and namespace its endpoint.
	incarnation int
	uid         types.UID
	namespace   string
}

func (r *simReceivers) setMode(endpoint string, m receiverMode) {
	r.mu.Lock()
	r.modes[endpoint] = m
	r.mu.Unlock()
}

// Send implements engine.Sender.
func (r *simReceivers) Send(_ context.Context, req delivery.Request) delivery.Result {
	start := time.Now()
	r.mu.Lock()
	sim := r.sim
	r.total++
	sim.trace("send %s to %s test=%t", req.ID, req.URL, req.Test)
	ep := sim.checkAttempt(req)
	name := ""
	if ep != nil {
		name = ep.Name
	}
	mode := r.modes[name]
	if mode == modeFlaky {
		mode = receiverMode(sim.rng.IntN(int(modeHang) + 1))
	}
	res := delivery.Result{Start: start}
	// Mostly quick answers, and slow ones often enough that lanes queue up behind them.
	latency := time.Duration(1+sim.rng.IntN(200)) * time.Millisecond
	if sim.rng.IntN(10) < 3 {
		latency = time.Duration(500+sim.rng.IntN(2500)) * time.Millisecond
	}
	switch mode {
	case modeOK:
		res.StatusCode, res.Success = 200, true
	case modeFail:
		res.StatusCode, res.Error = 500, "HTTP 500 Internal Server Error"
	case modeThrottle:
		res.StatusCode, res.Error = 429, "HTTP 429 Too Many Requests"
		if sim.rng.IntN(2) == 0 {
			res.StatusCode, res.Error = 503, "HTTP 503 Service Unavailable"
		}
		res.RetryAfter = time.Duration(sim.rng.IntN(30)) * time.Second
		if r.retryAfter > 0 {
			res.RetryAfter = r.retryAfter
		}
	case modeHang:
		latency = req.Timeout
		res.Error = fmt.Sprintf("timeout: no response within %s", req.Timeout)
	case modeBlocked:
		latency = time.Millisecond
		res.Blocked, res.Error = true, "destination blocked by the operator's egress policy: simulated"
	}
	res.Duration = latency
	p := &pendingRequest{seq: r.seq, finishAt: start.Add(latency), result: res, done: make(chan delivery.Result, 1),
		incarnation: sim.incarnation}
	r.seq++
	if ep != nil {
		p.uid, p.namespace = ep.UID, ep.Namespace
		learn := []func(){sim.pauseResult(ep, res)}
		if !req.Test {
			learn = append(learn, sim.circuitResult(ep, res), sim.successResult(req.ID, res))
		}
		p.onDone = func() {
			for _, f := range learn {
				f()
			}
		}
	}
	r.pending = append(r.pending, p)
	r.mu.Unlock()
	return <-p.done
}

func (r *simReceivers) nextFinish() (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) == 0 {
		return time.Time{}, false
	}
	at := r.pending[0].finishAt
	for _, p := range r.pending {
		if p.finishAt.Before(at) {
			at = p.finishAt
		}
	}
	return at, true
}

// completeDue ends the earliest request that is due, if any.
func (r *simReceivers) completeDue() bool {
	at, ok := r.nextFinish()
	if !ok || at.After(time.Now()) {
		return false
	}
	return r.completeNext()
}

// completeNext ends the earliest pending request, waiting for its time, and runs its attempt to the end.
func (r *simReceivers) completeNext() bool {
	r.mu.Lock()
	if len(r.pending) == 0 {
		r.mu.Unlock()
		return false
	}
	i := 0
	for j, p := range r.pending {
		if p.finishAt.Before(r.pending[i].finishAt) || (p.finishAt.Equal(r.pending[i].finishAt) && p.seq < r.pending[i].seq) {
			i = j
		}
	}
	p := r.pending[i]
	r.pending = slices.Delete(r.pending, i, i+1)
	r.mu.Unlock()
	if wait := time.Until(p.finishAt); wait > 0 {
		time.Sleep(wait)
	}
	if p.onDone != nil {
		p.onDone()
	}
	p.done <- p.result
	synctest.Wait()
	return true
}

func blockedKey(uid types.UID, generation int64) string {
	return fmt.Sprintf("%s/%d", uid, generation)
}

// checkAttempt checks the invariants that hold when an attempt starts, against the world as it is.
// It returns the endpoint the request is for.
func (sim *simulation) checkAttempt(req delivery.Request) *webhooksv1alpha1.WebhookEndpoint {
	host := strings.TrimPrefix(req.URL, "http://")
	host = host[:strings.Index(host, "/")]
	parts := strings.SplitN(host, ".", 3)
	ep := sim.endpointByName(parts[1], parts[0])
	switch {
	case ep == nil:
		sim.violation("attempt %s to deleted endpoint %s/%s", req.ID, parts[1], parts[0])
		return nil
	case ep.Spec.URL != req.URL:
		sim.violation("attempt %s uses the old URL of endpoint %s", req.ID, ep.Name)
	case ep.Spec.Suspend:
		sim.violation("attempt %s to suspended endpoint %s", req.ID, ep.Name)
	}
	sim.checkRate(ep, req.ID)
	sim.checkPause(ep, req.ID)
	sim.checkInFlight(ep, req.ID, sim.recv.pending)
	if secret := sim.store.latest(simKey{"Secret", types.NamespacedName{Namespace: ep.Namespace, Name: ep.Spec.SecretRef.Name}}); secret == nil {
		sim.violation("attempt %s to endpoint %s whose Secret does not exist", req.ID, ep.Name)
	} else if want := secret.(*corev1.Secret).Data[ep.GetSecretKey()]; string(req.Secret) != string(want) {
		sim.violation("attempt %s to endpoint %s signed with a stale or wrong key", req.ID, ep.Name)
	}
	if req.Test {
		sim.checkTest(ep, req)
		return ep
	}
	// What a refused dial taught one manager survives a restart only through the Ready condition, which
	// a more pressing reason (a missing Secret) can hide: a new manager may dial once more, and be
	// refused again by its own policy, so nothing reaches the receiver.
	if sim.blockedGen[fmt.Sprintf("%s#%d", blockedKey(ep.UID, ep.Generation), sim.incarnation)] {
		sim.violation("attempt %s to endpoint %s whose destination was refused, before its URL changed", req.ID, ep.Name)
	}
	var doc struct {
		DocumentID string `json:"documentId"`
	}
	if err := json.Unmarshal(req.Body, &doc); err != nil {
		sim.violation("attempt %s: body is not JSON: %v", req.ID, err)
		return ep
	}
	evUID := sim.eventUID[doc.DocumentID]
	sim.sentTo[evUID]++
	sim.checkNotSentAfterSuccess(req.ID, ep)
	if want := routing.DeliveryID(evUID, ep.UID); req.ID != want {
		sim.violation("attempt for %s to %s carries id %s, want %s", doc.DocumentID, ep.Name, req.ID, want)
	}
	if key, ok := sim.eventKeyOf[evUID]; ok {
		if obj := sim.store.latest(simKey{"DocumentEvent", key}); obj != nil {
			// A redelivery starts over; its reset is written after its first attempts are submitted.
			ev := obj.(*webhooksv1alpha1.DocumentEvent)
			if d := deliveryByID(ev, req.ID); d != nil && !redeliveryRequested(ev) && d.Attempts >= ep.GetMaxAttempts() {
				sim.violation("attempt %s starts with %d attempts recorded; maxAttempts is %d", req.ID, d.Attempts, ep.GetMaxAttempts())
			}
		}
	}
	if at, ok := sim.deliveredAt[req.ID]; ok {
		sim.violation("delivery %s (%s to %s) recorded Delivered at %s is attempted again", req.ID, doc.DocumentID, ep.Name, at.Format("15:04:05.000"))
	}
	c := sim.circuits[ep.UID]
	if c == nil {
		c = &circuitModel{failures: ep.Status.ConsecutiveFailures, open: ep.Status.ConsecutiveFailures >= ep.GetFailureThreshold()}
		sim.circuits[ep.UID] = c
	}
	if c.open {
		// The cool-down in force is the endpoint's current one: an edit takes effect at once.
		if openUntil := c.openedAt.Add(ep.GetCooldown()); c.probeInFlight || time.Now().Before(openUntil) {
			sim.violation("attempt %s to endpoint %s while its circuit is open (probe in flight: %t, open until %s)",
				req.ID, ep.Name, c.probeInFlight, openUntil.Format("15:04:05.000"))
		}
		c.probeInFlight = true
	}
	return ep
}

// circuitResult returns what the circuit model learns when the attempt ends.
// Only what the running manager learns counts: the result of an attempt made by a manager that has
// since crashed never reaches the new one.
func (sim *simulation) circuitResult(ep *webhooksv1alpha1.WebhookEndpoint, res delivery.Result) func() {
	uid, gen, threshold := ep.UID, ep.Generation, ep.GetFailureThreshold()
	wasProbe := sim.circuits[uid] != nil && sim.circuits[uid].open
	incarnation := sim.incarnation
	return func() {
		c := sim.circuits[uid]
		if c == nil || incarnation != sim.incarnation {
			return
		}
		if wasProbe {
			c.probeInFlight = false
		}
		switch {
		case res.Blocked:
			sim.blockedGen[blockedKey(uid, gen)] = true
			sim.blockedGen[fmt.Sprintf("%s#%d", blockedKey(uid, gen), incarnation)] = true
		case res.Success:
			*c = circuitModel{}
		default:
			c.failures++
			if (c.open && wasProbe) || (!c.open && c.failures >= threshold) {
				c.open, c.openedAt = true, time.Now()
			}
		}
	}
}

func (sim *simulation) checkTest(ep *webhooksv1alpha1.WebhookEndpoint, req delivery.Request) {
	if _, ok := sim.testValues[req.ID]; !ok {
		sim.violation("test webhook %s to %s was never requested", req.ID, ep.Name)
	}
	key := fmt.Sprintf("%s#%d", req.ID, sim.incarnation)
	sim.testsSent[key]++
	if sim.testsSent[key] > 1 {
		sim.violation("test webhook %s sent %d times to %s by one manager", req.ID, sim.testsSent[key], ep.Name)
	}
}
