package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/routing"
	"github.com/1flow/webhook-operator/internal/webhookops"
)

// requestState is how far a redelivery request of one event got.
type requestState int

const (
	// requestWaiting: the annotation is set and the operator has not acted on it yet.
	requestWaiting requestState = iota
	// requestConfirmed: status.lastRedeliveryRequest holds the value that was set.
	requestConfirmed
	// requestUnconfirmed: the operator did not act on it within --wait, or --wait=0 did not wait.
	requestUnconfirmed
	// requestSuperseded: a newer redeliver-requested-at value replaced this one before the operator
	// confirmed it.
	requestSuperseded
	// requestGone: the event was deleted (or deleted and created again) while the plugin waited.
	requestGone
)

// redeliveryRequest is one event whose redelivery the plugin requested.
type redeliveryRequest struct {
	key types.NamespacedName
	uid types.UID
	// before is the event as the annotation patch left it: the deliveries the operator is about to act on.
	before *webhooksv1alpha1.DocumentEvent
	// latest is the event as last read; after confirmation, the deliveries as the operator left them.
	latest *webhooksv1alpha1.DocumentEvent
	state  requestState
	// supersededBy is the newer redeliver-requested-at value, for requestSuperseded.
	supersededBy string

	outcomes []deliveryOutcome
	// notAdded counts the endpoints that match the event but were not added, because the event already
	// has the most deliveries an event can have.
	notAdded int
}

// observe records what the latest read of the event says about the request with the given value;
// ev is nil when the event is not found.
func (r *redeliveryRequest) observe(ev *webhooksv1alpha1.DocumentEvent, value string) {
	switch {
	case ev == nil || ev.UID != r.uid:
		r.state = requestGone
	case ev.Status.LastRedeliveryRequest == value:
		r.state, r.latest = requestConfirmed, ev
	case ev.Annotations[webhooksv1alpha1.RedeliverRequestedAtAnnotation] != value:
		r.state, r.latest = requestSuperseded, ev
		r.supersededBy = ev.Annotations[webhooksv1alpha1.RedeliverRequestedAtAnnotation]
	default:
		r.latest = ev
	}
}

// outcomeKind is what a redelivery did to one delivery.
type outcomeKind int

const (
	// outcomeRestarted: the delivery started over, under the same delivery id.
	outcomeRestarted outcomeKind = iota
	// outcomeNewID: the delivery started over to an endpoint re-created under the same name, under
	// the new endpoint's delivery id.
	outcomeNewID
	// outcomeAdded: a new delivery to an endpoint that matches the event now and did not before.
	outcomeAdded
	// outcomeNotRestarted: the delivery was in scope but stayed as it was: its endpoint is gone, or no
	// longer matches the event.
	outcomeNotRestarted
	// outcomeOutOfScope: with --scope failed, a delivery that had not failed, left alone.
	outcomeOutOfScope
)

// deliveryOutcome is what a redelivery did to one delivery of an event.
type deliveryOutcome struct {
	kind     outcomeKind
	endpoint string
	// after is the delivery as the operator left it.
	after webhooksv1alpha1.EndpointDelivery
	// oldID is the delivery id before the redelivery, for outcomeNewID.
	oldID string
	// why says, for outcomeNotRestarted, why the delivery was not restarted and what state it is in.
	// It names the endpoint and not the event, so that the summary can group deliveries by it.
	why string
}

