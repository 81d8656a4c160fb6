package controller

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/internal/engine"
	"github.com/1flow/webhook-operator/internal/routing"
)

// This file holds the delivery decisions as pure functions of the objects and the time: which endpoints
// an event targets, which deliveries are due, how an attempt changes a delivery, and what the event's
// phase is. The reconciler only gathers inputs and applies the outputs.

// matchEndpoints returns the endpoints that should receive the event, sorted by name.
func matchEndpoints(ev *webhooksv1alpha1.DocumentEvent, endpoints []webhooksv1alpha1.WebhookEndpoint) ([]*webhooksv1alpha1.WebhookEndpoint, error) {
	selector, err := routing.Selector(ev)
	if err != nil {
		return nil, err
	}
	var matched []*webhooksv1alpha1.WebhookEndpoint
	for i := range endpoints {
		if routing.Targets(ev, selector, &endpoints[i]) {
			matched = append(matched, &endpoints[i])
		}
	}
	slices.SortFunc(matched, func(a, b *webhooksv1alpha1.WebhookEndpoint) int {
		return cmp.Compare(a.Name, b.Name)
	})
	return matched, nil
}

// deliveryID is the id of the event's delivery to the endpoint (routing.DeliveryID).
func deliveryID(ev *webhooksv1alpha1.DocumentEvent, ep *webhooksv1alpha1.WebhookEndpoint) string {
	return routing.DeliveryID(ev.UID, ep.UID)
}

// newDeliveries creates one Pending delivery per target.
func newDeliveries(ev *webhooksv1alpha1.DocumentEvent, targets []*webhooksv1alpha1.WebhookEndpoint) []webhooksv1alpha1.EndpointDelivery {
	out := make([]webhooksv1alpha1.EndpointDelivery, 0, len(targets))
	for _, ep := range targets {
		out = append(out, webhooksv1alpha1.EndpointDelivery{
			Endpoint:   ep.Name,
			DeliveryID: deliveryID(ev, ep),
			Phase:      webhooksv1alpha1.DeliveryPending,
		})
	}
	return out
}

// isDue reports whether a non-final delivery may be attempted at now. One that waits for its endpoint
// is always looked at again: its nextAttemptTime (the next circuit probe) tells the user when it may go
// next, but the circuit can close earlier.
func isDue(d *webhooksv1alpha1.EndpointDelivery, now time.Time) bool {
	return !d.Phase.IsFinal() && (waitsForEndpoint(d) || d.NextAttemptTime == nil || !d.NextAttemptTime.After(now))
}

// waitsForEndpoint reports whether the delivery is held back by its endpoint rather than by its own
// retry schedule. Such a delivery has a wake-up of its own: an endpoint change, or the circuit's
// cool-down.
func waitsForEndpoint(d *webhooksv1alpha1.EndpointDelivery) bool {
	switch d.Reason {
	case webhooksv1alpha1.EndpointNotReadyReason, webhooksv1alpha1.DestinationBlockedReason, webhooksv1alpha1.CircuitOpenReason:
		return true
	}
	return false
}

// markEndpointDeleted ends a delivery whose endpoint no longer exists.
func markEndpointDeleted(d *webhooksv1alpha1.EndpointDelivery) {
	d.Phase = webhooksv1alpha1.DeliveryFailed
	d.Reason = webhooksv1alpha1.EndpointDeletedReason
	d.NextAttemptTime = nil
	d.LastError = "the WebhookEndpoint was deleted (or recreated) before the delivery succeeded"
}

// markWaiting records why a due delivery is held back without counting an attempt, and when it goes
// next: the circuit's next probe, or unset when only a change to the endpoint or its Secret releases it.
// While the circuit is open, lastError keeps the receiver's last error, since that is what the user has
// to fix; the reason says why the delivery waits. A blocked destination keeps its own reason, since it
// is what the delivery failed with.
func markWaiting(d *webhooksv1alpha1.EndpointDelivery, rd engine.Readiness, wait time.Duration, now time.Time) {
	d.NextAttemptTime = nil
	switch rd.Reason {
	case webhooksv1alpha1.CircuitOpenReason:
		if d.Reason != webhooksv1alpha1.AttemptFailedReason && d.Reason != webhooksv1alpha1.CircuitOpenReason {
			// No attempt of this delivery failed yet: the circuit is the only error it has.
			d.LastError = delivery.Truncate(rd.Reason+": "+rd.Message, webhooksv1alpha1.MaxDeliveryErrorLength)
		}
		d.Reason = webhooksv1alpha1.CircuitOpenReason
		if wait > 0 {
			next := metav1.NewMicroTime(now.Add(wait))
			d.NextAttemptTime = &next
		}
		return
	case webhooksv1alpha1.DestinationBlockedReason:
		d.Reason = webhooksv1alpha1.DestinationBlockedReason
	default:
		d.Reason = webhooksv1alpha1.EndpointNotReadyReason
	}
	d.LastError = delivery.Truncate(rd.Reason+": "+rd.Message, webhooksv1alpha1.MaxDeliveryErrorLength)
}

