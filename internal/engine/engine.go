package engine

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/internal/tracing"
)

// Sender makes one HTTP attempt; *delivery.Sender implements it.
type Sender interface {
	Send(ctx context.Context, r delivery.Request) delivery.Result
}

// tlsPools is implemented by a Sender that keeps a connection pool per endpoint (*delivery.Sender).
type tlsPools interface {
	ForgetTLS(owner string)
}

// Readiness is whether an endpoint can take an attempt now, and why not.
type Readiness struct {
	Ready   bool
	Reason  string
	Message string
}

// Endpoint is an endpoint as it is at the moment of the lookup, with its Secrets resolved.
type Endpoint struct {
	Key        types.NamespacedName
	UID        types.UID
	Generation int64
	// Readiness is the verdict of the controller's policy chain on the spec and Secrets; the engine adds
	// its own verdicts (a destination refused at dial time, the circuit) on top.
	Readiness Readiness
	// Request is the template of every attempt: URL, timeout, scheme, keys and TLS material. The engine
	// fills in the id, the body and the test flag.
	Request          delivery.Request
	MaxInFlight      int
	MaxAttempts      int32
	FailureThreshold int32
	Cooldown         time.Duration
	// ConsecutiveFailures is the durable copy of the failure count (status.consecutiveFailures); it seeds
	// the circuit the first time the engine sees the endpoint, so an open circuit survives a restart.
	ConsecutiveFailures int32
	// DestinationBlocked is the durable copy of a refused dial (the Ready condition says so for the
	// current generation); it seeds the block the first time the engine sees the endpoint.
	DestinationBlocked string
	// AllowPrivate tells that the endpoint's namespace is allowed private egress; a refused dial is
	// lifted when it changes.
	AllowPrivate bool

	// RateLimit bounds the rate at which the endpoint's attempts start; MaxPause caps how long a
	// receiver's Retry-After pauses the whole endpoint (spec.retry.maxInterval, which caps the
	// delivery's own retry too).
	RateLimit RateLimit
	MaxPause  time.Duration
	// RetryAfterUntil is the durable copy of the receiver's Retry-After pause (status.retryAfterUntil);
	// it seeds the pause the first time the engine sees the endpoint, so a restart honours it.
	RetryAfterUntil time.Time
}

// Endpoints looks an endpoint up as it is now. found is false when it does not exist; an error means the
// lookup could not be made (a transient API failure).
type Endpoints interface {
	Lookup(ctx context.Context, key types.NamespacedName) (ep Endpoint, found bool, err error)
}

// Attempt asks for one attempt of one delivery.
type Attempt struct {
	Event    types.NamespacedName
	Endpoint types.NamespacedName
	// EndpointUID is the endpoint the delivery was planned for: an endpoint recreated under the same name
	// is another endpoint, and the attempt ends as EndpointGone.
	EndpointUID types.UID
	DeliveryID  string
	// MaxInFlight is the endpoint's bound as the caller saw it; the lookup at start refreshes it.
	MaxInFlight int
	// Attempts is how many attempts the delivery has recorded: none is admitted once the endpoint's
	// current maxAttempts is reached (it may have been lowered while this one waited).
	Attempts int32
	// Body returns the payload. It is called once, when the attempt is admitted, so that the many
	// reconciles that only record results never encode.
	Body func() ([]byte, error)
	// Trace is the attempt's trace context, sent to the receiver and returned in the Outcome.
	Trace tracing.Attempt

	testValue string
	// rate is the endpoint's rate limit the attempt was let out of its lane under, and rateKnown whether
	// one was known then: an attempt that starts under another limit is charged again.
	rate      RateLimit
	rateKnown bool
}

// OutcomeKind tells how an attempt ended.
type OutcomeKind int

const (
	// Sent means an HTTP attempt was made; Result holds it (Result.Blocked: the egress policy refused
	// the dial, which the circuit does not count as the receiver's failure).
	Sent OutcomeKind = iota + 1
	// Held means the endpoint could not take the attempt when it was to start; Readiness says why and
	// Wait, when set, how long until it may (an open circuit). No attempt is counted.
	Held
	// EndpointGone means the endpoint was deleted or recreated before the attempt started.
	EndpointGone
	// Unencodable means the payload cannot be encoded; the spec is immutable, so it never will be.
	Unencodable
)