// classifyRedelivery tells, delivery by delivery, what the operator did when it acted on a redelivery
// request. before is the event when the request was made, after when the operator had confirmed it;
// endpoints holds the WebhookEndpoints of the event's namespace by name, nil when they could not be read.
// endpointLabel is how the reasons name an endpoint.
//
// Delivery ids and added deliveries are facts of the status. For a delivery that kept its id, the
// operator's rule (internal/controller/plan.go, applyRedelivery) decides: it started over if it was in
// scope and its endpoint still exists, is the same object (same UID) and still matches the event.
func classifyRedelivery(before, after *webhooksv1alpha1.DocumentEvent, endpoints map[string]*webhooksv1alpha1.WebhookEndpoint,
	endpointLabel func(string) string) (outcomes []deliveryOutcome, notAdded int) {
	onlyFailed := after.Annotations[webhooksv1alpha1.RedeliverScopeAnnotation] == webhooksv1alpha1.RedeliverScopeFailed
	earlier := make(map[string]*webhooksv1alpha1.EndpointDelivery, len(before.Status.Deliveries))
	for i := range before.Status.Deliveries {
		earlier[before.Status.Deliveries[i].Endpoint] = &before.Status.Deliveries[i]
	}
	targeted := make(map[string]bool, len(after.Status.Deliveries))
	for _, d := range after.Status.Deliveries {
		targeted[d.Endpoint] = true
		o := deliveryOutcome{endpoint: d.Endpoint, after: d}
		b := earlier[d.Endpoint]
		label := "endpoint " + endpointLabel(d.Endpoint)
		switch ep := endpoints[d.Endpoint]; {
		case b == nil:
			o.kind = outcomeAdded
		case b.DeliveryID != d.DeliveryID:
			o.kind, o.oldID = outcomeNewID, b.DeliveryID
		case onlyFailed && b.Phase != webhooksv1alpha1.DeliveryFailed:
			o.kind = outcomeOutOfScope
		case endpoints == nil:
			// Without the endpoints, only the status can tell: a restarted delivery lost its attempts.
			o.kind = outcomeRestarted
			if !deliveryChanged(b, &d) {
				o.kind, o.why = outcomeNotRestarted, label+": the WebhookEndpoints could not be read to tell why"
			}
		case ep == nil:
			o.kind, o.why = outcomeNotRestarted, label+" no longer exists"
		case !ep.DeletionTimestamp.IsZero():
			o.kind, o.why = outcomeNotRestarted, label+" is being deleted"
		case routing.DeliveryID(after.UID, ep.UID) != d.DeliveryID && webhookops.EndpointMatches(after, ep):
			o.kind, o.why = outcomeNotRestarted, label+" was re-created after the operator acted (redeliver again to send to it)"
		case routing.DeliveryID(after.UID, ep.UID) != d.DeliveryID:
			o.kind, o.why = outcomeNotRestarted, label+" was re-created and no longer matches this event"
		case !webhookops.EndpointMatches(after, ep):
			o.kind, o.why = outcomeNotRestarted, label+" no longer matches this event"
		default:
			o.kind = outcomeRestarted
		}
		if o.kind == outcomeNotRestarted {
			o.why += ": " + deliveryState(b, &d)
		}
		outcomes = append(outcomes, o)
	}
	if !onlyFailed && endpoints != nil && len(after.Status.Deliveries) >= webhooksv1alpha1.MaxDeliveriesPerEvent {
		for _, ep := range endpoints {
			if !targeted[ep.Name] && webhookops.EndpointMatches(after, ep) {
				notAdded++
			}
		}
	}
	return outcomes, notAdded
}

// deliveryChanged reports whether the delivery is no longer what it was before the request: a
// redelivery resets its attempts and outcome.
func deliveryChanged(b, a *webhooksv1alpha1.EndpointDelivery) bool {
	return a.Reason == webhooksv1alpha1.RedeliveryRequestedReason || a.Phase != b.Phase || a.Attempts != b.Attempts ||
		!a.LastAttemptTime.Equal(b.LastAttemptTime) || !a.DeliveredAt.Equal(b.DeliveredAt)
}

// deliveryState is "still Failed (EndpointDeleted)" when the redelivery left the phase and reason as
// they were, "now <phase> (<reason>)" otherwise.
func deliveryState(before, after *webhooksv1alpha1.EndpointDelivery) string {
	word := "now"
	if before != nil && before.Phase == after.Phase && before.Reason == after.Reason {
		word = "still"
	}
	return word + " " + phaseAndReason(after)
}

func phaseAndReason(d *webhooksv1alpha1.EndpointDelivery) string {
	if d.Reason == "" || d.Reason == webhooksv1alpha1.RedeliveryRequestedReason {
		return string(d.Phase)
	}
	return string(d.Phase) + " (" + d.Reason + ")"
}

// outcomeTotals adds up the outcomes of every request.
type outcomeTotals struct {
	requests                           int
	confirmed, unconfirmed, superseded int
	gone                               int
	restarted, newID, added            int
	notRestarted, outOfScope, notAdded int
	notRestartedWhy                    map[string]int
	unconfirmedNames, supersededNames  []string
	goneNames                          []string
}