// retryPolicy is what recordAttempt needs from an endpoint.
type retryPolicy struct {
	maxAttempts     int32
	initialInterval time.Duration
	maxInterval     time.Duration
}

func retryPolicyOf(ep *webhooksv1alpha1.WebhookEndpoint) retryPolicy {
	return retryPolicy{
		maxAttempts:     ep.GetMaxAttempts(),
		initialInterval: ep.GetInitialInterval(),
		maxInterval:     ep.GetMaxInterval(),
	}
}

// recordAttempt applies the result of one attempt to its delivery. unit is a random number in [0, 1)
// for the backoff jitter.
func recordAttempt(d *webhooksv1alpha1.EndpointDelivery, res delivery.Result, policy retryPolicy, unit float64) {
	start := metav1.NewMicroTime(res.Start)
	d.Attempts++
	d.LastAttemptTime = &start
	d.LastStatusCode = int32(res.StatusCode)
	d.Duration = webhooksv1alpha1.AttemptDuration(res.Duration)
	d.LastError = delivery.Truncate(res.Error, webhooksv1alpha1.MaxDeliveryErrorLength)
	d.NextAttemptTime = nil
	switch {
	case res.Success:
		done := metav1.NewMicroTime(res.Start.Add(res.Duration))
		d.Phase = webhooksv1alpha1.DeliveryDelivered
		d.Reason = ""
		d.DeliveredAt = &done
	case d.Attempts >= policy.maxAttempts:
		d.Phase = webhooksv1alpha1.DeliveryFailed
		d.Reason = webhooksv1alpha1.AttemptsExhaustedReason
	default:
		wait := delivery.Backoff(d.Attempts, policy.initialInterval, policy.maxInterval, unit)
		if res.RetryAfter > 0 {
			// The receiver said when it can take more; never wait longer than maxInterval for it.
			wait = min(res.RetryAfter, policy.maxInterval)
		}
		next := metav1.NewMicroTime(res.Start.Add(res.Duration).Add(wait))
		d.Phase = webhooksv1alpha1.DeliveryRetrying
		d.Reason = webhooksv1alpha1.AttemptFailedReason
		d.NextAttemptTime = &next
	}
}

// recordBlocked applies an attempt that the egress policy refused at dial time. Nothing left the
// operator, so it does not count against maxAttempts; the delivery waits, without a retry time, until
// the endpoint's URL changes.
func recordBlocked(d *webhooksv1alpha1.EndpointDelivery, res delivery.Result) {
	start := metav1.NewMicroTime(res.Start)
	d.LastAttemptTime = &start
	d.LastStatusCode = 0
	d.Duration = webhooksv1alpha1.AttemptDuration(res.Duration)
	d.LastError = delivery.Truncate(res.Error, webhooksv1alpha1.MaxDeliveryErrorLength)
	d.Reason = webhooksv1alpha1.DestinationBlockedReason
	d.NextAttemptTime = nil
}

// summarize sets the event's phase and Delivered condition from its deliveries, and returns how long
// until the earliest scheduled retry (0 when none is scheduled). endpoints are those in the event's
// namespace, to explain an event that targets none.
func summarize(ev *webhooksv1alpha1.DocumentEvent, endpoints []webhooksv1alpha1.WebhookEndpoint, now time.Time) time.Duration {
	var delivered, failed, attempted int
	var requeue time.Duration
	for i := range ev.Status.Deliveries {
		d := &ev.Status.Deliveries[i]
		switch d.Phase {
		case webhooksv1alpha1.DeliveryDelivered:
			delivered++
		case webhooksv1alpha1.DeliveryFailed:
			failed++
		default:
			if d.Attempts > 0 {
				attempted++
			}
			// Only retries still ahead: one that is due was submitted by this reconcile (its outcome
			// wakes the event) or is held for a reason with a wake-up of its own. Requeueing for it
			// would spin while the attempt waits in its endpoint's lane.
			if d.NextAttemptTime != nil && d.NextAttemptTime.After(now) && !waitsForEndpoint(d) {
				if wait := d.NextAttemptTime.Sub(now); requeue == 0 || wait < requeue {
					requeue = wait
				}
			}
		}
	}
	total := len(ev.Status.Deliveries)
	phase, reason, message := webhooksv1alpha1.DocumentEventDelivering,
		webhooksv1alpha1.DeliveringReason, fmt.Sprintf("%d of %d endpoints delivered", delivered, total)
	switch {
	case total == 0:
		phase, reason, message = webhooksv1alpha1.DocumentEventPending, webhooksv1alpha1.NoEndpointsReason,
			noTargetsMessage(ev, endpoints)
	case delivered == total:
		phase, reason = webhooksv1alpha1.DocumentEventDelivered, webhooksv1alpha1.DeliverySucceededReason
	case delivered+failed == total:
		phase, reason = webhooksv1alpha1.DocumentEventFailed, webhooksv1alpha1.DeliveryFailedReason
		message = fmt.Sprintf("%d of %d endpoints failed, %d delivered", failed, total, delivered)
	case delivered+failed+attempted == 0:
		phase = webhooksv1alpha1.DocumentEventPending
	}
	setEventStatus(ev, phase, reason, message, now)
	return requeue
}