// Outcome is how one attempt ended. It stays in its event's mailbox until acknowledged.
type Outcome struct {
	DeliveryID string
	Kind       OutcomeKind
	Result     delivery.Result
	Readiness  Readiness
	Wait       time.Duration
	// Circuit is what a Sent attempt did to the endpoint's circuit.
	Circuit CircuitChange
	// Trace is the attempt's trace context, as submitted.
	Trace tracing.Attempt
}

// Config configures an Engine.
type Config struct {
	Sender    Sender
	Endpoints Endpoints
	// Now is the time source. The waits for a rate limit or a Retry-After pause are timed with
	// AfterFunc, so it must be AfterFunc's clock: time.Now with the default, also inside a synctest
	// bubble.
	Now func() time.Time
	// MaxInFlight bounds the attempts in flight across all endpoints.
	MaxInFlight int
	// MaxInFlightPerNamespace bounds one namespace's share of MaxInFlight, so that a few tenants with
	// hanging receivers cannot take the whole global bound.
	MaxInFlightPerNamespace int
	// Context is passed to the Sender; nil means context.Background(). Attempts are not cancelled on
	// shutdown: an attempt in flight finishes (within its timeout) and is recorded rather than being cut
	// off and sent again later.
	Context context.Context
	// Go starts an attempt; nil means a new goroutine. The simulation runs attempts one at a time through
	// it, so that a seed replays exactly.
	Go func(attempt func())
	// AfterFunc runs f once d has passed; nil means time.AfterFunc. The engine's only timers (the
	// dispatch of a lane held back by its rate limit or a Retry-After pause) go through it, so that the
	// simulation fires them from its own loop and a seed replays exactly.
	AfterFunc func(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc; *time.Timer implements it.
type Timer interface {
	Stop() bool
}

// Engine is the delivery engine. Its methods are safe for concurrent use.
type Engine struct {
	sender          Sender
	endpoints       Endpoints
	now             func() time.Time
	ctx             context.Context
	goAttempt       func(func())
	afterFunc       func(time.Duration, func()) Timer
	maxInFlight     int
	maxPerNamespace int

	// EventWakes holds the events that have outcomes to record.
	EventWakes *Wakes
	// EndpointWakes holds the endpoints whose summary, block or test result changed.
	EndpointWakes *Wakes

	mu           sync.Mutex
	stopping     bool
	inFlight     int
	perNamespace map[string]int
	lanes        map[types.UID]*lane
	// pending lists, round-robin, the lanes that have queued attempts.
	pending []*lane
	busy    map[string]struct{}
	mailbox map[types.NamespacedName][]Outcome
	health  map[types.UID]*health
	uidOf   map[types.NamespacedName]types.UID
	tests   map[types.UID]*testRun
	running sync.WaitGroup

	// throttles holds each endpoint's rate limit and Retry-After pause once it has been looked up.
	throttles map[types.UID]*throttle
}

type lane struct {
	uid       types.UID
	key       types.NamespacedName
	limit     int
	running   int
	queue     []Attempt
	isPending bool
	// waitingSince is when the endpoint's throttle started to hold the next attempt back, and
	// waitingFor why, for the metric of the time waited.
	waitingSince time.Time
	waitingFor   string
}

// New returns an Engine.
func New(cfg Config) *Engine {
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 1
	}
	if cfg.MaxInFlightPerNamespace <= 0 || cfg.MaxInFlightPerNamespace > cfg.MaxInFlight {
		cfg.MaxInFlightPerNamespace = cfg.MaxInFlight
	}
	if cfg.Context == nil {
		cfg.Context = context.Background()
	}
	if cfg.Go == nil {
		cfg.Go = func(attempt func()) { go attempt() }
	}
	if cfg.AfterFunc == nil {
		cfg.AfterFunc = func(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
	}
	return &Engine{
		sender:          cfg.Sender,
		endpoints:       cfg.Endpoints,
		now:             cfg.Now,
		ctx:             cfg.Context,
		goAttempt:       cfg.Go,
		afterFunc:       cfg.AfterFunc,
		maxInFlight:     cfg.MaxInFlight,
		maxPerNamespace: cfg.MaxInFlightPerNamespace,
		EventWakes:      newWakes(),
		EndpointWakes:   newWakes(),
		perNamespace:    map[string]int{},
		lanes:           map[types.UID]*lane{},
		busy:            map[string]struct{}{},
		mailbox:         map[types.NamespacedName][]Outcome{},
		health:          map[types.UID]*health{},
		throttles:       map[types.UID]*throttle{},
		uidOf:           map[types.NamespacedName]types.UID{},
		tests:           map[types.UID]*testRun{},
	}
}

// Submit queues an attempt on its endpoint's lane. It returns false when the delivery is already
// queued, running or waiting to be recorded, or when the engine is stopping.
func (e *Engine) Submit(a Attempt) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopping {
		return false
	}
	if _, ok := e.busy[a.DeliveryID]; ok {
		return false
	}
	e.busy[a.DeliveryID] = struct{}{}
	e.enqueueLocked(a)
	return true
}

func (e *Engine) enqueueLocked(a Attempt) {
	l := e.lanes[a.EndpointUID]
	if l == nil {
		l = &lane{uid: a.EndpointUID, key: a.Endpoint, limit: max(a.MaxInFlight, 1)}
		e.lanes[a.EndpointUID] = l
	}
	l.queue = append(l.queue, a)
	if !l.isPending {
		l.isPending = true
		e.pending = append(e.pending, l)
	}
	e.dispatchLocked()
}

// dispatchLocked starts queued attempts while the bounds allow, one per lane per round so that lanes
// share the global bound fairly.
func (e *Engine) dispatchLocked() {
	for !e.stopping && len(e.pending) > 0 && e.inFlight < e.maxInFlight {
		started := false
		for n := len(e.pending); n > 0 && e.inFlight < e.maxInFlight; n-- {
			l := e.pending[0]
			e.pending = e.pending[1:]
			if len(l.queue) == 0 {
				l.isPending = false
				e.dropIdleLaneLocked(l)
				continue
			}
			if l.running >= l.limit || e.perNamespace[l.key.Namespace] >= e.maxPerNamespace || !e.mayStartLocked(l) {
				e.pending = append(e.pending, l)
				continue
			}
			a := l.queue[0]
			if t, known := e.throttles[l.uid]; known {
				a.rate, a.rateKnown = t.limit, true
			}
			l.queue[0] = Attempt{}
			l.queue = l.queue[1:]
			l.running++
			e.inFlight++
			e.perNamespace[l.key.Namespace]++
			e.running.Add(1)
			e.goAttempt(func() { e.run(l, a) })
			started = true
			if len(l.queue) > 0 {
				e.pending = append(e.pending, l)
			} else {
				l.isPending = false
			}
		}
		if !started {
			return
		}
	}
}

// requeueLocked puts an attempt that was let out of its lane but may not start after all back at the
// head of the lane: it ends in no Outcome and counts as nothing.
// The lane cannot have been released meanwhile: it is only while nothing of it runs.
func (e *Engine) requeueLocked(l *lane, a Attempt) {
	l.queue = slices.Insert(l.queue, 0, a)
	if !l.isPending {
		l.isPending = true
		e.pending = append(e.pending, l)
	}
}

// dropLocked forgets an attempt that was never admitted.
func (e *Engine) dropLocked(uid types.UID, a Attempt) {
	if a.testValue != "" {
		delete(e.tests, uid)
	} else {
		delete(e.busy, a.DeliveryID)
	}
}

func (e *Engine) dropIdleLaneLocked(l *lane) {
	if l.running == 0 && len(l.queue) == 0 && !l.isPending && e.lanes[l.uid] == l {
		delete(e.lanes, l.uid)
	}
}

func (e *Engine) run(l *lane, a Attempt) {
	defer e.running.Done()
	out, requeue := e.attempt(l, a)

	e.mu.Lock()
	l.running--
	e.inFlight--
	if e.perNamespace[l.key.Namespace]--; e.perNamespace[l.key.Namespace] <= 0 {
		delete(e.perNamespace, l.key.Namespace)
	}
	switch {
	case requeue && e.stopping:
		// Never admitted: the next leader makes it, as it does the attempts Stop dropped.
		e.dropLocked(l.uid, a)
	case requeue:
		e.requeueLocked(l, a)
	case a.testValue != "":
		e.finishTestLocked(l.uid, a.testValue, out)
	default:
		e.mailbox[a.Event] = append(e.mailbox[a.Event], out)
	}
	e.dropIdleLaneLocked(l)
	e.dispatchLocked()
	e.mu.Unlock()

	if requeue {
		return
	}
	if a.testValue != "" {
		e.EndpointWakes.add(a.Endpoint)
	} else {
		e.EventWakes.add(a.Event)
	}
}

// lookupRetry is how soon a delivery whose endpoint could not be looked up is tried again.
const lookupRetry = time.Second

// attempt admits the attempt against the endpoint as it is now and, when admitted, sends it. requeue
// tells that the endpoint's current bounds (lane, rate limit, Retry-After pause) do not let it start
// yet: it goes back to its lane, with no Outcome.
func (e *Engine) attempt(l *lane, a Attempt) (out Outcome, requeue bool) {
	out = Outcome{DeliveryID: a.DeliveryID, Trace: a.Trace}
	ep, found, err := e.endpoints.Lookup(e.ctx, a.Endpoint)
	switch {
	case err != nil:
		out.Kind, out.Wait = Held, lookupRetry
		out.Readiness = Readiness{Reason: webhooksv1alpha1.EndpointNotReadyReason, Message: fmt.Sprintf("cannot read the endpoint: %v", err)}
		return out, false
	case !found || ep.UID != a.EndpointUID:
		out.Kind = EndpointGone
		return out, false
	}
	e.observe(l, ep)
	test := a.testValue != ""

	rd := ep.Readiness
	if rd.Ready {
		rd = e.blockedReadiness(ep)
	}
	if !rd.Ready {
		out.Kind, out.Readiness = Held, rd
		return out, false
	}
	if !test && ep.MaxAttempts > 0 && a.Attempts >= ep.MaxAttempts {
		out.Kind = Held
		out.Readiness = Readiness{Reason: webhooksv1alpha1.AttemptsExhaustedReason,
			Message: fmt.Sprintf("%s made; spec.retry.maxAttempts is now %d", delivery.Count(a.Attempts, "attempt"), ep.MaxAttempts)}
		return out, false
	}
	body, err := a.Body()
	if err != nil {
		out.Kind = Unencodable
		out.Readiness = Readiness{Reason: webhooksv1alpha1.InvalidPayloadReason, Message: err.Error()}
		return out, false
	}
	if !e.mayStartNow(l, a, ep) {
		return out, true
	}
	// A test is a diagnosis: it goes out even while the circuit is open, and does not move it.
	probe := false
	if !test {
		var ok, current bool
		var wait time.Duration
		ok, wait, probe, current = e.admit(ep)
		if !current {
			out.Kind = EndpointGone
			return out, false
		}
		if !ok {
			out.Kind, out.Wait = Held, wait
			out.Readiness = e.circuitReadiness(ep)
			return out, false
		}
	}

	req := ep.Request
	req.ID, req.Body, req.Test = a.DeliveryID, body, test
	req.TraceParent, req.TraceState = a.Trace.TraceParent, a.Trace.TraceState
	res := e.sender.Send(e.ctx, req)
	out.Kind, out.Result = Sent, res
	e.pauseForRetryAfter(ep, res)
	if !test {
		out.Circuit = e.record(ep, a.Event.Name, res, probe)
	}
	return out, false
}

// observe notes the endpoint's current UID, releasing the state of an earlier endpoint of the same
// name, and refreshes the lane's bound and rate limit.
func (e *Engine) observe(l *lane, ep Endpoint) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.observeLocked(ep.Key, ep.UID)
	l.limit = max(ep.MaxInFlight, 1)
	if e.learnRateLimitLocked(ep) {
		e.dispatchLocked()
	}
}

