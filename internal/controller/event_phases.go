package controller

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/internal/engine"
	"github.com/1flow/webhook-operator/internal/metrics"
	"github.com/1flow/webhook-operator/internal/payload"
	"github.com/1flow/webhook-operator/internal/tracing"
)

// eventScope is what the phases of one DocumentEvent reconcile share.
type eventScope struct {
	ev, base *webhooksv1alpha1.DocumentEvent
	now      time.Time
	log      logr.Logger
	// trace is the trace of the event's deliveries; traceErr tells why its annotations were ignored.
	trace    tracing.Trace
	traceErr error
	// reader lists endpoints; nil means the reconciler's cached client.
	reader client.Reader

	endpoints     []webhooksv1alpha1.WebhookEndpoint
	endpointNamed map[string]*webhooksv1alpha1.WebhookEndpoint
	// outcomes are the engine's outcomes for this event; recorded are those this reconcile took care
	// of, acknowledged once the status patch succeeded.
	outcomes, recorded []engine.Outcome
	// afterPatch holds the Events and metrics of what this reconcile recorded: they are emitted only
	// once the patch that records them succeeded, so a retried reconcile never emits them twice.
	afterPatch []func()
	// learned is set when the status holds something a restart would need; held when a delivery was
	// ended or held back without an attempt.
	learned, held bool
	// tooLarge is set when the event was refused for leaving too little room for its status: its Event
	// is due even if the API server refuses that status too.
	tooLarge bool
	requeue  time.Duration
}

func newEventScope(log logr.Logger, ev *webhooksv1alpha1.DocumentEvent, outcomes []engine.Outcome, now time.Time) *eventScope {
	s := &eventScope{ev: ev, base: ev.DeepCopy(), now: now, log: log, outcomes: outcomes}
	s.trace, s.traceErr = tracing.EventTrace(string(ev.UID),
		ev.Annotations[webhooksv1alpha1.TraceParentAnnotation], ev.Annotations[webhooksv1alpha1.TraceStateAnnotation])
	return s
}

func (s *eventScope) requeueWithin(d time.Duration) {
	if d > 0 && (s.requeue == 0 || d < s.requeue) {
		s.requeue = d
	}
}

func (s *eventScope) after(f func()) { s.afterPatch = append(s.afterPatch, f) }

func (r *DocumentEventReconciler) emit(s *eventScope) {
	for _, f := range s.afterPatch {
		f()
	}
}

func (r *DocumentEventReconciler) listEndpoints(ctx context.Context, s *eventScope) error {
	reader := s.reader
	if reader == nil {
		reader = r.Client
	}
	list := &webhooksv1alpha1.WebhookEndpointList{}
	opts := []client.ListOption{client.InNamespace(s.ev.Namespace)}
	if labels := r.shared.scope.Labels; labels != nil {
		// The cache holds only this shard's endpoints; a live read must not see more.
		opts = append(opts, client.MatchingLabelsSelector{Selector: labels})
	}
	if err := reader.List(ctx, list, opts...); err != nil {
		return fmt.Errorf("list WebhookEndpoints: %w", err)
	}
	s.endpoints = list.Items
	s.endpointNamed = make(map[string]*webhooksv1alpha1.WebhookEndpoint, len(list.Items))
	for i := range list.Items {
		s.endpointNamed[list.Items[i].Name] = &list.Items[i]
	}
	return nil
}

// redeliver applies a new webhooks.1flow.io/redeliver-requested-at value against the endpoints that
// exist now.
func (r *DocumentEventReconciler) redeliver(_ context.Context, s *eventScope) error {
	if !redeliveryRequested(s.ev) {
		return nil
	}
	before := s.ev.Status.DeepCopy()
	if err := applyRedelivery(s.ev, s.endpoints, s.now); err != nil {
		// The selector was valid when the event was first matched and the spec is immutable.
		return reconcile.TerminalError(err)
	}
	s.learned = true
	size, err := measureEvent(s.ev)
	if err != nil || size.fits() {
		return err
	}
	// A full redelivery can add endpoints, and the annotation grows the event: refuse the request and
	// keep the deliveries as they were, so that no attempt can go out whose outcome cannot be recorded.
	message := tooLargeMessage(size, len(s.ev.Status.Deliveries))
	request := s.ev.Status.LastRedeliveryRequest
	s.ev.Status = *before
	s.ev.Status.LastRedeliveryRequest = request
	s.log.Info("redelivery refused: the event leaves too little room for its status", "stored", size.stored, "status", size.status)
	r.refuseTooLarge(s, "redelivery refused: "+message)
	return nil
}