func totalOutcomes(requests []*redeliveryRequest, allNamespaces bool) outcomeTotals {
	t := outcomeTotals{requests: len(requests), notRestartedWhy: map[string]int{}}
	for _, r := range requests {
		name := r.key.Name
		if allNamespaces {
			name = r.key.Namespace + "/" + name
		}
		switch r.state {
		case requestConfirmed:
			t.confirmed++
		case requestUnconfirmed, requestWaiting:
			t.unconfirmed++
			t.unconfirmedNames = append(t.unconfirmedNames, name)
		case requestSuperseded:
			t.superseded++
			t.supersededNames = append(t.supersededNames, name)
		case requestGone:
			t.gone++
			t.goneNames = append(t.goneNames, name)
		}
		t.notAdded += r.notAdded
		for _, o := range r.outcomes {
			switch o.kind {
			case outcomeRestarted:
				t.restarted++
			case outcomeNewID:
				t.newID++
			case outcomeAdded:
				t.added++
			case outcomeNotRestarted:
				t.notRestarted++
				t.notRestartedWhy[o.why]++
			case outcomeOutOfScope:
				t.outOfScope++
			}
		}
	}
	return t
}

// outcomeLabelWidth aligns the outcome words of the per-delivery lines.
const outcomeLabelWidth = len("not restarted  ")