// mayStartNow admits the attempt against the endpoint's bounds as the lookup at its start tells them.
// The lane let it out under the bounds it knew then; an edit seen only now (a lower maxInFlight, a
// rate limit added or tightened) or a Retry-After pause that began meanwhile applies to it too.
func (e *Engine) mayStartNow(l *lane, a Attempt, ep Endpoint) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if l.running > l.limit {
		return false
	}
	t, known := e.throttles[ep.UID]
	if !known {
		return true
	}
	now := e.now()
	if now.Before(t.pausedUntil) {
		return false
	}
	if a.rateKnown && a.rate == t.limit {
		return true // charged when it left the lane
	}
	// Let out before the limit in force was known: charged now, under it.
	return t.bucket == nil || t.bucket.AllowN(now, 1)
}

// ObserveEndpoint tells the engine which UID the endpoint of that name has now: the state of a deleted
// endpoint that was recreated under the same name is released.
func (e *Engine) ObserveEndpoint(key types.NamespacedName, uid types.UID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.observeLocked(key, uid)
}

func (e *Engine) observeLocked(key types.NamespacedName, uid types.UID) {
	if old, ok := e.uidOf[key]; ok && old != uid {
		e.forgetUIDLocked(old)
	}
	e.uidOf[key] = uid
}