// refuseTooLarge emits the Warning Event and counts the refusal once the status that records it is
// written, or when the API server refuses that status too (commit).
func (r *DocumentEventReconciler) refuseTooLarge(s *eventScope, note string) {
	s.tooLarge = true
	ev := s.ev
	s.after(func() {
		metrics.RecordRefused(metrics.RefusedTooLarge)
		r.Recorder.Eventf(ev, nil, corev1.EventTypeWarning, webhooksv1alpha1.EventTooLargeEvent, "Deliver", "%s", note)
	})
}

// ensureTargets fills status.deliveries with the matching endpoints the first time the event is seen
// (or, since the first write waits for an outcome, until an outcome was recorded), and refuses an event
// that leaves too little room for their status before any of them is attempted.
func (r *DocumentEventReconciler) ensureTargets(_ context.Context, s *eventScope) error {
	if len(s.ev.Status.Deliveries) == 0 {
		if err := r.chooseTargets(s); err != nil {
			return err
		}
	}
	return r.checkRoom(s)
}

func (r *DocumentEventReconciler) chooseTargets(s *eventScope) error {
	ev := s.ev
	targets, err := matchEndpoints(ev, s.endpoints)
	if err != nil {
		// The spec is immutable, so a bad selector can never be fixed: fail without retrying.
		setEventStatus(ev, webhooksv1alpha1.DocumentEventFailed, webhooksv1alpha1.InvalidSelectorReason, err.Error(), s.now)
		return reconcile.TerminalError(err)
	}
	if len(targets) > webhooksv1alpha1.MaxDeliveriesPerEvent {
		err := fmt.Errorf("%d WebhookEndpoints match this event, but one event can target at most %d; "+
			"narrow spec.endpointSelector (or the endpoints' docTypes and eventTypes) and create the event again",
			len(targets), webhooksv1alpha1.MaxDeliveriesPerEvent)
		setEventStatus(ev, webhooksv1alpha1.DocumentEventFailed, webhooksv1alpha1.TooManyEndpointsReason, err.Error(), s.now)
		return reconcile.TerminalError(err)
	}
	ev.Status.Deliveries = newDeliveries(ev, targets)
	if s.traceErr != nil {
		// Said once per event, when its targets are first chosen: a bad annotation never fails it.
		s.after(func() {
			r.Recorder.Eventf(ev, nil, corev1.EventTypeWarning, webhooksv1alpha1.InvalidTraceContextEvent, "Deliver",
				"annotation %s ignored: %v; the event is delivered in a trace of its own", webhooksv1alpha1.TraceParentAnnotation, s.traceErr)
		})
	}
	return nil
}

// checkRoom fails an event, before its first attempt, when its largest status would not fit next to it
// in etcd: its outcomes could not be recorded, so it would be sent again after every restart. It also
// catches events whose deliveries an older version wrote without the check. Once an attempt is out or
// recorded, it is too late to refuse; a redelivery is checked when it is applied.
func (r *DocumentEventReconciler) checkRoom(s *eventScope) error {
	ev := s.ev
	if len(ev.Status.Deliveries) == 0 {
		return nil
	}
	for i := range ev.Status.Deliveries {
		d := &ev.Status.Deliveries[i]
		if d.Phase.IsFinal() || d.Attempts > 0 || d.LastAttemptTime != nil || r.shared.engine.Busy(d.DeliveryID) {
			return nil
		}
	}
	size, err := measureEvent(ev)
	if err != nil || size.fits() {
		return err
	}
	message := tooLargeMessage(size, len(ev.Status.Deliveries))
	for i := range ev.Status.Deliveries {
		d := &ev.Status.Deliveries[i]
		d.Phase, d.Reason, d.NextAttemptTime = webhooksv1alpha1.DeliveryFailed, webhooksv1alpha1.EventTooLargeReason, nil
		d.LastError = "not sent: the event leaves too little room for its status"
	}
	setEventStatus(ev, webhooksv1alpha1.DocumentEventFailed, webhooksv1alpha1.EventTooLargeReason, message, s.now)
	r.refuseTooLarge(s, message)
	// The spec is immutable: the event can never fit, so it fails without a retry.
	return reconcile.TerminalError(fmt.Errorf("event too large: %s", message))
}