// printRequest writes what happened to one event's redelivery request: a line for the event, and for a
// confirmed request one line per delivery.
func printRequest(w io.Writer, r *redeliveryRequest, where string, waited time.Duration) error {
	head := "documentevent/" + r.key.Name + where + ": "
	var b strings.Builder
	switch r.state {
	case requestUnconfirmed, requestWaiting:
		if waited == 0 {
			b.WriteString(head + "redelivery requested, not confirmed (--wait=0)\n")
			break
		}
		fmt.Fprintf(&b, "%sredelivery requested, NOT CONFIRMED: the operator did not act on it within %s", head, waited)
		if r.latest != nil && r.latest.Status.Phase != "" {
			fmt.Fprintf(&b, " (phase %s)", r.latest.Status.Phase)
		}
		b.WriteString("\n")
	case requestSuperseded:
		fmt.Fprintf(&b, "%sredelivery requested, then replaced by a newer request (%s) before the operator confirmed it\n",
			head, r.supersededBy)
	case requestGone:
		b.WriteString(head + "deleted before the operator confirmed the redelivery\n")
	case requestConfirmed:
		restarted := 0
		for _, o := range r.outcomes {
			if o.kind == outcomeRestarted || o.kind == outcomeNewID || o.kind == outcomeAdded {
				restarted++
			}
		}
		switch {
		case len(r.outcomes) == 0:
			b.WriteString(head + "redelivery confirmed, but no WebhookEndpoint matches the event: nothing to send\n")
		case restarted == 0:
			b.WriteString(head + "redelivery confirmed, but no delivery was restarted\n")
		default:
			fmt.Fprintf(&b, "%sredelivered, %d of %d %s restarted\n", head, restarted, len(r.outcomes), deliveries(len(r.outcomes)))
		}
		for _, o := range r.outcomes {
			writeOutcome(&b, &o)
		}
		if r.notAdded > 0 {
			fmt.Fprintf(&b, "  %-*s%d more matching %s: an event has at most %d deliveries\n", outcomeLabelWidth, "not added",
				r.notAdded, plural(r.notAdded, "endpoint"), webhooksv1alpha1.MaxDeliveriesPerEvent)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeOutcome(b *strings.Builder, o *deliveryOutcome) {
	now := "now " + phaseAndReason(&o.after)
	switch o.kind {
	case outcomeRestarted:
		fmt.Fprintf(b, "  %-*s%s, %s\n", outcomeLabelWidth, "restarted", o.endpoint, now)
	case outcomeNewID:
		fmt.Fprintf(b, "  %-*s%s, %s, with a new delivery id %s (was %s): the endpoint was re-created\n",
			outcomeLabelWidth, "restarted", o.endpoint, now, o.after.DeliveryID, o.oldID)
	case outcomeAdded:
		fmt.Fprintf(b, "  %-*s%s, %s: the endpoint matches the event now and did not before\n",
			outcomeLabelWidth, "added", o.endpoint, now)
	case outcomeNotRestarted:
		fmt.Fprintf(b, "  %-*s%s\n", outcomeLabelWidth, "not restarted", o.why)
	case outcomeOutOfScope:
		fmt.Fprintf(b, "  %-*s%s, %s: --scope failed restarts only failed deliveries\n",
			outcomeLabelWidth, "left alone", o.endpoint, phaseAndReason(&o.after))
	}
}

// summaryLine is the last line of the output, one sentence over every request.
func (t *outcomeTotals) summaryLine(waited time.Duration) string {
	if waited == 0 && t.requests > 0 {
		return fmt.Sprintf("%d %s: redelivery requested, not confirmed (--wait=0)", t.requests, plural(t.requests, "DocumentEvent"))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s redelivered", t.confirmed, plural(t.confirmed, "DocumentEvent"))
	if t.confirmed > 0 {
		started := t.restarted + t.newID + t.added
		fmt.Fprintf(&b, ": %d %s restarted", started, deliveries(started))
		var detail []string
		if t.newID > 0 {
			detail = append(detail, fmt.Sprintf("%d with a new delivery id as the endpoint was re-created", t.newID))
		}
		if t.added > 0 {
			detail = append(detail, fmt.Sprintf("%d added", t.added))
		}
		if len(detail) > 0 {
			b.WriteString(" (" + strings.Join(detail, ", ") + ")")
		}
		if t.notRestarted > 0 {
			fmt.Fprintf(&b, ", %d not restarted", t.notRestarted)
		}
		if t.outOfScope > 0 {
			fmt.Fprintf(&b, ", %d left alone (--scope failed)", t.outOfScope)
		}
		if t.notAdded > 0 {
			fmt.Fprintf(&b, ", %d matching %s not added (at most %d deliveries per event)",
				t.notAdded, plural(t.notAdded, "endpoint"), webhooksv1alpha1.MaxDeliveriesPerEvent)
		}
	}
	if t.unconfirmed > 0 {
		fmt.Fprintf(&b, "; %d not confirmed within %s", t.unconfirmed, waited)
	}
	if t.superseded > 0 {
		fmt.Fprintf(&b, "; %d replaced by a newer request", t.superseded)
	}
	if t.gone > 0 {
		fmt.Fprintf(&b, "; %d deleted while waiting", t.gone)
	}
	return b.String()
}

// maxListedNames bounds the event names the summary lists per group.
const maxListedNames = 10

// printSummaryDetail writes, for the summary of many events, the reasons deliveries were not restarted
// (grouped, most frequent first) and the events whose request was not confirmed.
func (t *outcomeTotals) printSummaryDetail(w io.Writer, waited time.Duration) error {
	var b strings.Builder
	if t.notRestarted > 0 {
		type group struct {
			why   string
			count int
		}
		groups := make([]group, 0, len(t.notRestartedWhy))
		for why, n := range t.notRestartedWhy {
			groups = append(groups, group{why, n})
		}
		slices.SortFunc(groups, func(a, b group) int {
			return cmp.Or(cmp.Compare(b.count, a.count), cmp.Compare(a.why, b.why))
		})
		fmt.Fprintf(&b, "%d %s not restarted:\n", t.notRestarted, deliveries(t.notRestarted))
		width := len(fmt.Sprint(groups[0].count))
		for _, g := range groups {
			fmt.Fprintf(&b, "  %*d  %s\n", width, g.count, g.why)
		}
	}
	if t.unconfirmed > 0 {
		fmt.Fprintf(&b, "DocumentEvents not confirmed within %s: %s\n", waited, listNames(t.unconfirmedNames))
	}
	if t.superseded > 0 {
		fmt.Fprintf(&b, "DocumentEvents whose request a newer one replaced: %s\n", listNames(t.supersededNames))
	}
	if t.gone > 0 {
		fmt.Fprintf(&b, "DocumentEvents deleted before the operator confirmed: %s\n", listNames(t.goneNames))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func listNames(names []string) string {
	if len(names) <= maxListedNames {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:maxListedNames], ", "), len(names)-maxListedNames)
}

func deliveries(n int) string { return plural(n, "delivery", "deliveries") }