// ForgetEndpoint releases the state of a deleted endpoint: its circuit and summary, its test runs and
// its TLS connection pool. Its lane drains by itself: queued attempts end as EndpointGone.
func (e *Engine) ForgetEndpoint(key types.NamespacedName) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if uid, ok := e.uidOf[key]; ok {
		e.forgetUIDLocked(uid)
		delete(e.uidOf, key)
	}
}

func (e *Engine) forgetUIDLocked(uid types.UID) {
	delete(e.health, uid)
	delete(e.tests, uid)
	if t, ok := e.throttles[uid]; ok {
		t.stopWake()
		delete(e.throttles, uid)
	}
	if pools, ok := e.sender.(tlsPools); ok {
		pools.ForgetTLS(string(uid))
	}
}

// Busy reports whether the delivery is queued, running, or finished but not yet acknowledged.
func (e *Engine) Busy(deliveryID string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.busy[deliveryID]
	return ok
}

// Outcomes returns the event's outcomes that wait to be recorded.
func (e *Engine) Outcomes(event types.NamespacedName) []Outcome {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Outcome(nil), e.mailbox[event]...)
}

// Ack forgets outcomes once they are durably recorded, which frees their deliveries for new attempts.
func (e *Engine) Ack(event types.NamespacedName, recorded []Outcome) {
	if len(recorded) == 0 {
		return
	}
	ids := make(map[string]bool, len(recorded))
	for _, o := range recorded {
		ids[o.DeliveryID] = true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	kept := e.mailbox[event][:0]
	for _, o := range e.mailbox[event] {
		if ids[o.DeliveryID] {
			delete(e.busy, o.DeliveryID)
		} else {
			kept = append(kept, o)
		}
	}
	if len(kept) == 0 {
		delete(e.mailbox, event)
	} else {
		e.mailbox[event] = kept
	}
}

// Discard forgets the outcomes of an event that is gone or finished: there is nothing left to record.
func (e *Engine) Discard(event types.NamespacedName) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, o := range e.mailbox[event] {
		delete(e.busy, o.DeliveryID)
	}
	delete(e.mailbox, event)
}