// recordOutcomes applies the engine's outcomes to their deliveries.
func (r *DocumentEventReconciler) recordOutcomes(_ context.Context, s *eventScope) error {
	ev := s.ev
	for _, o := range s.outcomes {
		s.recorded = append(s.recorded, o)
		d := deliveryByID(ev, o.DeliveryID)
		if d == nil || d.Phase.IsFinal() {
			// The delivery ended meanwhile (or was redelivered under a new id): nothing to record.
			continue
		}
		ep := s.endpointNamed[d.Endpoint]
		switch o.Kind {
		case engine.Sent:
			if alreadyRecorded(d, o.Result) {
				continue
			}
			r.recordSent(s, d, ep, o)
		case engine.Held:
			if o.Readiness.Reason == webhooksv1alpha1.AttemptsExhaustedReason {
				d.Phase, d.Reason, d.NextAttemptTime = webhooksv1alpha1.DeliveryFailed, webhooksv1alpha1.AttemptsExhaustedReason, nil
				r.afterFinished(s, d)
				continue
			}
			markWaiting(d, o.Readiness, o.Wait, s.now)
			s.held = true
			s.requeueWithin(o.Wait)
		case engine.EndpointGone:
			markEndpointDeleted(d)
			r.afterFinished(s, d)
		case engine.Unencodable:
			d.Phase, d.Reason, d.NextAttemptTime = webhooksv1alpha1.DeliveryFailed, webhooksv1alpha1.InvalidPayloadReason, nil
			d.LastError = delivery.Truncate("the payload cannot be encoded: "+o.Readiness.Message, webhooksv1alpha1.MaxDeliveryErrorLength)
			r.afterFinished(s, d)
		}
		if !d.Phase.IsFinal() && d.NextAttemptTime == nil {
			// The delivery stays busy until this outcome is acknowledged after the patch, so startDue
			// cannot submit it now; look again right after, or nothing may ever wake it (the endpoint
			// change that would have can already be past).
			s.requeueWithin(outcomeRecheck)
		}
	}
	return nil
}

// outcomeRecheck is how soon a delivery is looked at again after an outcome that left it open without
// a retry time (held, or refused at dial time).
const outcomeRecheck = 10 * time.Millisecond

// fallbackRetryPolicy applies to a result whose endpoint is gone: the delivery stays open and startDue
// ends it as EndpointDeleted.
var fallbackRetryPolicy = retryPolicy{maxAttempts: math.MaxInt32, initialInterval: time.Second, maxInterval: time.Second}

func (r *DocumentEventReconciler) recordSent(s *eventScope, d *webhooksv1alpha1.EndpointDelivery,
	ep *webhooksv1alpha1.WebhookEndpoint, o engine.Outcome) {
	policy := fallbackRetryPolicy
	if ep != nil {
		policy = retryPolicyOf(ep)
	}
	res := o.Result
	if res.Blocked {
		recordBlocked(d, res)
	} else {
		recordAttempt(d, res, policy, r.Jitter())
	}
	s.learned = true
	s.log.V(1).Info("delivery attempt", "endpoint", d.Endpoint, "deliveryId", d.DeliveryID,
		"attempt", d.Attempts, "statusCode", res.StatusCode, "success", res.Success,
		"duration", delivery.FormatDuration(res.Duration), "error", res.Error)
	attempted, endpoint := d.DeepCopy(), types.NamespacedName{Namespace: s.ev.Namespace, Name: d.Endpoint}
	s.after(func() {
		metrics.RecordAttempt(attemptResult(res), res.StatusCode, res.Duration.Seconds())
		r.shared.deliveryLog.logAttempt(s.log, s.now, s.ev, endpoint, attempted, res)
		r.shared.traces.Attempt(s.trace, o.Trace, attemptSpan(s.ev, attempted, res, o.Circuit))
	})
	if d.Phase.IsFinal() {
		r.afterFinished(s, d)
	}
	if ep != nil && o.Circuit != engine.CircuitUnchanged {
		epCopy, change := ep.DeepCopy(), o.Circuit
		s.after(func() {
			r.emitCircuit(epCopy, change)
			r.shared.deliveryLog.logCircuit(s.log, s.now, epCopy, change)
		})
	}
}