// noTargetsMessage explains why an event targets no endpoint: how many endpoints its namespace has, and
// which rule kept the event from how many of them, so the user knows which filter to change.
func noTargetsMessage(ev *webhooksv1alpha1.DocumentEvent, endpoints []webhooksv1alpha1.WebhookEndpoint) string {
	const until = "; the event is delivered when one matches"
	if len(endpoints) == 0 {
		return fmt.Sprintf("no WebhookEndpoint exists in namespace %q%s", ev.Namespace, until)
	}
	selector, err := routing.Selector(ev)
	if err != nil {
		return err.Error()
	}
	excluded := map[routing.Exclusion]int{}
	for i := range endpoints {
		excluded[routing.Exclude(ev, selector, &endpoints[i])]++
	}
	docType := "the event has no docType"
	if dt := ev.Spec.DocumentStatus.DocType; dt != nil {
		docType = fmt.Sprintf("the event's docType is %q", *dt)
	}
	var reasons []string
	for _, rule := range []struct {
		exclusion routing.Exclusion
		text      string
	}{
		{routing.NotSelected, fmt.Sprintf("by the event's spec.endpointSelector (%s)", selector)},
		{routing.EventTypeFiltered, fmt.Sprintf("by their spec.eventTypes (the event's type is %q)", ev.GetEvent())},
		{routing.DocTypeFiltered, fmt.Sprintf("by their spec.docTypes (%s)", docType)},
		{routing.Deleting, "because they are being deleted"},
	} {
		if n := excluded[rule.exclusion]; n > 0 {
			reasons = append(reasons, fmt.Sprintf("%d %s", n, rule.text))
		}
	}
	subject := fmt.Sprintf("none of the %d WebhookEndpoints in namespace %q matches this event", len(endpoints), ev.Namespace)
	if len(endpoints) == 1 {
		subject = fmt.Sprintf("the only WebhookEndpoint in namespace %q does not match this event", ev.Namespace)
	}
	return fmt.Sprintf("%s: excluded %s%s", subject, strings.Join(reasons, ", "), until)
}

// setEventStatus sets the phase and the conditions that follow from it: Delivered and Ready (True only
// when Delivered), Reconciling while deliveries are open, and Stalled when the event failed, as kstatus
// expects (so kubectl wait, Flux and Argo CD read the true state). completionTime marks when the event
// finished, for its TTL.
func setEventStatus(ev *webhooksv1alpha1.DocumentEvent, phase webhooksv1alpha1.DocumentEventPhase, reason, message string, now time.Time) {
	ev.Status.Phase = phase
	switch {
	case !phase.IsFinished():
		ev.Status.CompletionTime = nil
	case ev.Status.CompletionTime == nil:
		finished := metav1.NewMicroTime(now)
		ev.Status.CompletionTime = &finished
	}
	status := metav1.ConditionFalse
	if phase == webhooksv1alpha1.DocumentEventDelivered {
		status = metav1.ConditionTrue
	}
	setCondition(ev, webhooksv1alpha1.DeliveredCondition, status, reason, message)
	setCondition(ev, webhooksv1alpha1.ReadyCondition, status, reason, message)
	setOrRemoveCondition(ev, webhooksv1alpha1.ReconcilingCondition,
		phase == webhooksv1alpha1.DocumentEventPending || phase == webhooksv1alpha1.DocumentEventDelivering, reason, message)
	setOrRemoveCondition(ev, webhooksv1alpha1.StalledCondition, phase == webhooksv1alpha1.DocumentEventFailed, reason, message)
}

// setOrRemoveCondition sets an abnormal-true condition (Reconciling, Stalled) when it applies and
// removes it otherwise, as the kstatus conventions ask.
func setOrRemoveCondition(obj conditionsObject, condType string, applies bool, reason, message string) {
	if applies {
		setCondition(obj, condType, metav1.ConditionTrue, reason, message)
		return
	}
	conditions := obj.GetConditions()
	apimeta.RemoveStatusCondition(&conditions, condType)
	obj.SetConditions(conditions)
}