// Stop refuses new attempts, drops the queued ones (they were never admitted, so the next leader makes
// them), and waits for the running ones to finish. It returns the events whose outcomes wait to be
// recorded.
func (e *Engine) Stop() []types.NamespacedName {
	e.mu.Lock()
	e.stopping = true
	for _, l := range e.lanes {
		for _, a := range l.queue {
			e.dropLocked(l.uid, a)
		}
		l.queue = nil
	}
	e.pending = nil
	for _, t := range e.throttles {
		t.stopWake()
	}
	e.mu.Unlock()

	e.running.Wait()

	e.mu.Lock()
	defer e.mu.Unlock()
	events := make([]types.NamespacedName, 0, len(e.mailbox))
	for key := range e.mailbox {
		events = append(events, key)
	}
	slices.SortFunc(events, compareKeys)
	return events
}

// Stats counts the engine's in-memory entries; each is bounded by live objects and work in flight.
type Stats struct {
	Lanes, Health, Throttles, Tests, Mailbox, Busy, InFlight, Endpoints int
}

// Stats returns the current counts.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return Stats{
		Lanes: len(e.lanes), Health: len(e.health), Throttles: len(e.throttles), Tests: len(e.tests), Mailbox: len(e.mailbox),
		Busy: len(e.busy), InFlight: e.inFlight, Endpoints: len(e.uidOf),
	}
}

// KnownUIDs returns the endpoint UIDs the engine holds any state for: a name, a lane, health, a
// throttle or a test run.
func (e *Engine) KnownUIDs() []types.UID {
	e.mu.Lock()
	defer e.mu.Unlock()
	seen := map[types.UID]bool{}
	for _, uid := range e.uidOf {
		seen[uid] = true
	}
	for uid := range e.lanes {
		seen[uid] = true
	}
	for uid := range e.health {
		seen[uid] = true
	}
	for uid := range e.throttles {
		seen[uid] = true
	}
	for uid := range e.tests {
		seen[uid] = true
	}
	out := make([]types.UID, 0, len(seen))
	for uid := range seen {
		out = append(out, uid)
	}
	slices.Sort(out)
	return out
}

func compareKeys(a, b types.NamespacedName) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}