// afterFinished emits the metric and Event of a delivery that just ended.
func (r *DocumentEventReconciler) afterFinished(s *eventScope, d *webhooksv1alpha1.EndpointDelivery) {
	s.held = true
	ev, final := s.ev, d.DeepCopy()
	s.after(func() {
		metrics.RecordFinished(final.Phase == webhooksv1alpha1.DeliveryDelivered, final.Attempts)
		r.emitOutcome(ev, final)
		r.shared.traces.Delivery(s.trace, deliverySpan(ev, final, s.now))
		if final.Phase == webhooksv1alpha1.DeliveryFailed {
			r.shared.deliveryLog.logFailed(s.log, s.now, ev, final)
		}
	})
}

// attemptSpan describes a recorded attempt for its trace span, under the round of the delivery that
// counts it: an attempt still in flight when a redelivery was applied counts in the new round.
func attemptSpan(ev *webhooksv1alpha1.DocumentEvent, d *webhooksv1alpha1.EndpointDelivery, res delivery.Result,
	circuit engine.CircuitChange) tracing.AttemptSpan {
	span := tracing.AttemptSpan{
		Namespace: ev.Namespace, Endpoint: d.Endpoint, DeliveryID: d.DeliveryID, Round: ev.Status.LastRedeliveryRequest,
		Number: d.Attempts, Start: res.Start, Duration: res.Duration, StatusCode: res.StatusCode, ErrorClass: string(res.Class),
	}
	switch {
	case res.Success:
		span.Outcome = tracing.OutcomeDelivered
	case res.Blocked:
		span.Outcome = tracing.OutcomeBlocked
	case d.Phase == webhooksv1alpha1.DeliveryFailed:
		span.Outcome = tracing.OutcomeFailed
	default:
		span.Outcome = tracing.OutcomeRetrying
		if d.NextAttemptTime != nil {
			span.RetryIn = d.NextAttemptTime.Sub(res.Start.Add(res.Duration))
		}
	}
	switch circuit {
	case engine.CircuitOpened:
		span.Circuit = "opened"
	case engine.CircuitClosed:
		span.Circuit = "closed"
	}
	return span
}

// deliverySpan describes a round of a delivery that ended: from the event's creation until it was
// delivered, or until now for one that failed.
func deliverySpan(ev *webhooksv1alpha1.DocumentEvent, d *webhooksv1alpha1.EndpointDelivery, now time.Time) tracing.DeliverySpan {
	end := now
	if d.DeliveredAt != nil {
		end = d.DeliveredAt.Time
	}
	span := tracing.DeliverySpan{
		Namespace: ev.Namespace, Endpoint: d.Endpoint, DeliveryID: d.DeliveryID, Round: ev.Status.LastRedeliveryRequest,
		Start: ev.CreationTimestamp.Time, End: end, Phase: string(d.Phase), Attempts: d.Attempts,
	}
	if d.Phase == webhooksv1alpha1.DeliveryFailed {
		span.Reason = d.Reason
	}
	return span
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

// startDue ends deliveries whose endpoint is gone, holds back those whose endpoint cannot take them
// now, and submits the due ones to the engine, which admits each again when it starts.
func (r *DocumentEventReconciler) startDue(ctx context.Context, s *eventScope) error {
	ev := s.ev
	key := client.ObjectKeyFromObject(ev)
	// The engine encodes the payload once, and only when an attempt is admitted. It gets its own copy
	// of what the payload needs, since the reconcile goes on changing the status.
	forBody := &webhooksv1alpha1.DocumentEvent{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: ev.CreationTimestamp}, Spec: ev.Spec}
	body := sync.OnceValues(func() ([]byte, error) { return payload.Encode(forBody) })
	for i := range ev.Status.Deliveries {
		d := &ev.Status.Deliveries[i]
		if d.Phase.IsFinal() || r.shared.engine.Busy(d.DeliveryID) {
			continue
		}
		ep := s.endpointNamed[d.Endpoint]
		if ep == nil || !ep.DeletionTimestamp.IsZero() || deliveryID(ev, ep) != d.DeliveryID {
			markEndpointDeleted(d)
			r.afterFinished(s, d)
			continue
		}
		if !isDue(d, s.now) {
			continue
		}
		if d.Attempts >= ep.GetMaxAttempts() {
			// spec.retry.maxAttempts was lowered below the attempts already made.
			d.Phase, d.Reason, d.NextAttemptTime = webhooksv1alpha1.DeliveryFailed, webhooksv1alpha1.AttemptsExhaustedReason, nil
			r.afterFinished(s, d)
			continue
		}
		in, err := r.shared.resolver.gather(ctx, ep)
		if err != nil {
			return err
		}
		rd, wait := r.shared.engine.Readiness(engineEndpoint(in))
		// An open circuit whose cool-down has passed lets one attempt through: this may be the probe.
		probe := rd.Reason == webhooksv1alpha1.CircuitOpenReason && wait == 0
		if !rd.Ready && !probe {
			markWaiting(d, rd, wait, s.now)
			s.held = true
			s.requeueWithin(wait)
			continue
		}
		r.shared.engine.Submit(engine.Attempt{
			Event:       key,
			Endpoint:    keyOf(ep),
			EndpointUID: ep.UID,
			DeliveryID:  d.DeliveryID,
			MaxInFlight: ep.GetMaxInFlight(),
			Attempts:    d.Attempts,
			Body:        body,
			Trace:       s.trace.NewAttempt(),
		})
		if d.Reason == webhooksv1alpha1.EndpointNotReadyReason || d.Reason == webhooksv1alpha1.DestinationBlockedReason {
			d.Reason, d.LastError = "", ""
		}
	}
	return nil
}