type conditionsObject interface {
	GetConditions() []metav1.Condition
	SetConditions([]metav1.Condition)
	GetGeneration() int64
}

// setCondition sets one condition, its message cut to the schema's limit so that no status patch is
// rejected for its length.
func setCondition(obj conditionsObject, condType string, status metav1.ConditionStatus, reason, message string) {
	conditions := obj.GetConditions()
	apimeta.SetStatusCondition(&conditions, metav1.Condition{
		Type:               condType,
		Status:             status,
		Reason:             reason,
		Message:            delivery.Truncate(message, webhooksv1alpha1.MaxConditionMessageLength),
		ObservedGeneration: obj.GetGeneration(),
	})
	obj.SetConditions(conditions)
}

// redeliveryRequested reports whether the event carries a webhooks.1flow.io/redeliver-requested-at value
// that was not acted on yet.
func redeliveryRequested(ev *webhooksv1alpha1.DocumentEvent) bool {
	value := ev.Annotations[webhooksv1alpha1.RedeliverRequestedAtAnnotation]
	return value != "" && value != ev.Status.LastRedeliveryRequest
}

// applyRedelivery acts on a new redeliver-requested-at value, once: the deliveries in scope (all, or
// only the failed ones with webhooks.1flow.io/redeliver-scope: failed) start over with fresh attempts,
// against the endpoints that match the event now. A delivery whose endpoint still exists keeps its
// delivery id, so receivers can still de-duplicate; one whose endpoint was recreated under the same name
// gets the new endpoint's id; one whose endpoint is gone stays as it is. A full redelivery also adds the
// endpoints that match now and did not before.
func applyRedelivery(ev *webhooksv1alpha1.DocumentEvent, endpoints []webhooksv1alpha1.WebhookEndpoint, now time.Time) error {
	targets, err := matchEndpoints(ev, endpoints)
	if err != nil {
		return err
	}
	ev.Status.LastRedeliveryRequest = ev.Annotations[webhooksv1alpha1.RedeliverRequestedAtAnnotation]
	onlyFailed := ev.Annotations[webhooksv1alpha1.RedeliverScopeAnnotation] == webhooksv1alpha1.RedeliverScopeFailed
	current := make(map[string]*webhooksv1alpha1.WebhookEndpoint, len(targets))
	for _, ep := range targets {
		current[ep.Name] = ep
	}
	known := make(map[string]bool, len(ev.Status.Deliveries))
	for i := range ev.Status.Deliveries {
		d := &ev.Status.Deliveries[i]
		known[d.Endpoint] = true
		ep := current[d.Endpoint]
		if ep == nil || (onlyFailed && d.Phase != webhooksv1alpha1.DeliveryFailed) {
			continue
		}
		*d = webhooksv1alpha1.EndpointDelivery{
			Endpoint:        d.Endpoint,
			DeliveryID:      deliveryID(ev, ep),
			Phase:           webhooksv1alpha1.DeliveryPending,
			Reason:          webhooksv1alpha1.RedeliveryRequestedReason,
			LastAttemptTime: d.LastAttemptTime,
		}
	}
	if !onlyFailed {
		for _, d := range newDeliveries(ev, targets) {
			if !known[d.Endpoint] && len(ev.Status.Deliveries) < webhooksv1alpha1.MaxDeliveriesPerEvent {
				d.Reason = webhooksv1alpha1.RedeliveryRequestedReason
				ev.Status.Deliveries = append(ev.Status.Deliveries, d)
			}
		}
		slices.SortFunc(ev.Status.Deliveries, func(a, b webhooksv1alpha1.EndpointDelivery) int {
			return cmp.Compare(a.Endpoint, b.Endpoint)
		})
	}
	summarize(ev, endpoints, now)
	return nil
}

func deliveryByID(ev *webhooksv1alpha1.DocumentEvent, id string) *webhooksv1alpha1.EndpointDelivery {
	for i := range ev.Status.Deliveries {
		if ev.Status.Deliveries[i].DeliveryID == id {
			return &ev.Status.Deliveries[i]
		}
	}
	return nil
}

// alreadyRecorded makes recording idempotent: a result whose start time is already the delivery's
// last attempt was recorded by an earlier reconcile (or by the shutdown flush).
func alreadyRecorded(d *webhooksv1alpha1.EndpointDelivery, res delivery.Result) bool {
	return d.LastAttemptTime != nil && d.LastAttemptTime.Equal(&metav1.MicroTime{Time: res.Start.Truncate(time.Microsecond)})
}
