package controller

import (
	"context"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/internal/metrics"
)

// dispatcher runs delivery attempts off the reconcile workers, so a slow endpoint never holds a worker
// for its timeout. Each endpoint has a lane that runs at most its spec.maxInFlight attempts at once and
// queues the rest; a global bound (--max-in-flight) caps the attempts of all lanes together. A hanging
// endpoint therefore holds at most its own maxInFlight slots and delays nobody else.
//
// Results wait here until the DocumentEvent reconciler has recorded them in status and acknowledged
// them. Until then the delivery counts as busy, so it is never attempted twice at once. Nothing here is
// durable: after a crash, attempts that were in flight are made again with the same X-Webhook-Id.
type dispatcher struct {
	sender Sender
	health *endpointHealth
	now    func() time.Time
	global chan struct{}
	// notify wakes the DocumentEvent controller when an attempt of the event finished.
	notify chan event.TypedGenericEvent[*webhooksv1alpha1.DocumentEvent]
	// onShutdown records the results that completed while the manager was stopping.
	onShutdown func(ctx context.Context, events []types.NamespacedName)

	mu       sync.Mutex
	stopping bool
	lanes    map[types.NamespacedName]*lane
	busy     map[string]struct{}
	done     map[types.NamespacedName][]finishedAttempt
	running  sync.WaitGroup
}

type lane struct {
	running int
	queue   []job
}

// job is one attempt of one event to one endpoint.
type job struct {
	event      types.NamespacedName
	endpoint   *webhooksv1alpha1.WebhookEndpoint
	deliveryID string
	request    delivery.Request
}

// finishedAttempt is a result waiting to be recorded.
type finishedAttempt struct {
	deliveryID string
	result     delivery.Result
	circuit    circuitChange
}

func newDispatcher(sender Sender, health *endpointHealth, maxInFlight int, now func() time.Time) *dispatcher {
	return &dispatcher{
		sender: sender,
		health: health,
		now:    now,
		global: make(chan struct{}, maxInFlight),
		notify: make(chan event.TypedGenericEvent[*webhooksv1alpha1.DocumentEvent], 4096),
		lanes:  map[types.NamespacedName]*lane{},
		busy:   map[string]struct{}{},
		done:   map[types.NamespacedName][]finishedAttempt{},
	}
}

// isBusy reports whether the delivery is queued, running, or finished but not yet recorded.
func (d *dispatcher) isBusy(deliveryID string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.busy[deliveryID]
	return ok
}

// submit queues an attempt on its endpoint's lane. It returns false while the manager is stopping.
func (d *dispatcher) submit(j job) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopping {
		return false
	}
	if _, ok := d.busy[j.deliveryID]; ok {
		return true
	}
	d.busy[j.deliveryID] = struct{}{}
	key := types.NamespacedName{Namespace: j.endpoint.Namespace, Name: j.endpoint.Name}
	l := d.lanes[key]
	if l == nil {
		l = &lane{}
		d.lanes[key] = l
	}
	if l.running < j.endpoint.GetMaxInFlight() {
		d.startLocked(l, j)
	} else {
		l.queue = append(l.queue, j)
	}
	return true
}

func (d *dispatcher) startLocked(l *lane, j job) {
	l.running++
	d.running.Add(1)
	go d.run(l, j)
}

func (d *dispatcher) run(l *lane, j job) {
	defer d.running.Done()
	d.global <- struct{}{}
	// Not the manager's context: on shutdown an attempt in flight finishes (within its timeout) and
	// is recorded, rather than being cut off and sent again later.
	res := d.sender.Send(context.Background(), j.request)
	<-d.global

	metrics.RecordAttempt(attemptResult(res), res.StatusCode, res.Duration.Seconds())
	change := circuitUnchanged
	if res.Blocked {
		// Our own policy refused the connection: the receiver did not fail, so the breaker is not told.
		d.health.block(j.endpoint, res.Error)
	} else {
		change = d.health.record(j.endpoint, webhooksv1alpha1.LastDelivery{
			Event:      j.event.Name,
			Time:       metav1.NewTime(res.Start),
			StatusCode: int32(res.StatusCode),
			DurationMs: res.Duration.Milliseconds(),
			Success:    res.Success,
		}, d.now())
	}

	d.mu.Lock()
	d.done[j.event] = append(d.done[j.event], finishedAttempt{deliveryID: j.deliveryID, result: res, circuit: change})
	l.running--
	if len(l.queue) > 0 && !d.stopping {
		next := l.queue[0]
		l.queue = l.queue[1:]
		d.startLocked(l, next)
	}
	stopping := d.stopping
	d.mu.Unlock()

	if !stopping {
		obj := &webhooksv1alpha1.DocumentEvent{}
		obj.Namespace, obj.Name = j.event.Namespace, j.event.Name
		d.notify <- event.TypedGenericEvent[*webhooksv1alpha1.DocumentEvent]{Object: obj}
	}
}

func attemptResult(res delivery.Result) string {
	switch {
	case res.Blocked:
		return metrics.ResultBlocked
	case res.Success:
		return metrics.ResultSuccess
	}
	return metrics.ResultFailure
}

// finished returns the results of the event that are waiting to be recorded.
func (d *dispatcher) finished(eventKey types.NamespacedName) []finishedAttempt {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]finishedAttempt(nil), d.done[eventKey]...)
}

// ack forgets results once they are recorded in status, which frees their deliveries for new attempts.
func (d *dispatcher) ack(eventKey types.NamespacedName, recorded []finishedAttempt) {
	if len(recorded) == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	ids := make(map[string]bool, len(recorded))
	for _, r := range recorded {
		ids[r.deliveryID] = true
		delete(d.busy, r.deliveryID)
	}
	kept := d.done[eventKey][:0]
	for _, r := range d.done[eventKey] {
		if !ids[r.deliveryID] {
			kept = append(kept, r)
		}
	}
	if len(kept) == 0 {
		delete(d.done, eventKey)
	} else {
		d.done[eventKey] = kept
	}
}

// discard forgets the results of an event that is gone or already finished.
func (d *dispatcher) discard(eventKey types.NamespacedName) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range d.done[eventKey] {
		delete(d.busy, r.deliveryID)
	}
	delete(d.done, eventKey)
}

// Start implements manager.Runnable: it waits for the manager to stop, then drops the attempts that
// never started (they were not sent; the next leader sends them), lets the running ones finish, and
// records their results.
func (d *dispatcher) Start(ctx context.Context) error {
	<-ctx.Done()
	d.mu.Lock()
	d.stopping = true
	for _, l := range d.lanes {
		for _, j := range l.queue {
			delete(d.busy, j.deliveryID)
		}
		l.queue = nil
	}
	d.mu.Unlock()

	d.running.Wait()

	d.mu.Lock()
	events := make([]types.NamespacedName, 0, len(d.done))
	for key := range d.done {
		events = append(events, key)
	}
	d.mu.Unlock()
	if len(events) > 0 && d.onShutdown != nil {
		recordCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		d.onShutdown(recordCtx, events)
	}
	return nil
}

// NeedLeaderElection makes only the leader deliver.
func (d *dispatcher) NeedLeaderElection() bool { return true }