func (r *DocumentEventReconciler) summarize(_ context.Context, s *eventScope) error {
	ev := s.ev
	s.requeueWithin(summarize(ev, s.endpoints, s.now))
	if !s.learned && !s.held && len(s.base.Status.Deliveries) == 0 && len(ev.Status.Deliveries) > 0 {
		// The first attempts are only in flight: nothing is known yet that a restart would need, so
		// the outcome is written once, when it arrives.
		ev.Status = *s.base.Status.DeepCopy()
	}
	return nil
}

// emitOutcome records an Event for the outcomes an operator wants to hear about: a delivery that gave
// up, and one that succeeded only after retries.
func (r *DocumentEventReconciler) emitOutcome(ev *webhooksv1alpha1.DocumentEvent, d *webhooksv1alpha1.EndpointDelivery) {
	switch {
	case d.Phase == webhooksv1alpha1.DeliveryFailed:
		r.Recorder.Eventf(ev, nil, corev1.EventTypeWarning, webhooksv1alpha1.DeliveryFailedEvent, "Deliver",
			"delivery to %s failed after %s (%s): %s", d.Endpoint, attemptsText(d.Attempts), d.Reason, d.LastError)
	case d.Phase == webhooksv1alpha1.DeliveryDelivered && d.Attempts > 1:
		r.Recorder.Eventf(ev, nil, corev1.EventTypeNormal, webhooksv1alpha1.DeliveredAfterRetriesEvent, "Deliver",
			"delivered to %s on attempt %d", d.Endpoint, d.Attempts)
	}
}

func attemptsText(n int32) string {
	if n == 0 {
		return "no attempt"
	}
	return delivery.Count(n, "attempt")
}

// emitCircuit records an Event when an attempt opened or closed the endpoint's circuit.
func (r *DocumentEventReconciler) emitCircuit(ep *webhooksv1alpha1.WebhookEndpoint, change engine.CircuitChange) {
	switch change {
	case engine.CircuitOpened:
		r.Recorder.Eventf(ep, nil, corev1.EventTypeWarning, webhooksv1alpha1.CircuitOpenedEvent, "Deliver",
			"circuit opened after %s; probing every %s", delivery.Count(ep.GetFailureThreshold(), "consecutive failed attempt"), ep.GetCooldown())
	case engine.CircuitClosed:
		r.Recorder.Eventf(ep, nil, corev1.EventTypeNormal, webhooksv1alpha1.CircuitClosedEvent, "Deliver",
			"circuit closed: an attempt succeeded")
	}
}

// keyedMutex is a mutex per object key, released when nobody holds or waits for it.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[types.NamespacedName]*refMutex
}

type refMutex struct {
	sync.Mutex
	refs int
}

// lock locks the key and returns its unlock.
func (k *keyedMutex) lock(key types.NamespacedName) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[types.NamespacedName]*refMutex{}
	}
	m := k.locks[key]
	if m == nil {
		m = &refMutex{}
		k.locks[key] = m
	}
	m.refs++
	k.mu.Unlock()
	m.Lock()
	return func() {
		m.Unlock()
		k.mu.Lock()
		if m.refs--; m.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
