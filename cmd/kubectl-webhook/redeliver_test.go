package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/routing"
	"github.com/1flow/webhook-operator/internal/webhookops"
)

func redeliverAnnotations(t *testing.T, ns, name string) (requestedAt, scope string, scopeSet bool) {
	t.Helper()
	a := getEvent(t, ns, name).Annotations
	scope, scopeSet = a[webhooksv1alpha1.RedeliverScopeAnnotation]
	return a[webhooksv1alpha1.RedeliverRequestedAtAnnotation], scope, scopeSet
}

// fakeOperator plays the operator's side of redelivery until the test ends: it acts once on every new
// redeliver-requested-at value in the namespaces (in all namespaces when none is given) as
// applyRedelivery in internal/controller/plan.go does. The deliveries in scope whose endpoint matches
// the event now start over, under the delivery id of the endpoint that exists now; the others stay as
// they are; a full redelivery adds the matching endpoints the event did not target. then, if not nil,
// changes the event further before its status is written, as attempts made right away would.
func fakeOperator(t *testing.T, then func(*webhooksv1alpha1.DocumentEvent), namespaces ...string) {
	t.Helper()
	if len(namespaces) == 0 {
		namespaces = []string{""}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		<-done
	})
	go func() {
		defer close(done)
		for {
			for _, ns := range namespaces {
				list := &webhooksv1alpha1.DocumentEventList{}
				if err := k.List(ctx, list, client.InNamespace(ns)); err != nil {
					if ctx.Err() == nil {
						t.Errorf("fake operator: %v", err)
					}
					continue
				}
				for i := range list.Items {
					ev := &list.Items[i]
					value := ev.Annotations[webhooksv1alpha1.RedeliverRequestedAtAnnotation]
					if value == "" || value == ev.Status.LastRedeliveryRequest {
						continue
					}
					if err := redeliverAsOperator(ctx, ev, then); err != nil && ctx.Err() == nil && !apierrors.IsConflict(err) {
						t.Errorf("fake operator: redeliver %s/%s: %v", ev.Namespace, ev.Name, err)
					}
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
}

func redeliverAsOperator(ctx context.Context, ev *webhooksv1alpha1.DocumentEvent, then func(*webhooksv1alpha1.DocumentEvent)) error {
	endpoints := &webhooksv1alpha1.WebhookEndpointList{}
	if err := k.List(ctx, endpoints, client.InNamespace(ev.Namespace)); err != nil {
		return err
	}
	current := map[string]*webhooksv1alpha1.WebhookEndpoint{}
	for i := range endpoints.Items {
		if ep := &endpoints.Items[i]; webhookops.EndpointMatches(ev, ep) {
			current[ep.Name] = ep
		}
	}
	before := ev.DeepCopy()
	st := &ev.Status
	st.LastRedeliveryRequest = ev.Annotations[webhooksv1alpha1.RedeliverRequestedAtAnnotation]
	onlyFailed := ev.Annotations[webhooksv1alpha1.RedeliverScopeAnnotation] == webhooksv1alpha1.RedeliverScopeFailed
	known := map[string]bool{}
	for i := range st.Deliveries {
		d := &st.Deliveries[i]
		known[d.Endpoint] = true
		ep := current[d.Endpoint]
		if ep == nil || (onlyFailed && d.Phase != webhooksv1alpha1.DeliveryFailed) {
			continue
		}
		*d = webhooksv1alpha1.EndpointDelivery{
			Endpoint: d.Endpoint, DeliveryID: routing.DeliveryID(ev.UID, ep.UID),
			Phase: webhooksv1alpha1.DeliveryPending, Reason: webhooksv1alpha1.RedeliveryRequestedReason,
			LastAttemptTime: d.LastAttemptTime,
		}
	}
	if !onlyFailed {
		for name, ep := range current {
			if !known[name] {
				st.Deliveries = append(st.Deliveries, webhooksv1alpha1.EndpointDelivery{
					Endpoint: name, DeliveryID: routing.DeliveryID(ev.UID, ep.UID),
					Phase: webhooksv1alpha1.DeliveryPending, Reason: webhooksv1alpha1.RedeliveryRequestedReason,
				})
			}
		}
		slices.SortFunc(st.Deliveries, func(a, b webhooksv1alpha1.EndpointDelivery) int { return cmp.Compare(a.Endpoint, b.Endpoint) })
	}
	if slices.ContainsFunc(st.Deliveries, func(d webhooksv1alpha1.EndpointDelivery) bool { return !d.Phase.IsFinal() }) {
		st.Phase = webhooksv1alpha1.DocumentEventPending
	}
	if then != nil {
		then(ev)
	}
	return k.Status().Patch(ctx, ev, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
}

// deliverTo is a then of fakeOperator: the restarted delivery to the endpoint succeeds right away.
func deliverTo(endpoint string) func(*webhooksv1alpha1.DocumentEvent) {
	return func(ev *webhooksv1alpha1.DocumentEvent) {
		for i := range ev.Status.Deliveries {
			d := &ev.Status.Deliveries[i]
			if d.Endpoint == endpoint && d.Reason == webhooksv1alpha1.RedeliveryRequestedReason {
				now := metav1.NowMicro()
				d.Phase, d.Reason, d.Attempts, d.LastStatusCode = webhooksv1alpha1.DeliveryDelivered, "", 1, 200
				d.LastAttemptTime, d.DeliveredAt = &now, &now
			}
		}
	}
}

func recreateEndpoint(t *testing.T, ns, name string) *webhooksv1alpha1.WebhookEndpoint {
	t.Helper()
	old := getEndpoint(t, ns, name)
	if err := k.Delete(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	ep := newEndpoint(t, ns, name)
	if ep.UID == old.UID {
		t.Fatalf("endpoint %s was re-created with the same UID", name)
	}
	return ep
}

func deleteEndpoint(t *testing.T, ns, name string) {
	t.Helper()
	if err := k.Delete(context.Background(), getEndpoint(t, ns, name)); err != nil {
		t.Fatal(err)
	}
}

func TestRedeliverNamed(t *testing.T) {
	ns := newNamespace(t)
	newEvent(t, ns, "doc-a", nil)
	newEvent(t, ns, "doc-b", eventStatus(webhooksv1alpha1.DocumentEventDelivered, "orders=Delivered"))
	newEvent(t, ns, "doc-c", nil)

	// --wait=0 only sets the annotation, and says that nothing confirmed it.
	r := kubectlWebhook(t, "", "redeliver", "doc-a", "doc-b", "-n", ns, "--wait=0")
	mustSucceed(t, r)
	want := "documentevent/doc-a: redelivery requested, not confirmed (--wait=0)\n" +
		"documentevent/doc-b: redelivery requested, not confirmed (--wait=0)\n" +
		"2 DocumentEvents: redelivery requested, not confirmed (--wait=0)\n"
	if r.stdout != want {
		t.Errorf("stdout = %q, want %q", r.stdout, want)
	}
	first, _, scopeSet := redeliverAnnotations(t, ns, "doc-a")
	if _, err := time.Parse(time.RFC3339Nano, first); err != nil {
		t.Fatalf("doc-a: annotation %q is not RFC 3339: %v", first, err)
	}
	if scopeSet {
		t.Error("doc-a: scope annotation set without --scope")
	}
	if b, _, _ := redeliverAnnotations(t, ns, "doc-b"); b != first {
		t.Errorf("doc-b: requested-at %q, want the same value as doc-a (%q)", b, first)
	}
	if c, _, _ := redeliverAnnotations(t, ns, "doc-c"); c != "" {
		t.Errorf("doc-c was not named but got requested-at %q", c)
	}

	// --scope failed sets the scope with a new request value.
	mustSucceed(t, kubectlWebhook(t, "", "redeliver", "doc-a", "--scope", "failed", "-n", ns, "--wait", "0s"))
	second, scope, _ := redeliverAnnotations(t, ns, "doc-a")
	if scope != webhooksv1alpha1.RedeliverScopeFailed {
		t.Errorf("scope = %q, want failed", scope)
	}
	if second == first {
		t.Error("the second request reused the requested-at value")
	}

	// Without --scope the earlier scope is removed, so the whole event is sent again.
	mustSucceed(t, kubectlWebhook(t, "", "redeliver", "doc-a", "-n", ns, "--wait=0"))
	if _, scope, scopeSet := redeliverAnnotations(t, ns, "doc-a"); scopeSet {
		t.Errorf("scope %q left from the previous request", scope)
	}

	mustSucceed(t, kubectlWebhook(t, "", "redeliver", "doc-a", "--scope", "all", "-n", ns, "--wait=0"))
	if _, scope, _ := redeliverAnnotations(t, ns, "doc-a"); scope != "all" {
		t.Errorf("scope = %q, want all", scope)
	}
}

// TestRedeliverReport covers what the operator does to each delivery of a redelivered event, and how
// the plugin reports it: restarted, restarted to a re-created endpoint under a new id, added, and not
// restarted because the endpoint is gone or no longer matches.
func TestRedeliverReport(t *testing.T) {
	ns := newNamespace(t)
	for _, name := range []string{"audit", "gone", "orders", "picky"} {
		newEndpoint(t, ns, name)
	}
	ev := newEvent(t, ns, "doc-a", eventStatus(webhooksv1alpha1.DocumentEventFailed,
		"audit=Failed:AttemptsExhausted", "gone=Failed:EndpointDeleted", "orders=Failed:AttemptsExhausted", "picky=Failed:AttemptsExhausted"))
	oldAuditID := ev.Status.Deliveries[0].DeliveryID

	deleteEndpoint(t, ns, "gone")
	audit := recreateEndpoint(t, ns, "audit")
	newEndpoint(t, ns, "billing") // matches the event now, and was not there when it was first delivered
	picky := getEndpoint(t, ns, "picky")
	picky.Spec.DocTypes = []string{"RECEIPT"} // the event has no docType, so picky no longer matches it
	if err := k.Update(context.Background(), picky); err != nil {
		t.Fatal(err)
	}
	fakeOperator(t, deliverTo("orders"), ns)

	r := kubectlWebhook(t, "", "redeliver", "doc-a", "-n", ns)
	mustSucceed(t, r)
	newAuditID := routing.DeliveryID(ev.UID, audit.UID)
	want := "documentevent/doc-a: redelivered, 3 of 5 deliveries restarted\n" +
		"  restarted      audit, now Pending, with a new delivery id " + newAuditID + " (was " + oldAuditID + "): the endpoint was re-created\n" +
		"  added          billing, now Pending: the endpoint matches the event now and did not before\n" +
		"  not restarted  endpoint gone no longer exists: still Failed (EndpointDeleted)\n" +
		"  restarted      orders, now Delivered\n" +
		"  not restarted  endpoint picky no longer matches this event: still Failed (AttemptsExhausted)\n" +
		"1 DocumentEvent redelivered: 3 deliveries restarted (1 with a new delivery id as the endpoint was re-created, 1 added), 2 not restarted\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	if r.stderr != "" {
		t.Errorf("unexpected stderr: %s", r.stderr)
	}

	// With --scope failed, the deliveries that did not fail are left alone and reported so.
	setDeliveries(t, ns, "doc-a", map[string]string{"audit": "Failed:AttemptsExhausted", "billing": "Delivered"})
	r = kubectlWebhook(t, "", "redeliver", "doc-a", "-n", ns, "--scope", "failed")
	mustSucceed(t, r)
	want = "documentevent/doc-a: redelivered, 1 of 5 deliveries restarted\n" +
		"  restarted      audit, now Pending\n" +
		"  left alone     billing, Delivered: --scope failed restarts only failed deliveries\n" +
		"  not restarted  endpoint gone no longer exists: still Failed (EndpointDeleted)\n" +
		"  left alone     orders, Delivered: --scope failed restarts only failed deliveries\n" +
		"  not restarted  endpoint picky no longer matches this event: still Failed (AttemptsExhausted)\n" +
		"1 DocumentEvent redelivered: 1 delivery restarted, 2 not restarted, 2 left alone (--scope failed)\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
}

// setDeliveries sets the phase (and reason, after a colon) of deliveries of the event, by endpoint.
func setDeliveries(t *testing.T, ns, name string, states map[string]string) {
	t.Helper()
	ev := getEvent(t, ns, name)
	before := ev.DeepCopy()
	for i := range ev.Status.Deliveries {
		d := &ev.Status.Deliveries[i]
		if state, ok := states[d.Endpoint]; ok {
			phase, reason, _ := strings.Cut(state, ":")
			d.Phase, d.Reason, d.Attempts = webhooksv1alpha1.DeliveryPhase(phase), reason, 1
		}
	}
	if err := k.Status().Patch(context.Background(), ev, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
}

func TestRedeliverNothingRestarted(t *testing.T) {
	ns := newNamespace(t)
	newEndpoint(t, ns, "gone")
	newEvent(t, ns, "doc-a", eventStatus(webhooksv1alpha1.DocumentEventFailed, "gone=Failed:AttemptsExhausted"))
	deleteEndpoint(t, ns, "gone")
	newEvent(t, ns, "doc-none", eventStatus(webhooksv1alpha1.DocumentEventPending))
	fakeOperator(t, nil, ns)

	r := kubectlWebhook(t, "", "redeliver", "doc-a", "doc-none", "-n", ns)
	mustSucceed(t, r) // the operator acted on both requests; there was just nothing it could restart
	want := "documentevent/doc-a: redelivery confirmed, but no delivery was restarted\n" +
		"  not restarted  endpoint gone no longer exists: still Failed (AttemptsExhausted)\n" +
		"documentevent/doc-none: redelivery confirmed, but no WebhookEndpoint matches the event: nothing to send\n" +
		"2 DocumentEvents redelivered: 0 deliveries restarted, 1 not restarted\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
}

func TestRedeliverNotConfirmed(t *testing.T) {
	ns := newNamespace(t)
	newEvent(t, ns, "doc-a", eventStatus(webhooksv1alpha1.DocumentEventFailed, "orders=Failed"))

	// No operator acts on the request.
	start := time.Now()
	r := kubectlWebhook(t, "", "redeliver", "doc-a", "-n", ns, "--wait", "1s")
	mustFail(t, r, "is the webhook-operator running?")
	if elapsed := time.Since(start); elapsed < time.Second || elapsed > 20*time.Second {
		t.Errorf("waited %s, want about 1s", elapsed)
	}
	want := "documentevent/doc-a: redelivery requested, NOT CONFIRMED: the operator did not act on it within 1s (phase Failed)\n" +
		"0 DocumentEvents redelivered; 1 not confirmed within 1s\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	at, _, _ := redeliverAnnotations(t, ns, "doc-a")
	if !strings.Contains(r.stderr, "error: the operator did not confirm 1 of 1 redelivery request within 1s (status.lastRedeliveryRequest is not "+at+")") ||
		!strings.Contains(r.stderr, "The requests stay on the events") {
		t.Errorf("stderr does not explain the timeout: %s", r.stderr)
	}

	// The request stays: an operator that comes up later acts on it.
	fakeOperator(t, nil, ns)
	deadline := time.Now().Add(10 * time.Second)
	for getEvent(t, ns, "doc-a").Status.LastRedeliveryRequest != at {
		if time.Now().After(deadline) {
			t.Fatal("the fake operator did not act on the request left on the event")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRedeliverNamedMissing(t *testing.T) {
	ns := newNamespace(t)
	newEndpoint(t, ns, "orders")
	newEvent(t, ns, "doc-a", eventStatus(webhooksv1alpha1.DocumentEventFailed, "orders=Failed"))
	fakeOperator(t, nil, ns)

	r := kubectlWebhook(t, "", "redeliver", "doc-a", "nope", "-n", ns)
	mustFail(t, r, `documentevent/nope: not found in namespace "`+ns+`"`)
	want := "documentevent/doc-a: redelivered, 1 of 1 delivery restarted\n" +
		"  restarted      orders, now Pending\n" +
		"1 DocumentEvent redelivered: 1 delivery restarted\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	if !strings.Contains(r.stderr, "1 of 2 DocumentEvents could not be redelivered") {
		t.Errorf("no summary of the failures: %s", r)
	}
}

func TestRedeliverUsage(t *testing.T) {
	mustFail(t, kubectlWebhook(t, "", "redeliver"), "give at least one DocumentEvent name, or --failed")
	mustFail(t, kubectlWebhook(t, "", "redeliver", "doc-a", "--failed"), "not both")
	mustFail(t, kubectlWebhook(t, "", "redeliver", "doc-a", "--since", "1h"), "--since works only with --failed")
	mustFail(t, kubectlWebhook(t, "", "redeliver", "doc-a", "-A"), "works only with --failed")
	mustFail(t, kubectlWebhook(t, "", "redeliver", "doc-a", "--scope", "some"), `--scope must be "failed" or "all"`)
	mustFail(t, kubectlWebhook(t, "", "redeliver", "--failed", "--since", "-1h"), "--since must not be negative")
	mustFail(t, kubectlWebhook(t, "", "redeliver", "doc-a", "--wait", "-1s"), "--wait must not be negative")

	r := kubectlWebhook(t, "", "redeliver", "--help")
	mustSucceed(t, r)
	for _, want := range []string{"--wait duration", "(default 30s)", "status.lastRedeliveryRequest", "Exit code 1", "new delivery id"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestRedeliverFailed(t *testing.T) {
	ns := newNamespace(t)
	other := newNamespace(t)
	for _, n := range []string{ns, other} {
		newEndpoint(t, n, "orders")
		newEndpoint(t, n, "audit")
	}
	newEvent(t, ns, "failed-1", eventStatus(webhooksv1alpha1.DocumentEventFailed, "orders=Failed"))
	newEvent(t, ns, "failed-2", eventStatus(webhooksv1alpha1.DocumentEventFailed, "orders=Delivered", "audit=Failed"))
	newEvent(t, ns, "delivered", eventStatus(webhooksv1alpha1.DocumentEventDelivered, "orders=Delivered"))
	newEvent(t, ns, "delivering", eventStatus(webhooksv1alpha1.DocumentEventDelivering, "orders=Retrying"))
	newEvent(t, ns, "new", nil)
	newEvent(t, other, "failed-other", eventStatus(webhooksv1alpha1.DocumentEventFailed, "orders=Failed"))
	fakeOperator(t, nil, ns, other)

	r := kubectlWebhook(t, "", "redeliver", "--failed", "--scope", "failed", "-n", ns)
	mustSucceed(t, r)
	want := "documentevent/failed-1: redelivered, 1 of 1 delivery restarted\n" +
		"  restarted      orders, now Pending\n" +
		"documentevent/failed-2: redelivered, 1 of 2 deliveries restarted\n" +
		"  left alone     orders, Delivered: --scope failed restarts only failed deliveries\n" +
		"  restarted      audit, now Pending\n" +
		"2 DocumentEvents redelivered: 2 deliveries restarted, 1 left alone (--scope failed)\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	for _, name := range []string{"failed-1", "failed-2"} {
		if at, scope, _ := redeliverAnnotations(t, ns, name); at == "" || scope != "failed" {
			t.Errorf("%s: requested-at %q scope %q, want a request with scope failed", name, at, scope)
		}
	}
	for _, name := range []string{"delivered", "delivering", "new"} {
		if at, _, _ := redeliverAnnotations(t, ns, name); at != "" {
			t.Errorf("%s is not Failed but was redelivered", name)
		}
	}
	if at, _, _ := redeliverAnnotations(t, other, "failed-other"); at != "" {
		t.Error("an event of another namespace was redelivered without -A")
	}

	// -A covers every namespace, with the namespace in each line. Other tests leave Failed events in
	// their namespaces too, so the report may be a summary: only do -A with --wait=0 here, and read
	// the result from the annotations.
	r = kubectlWebhook(t, "", "redeliver", "--failed", "-A", "--wait=0")
	mustSucceed(t, r)
	if strings.Contains(r.stdout, "documentevent/delivered ") || strings.Contains(r.stdout, "documentevent/delivering ") {
		t.Errorf("-A redelivered an event that is not Failed: %s", r)
	}
	if !strings.Contains(r.stdout, ": redelivery requested, not confirmed (--wait=0)\n") {
		t.Errorf("-A output: %s", r)
	}
	if !strings.Contains(r.stdout, " in namespace "+other+": ") && !strings.Contains(r.stdout, "DocumentEvents: redelivery requested") {
		t.Errorf("-A output names no namespace: %s", r)
	}
	if at, _, _ := redeliverAnnotations(t, other, "failed-other"); at == "" {
		t.Error("-A did not redeliver the Failed event of the other namespace")
	}
	if at, _, _ := redeliverAnnotations(t, ns, "delivered"); at != "" {
		t.Error("-A redelivered an event that is not Failed")
	}
}

// TestRedeliverFailedSummary: with many events --failed prints a summary with the reasons grouped.
func TestRedeliverFailedSummary(t *testing.T) {
	ns := newNamespace(t)
	for _, name := range []string{"orders", "audit", "legacy"} {
		newEndpoint(t, ns, name)
	}
	const events = summaryThreshold + 2
	for i := range events {
		deliveries := []string{"orders=Failed:AttemptsExhausted", "legacy=Failed:AttemptsExhausted"}
		if i%3 == 0 {
			deliveries = append(deliveries, "audit=Failed:AttemptsExhausted")
		}
		newEvent(t, ns, fmt.Sprintf("failed-%02d", i), eventStatus(webhooksv1alpha1.DocumentEventFailed, deliveries...))
	}
	newEvent(t, ns, "delivered", eventStatus(webhooksv1alpha1.DocumentEventDelivered, "orders=Delivered"))
	deleteEndpoint(t, ns, "legacy")
	recreateEndpoint(t, ns, "audit")
	fakeOperator(t, nil, ns)

	r := kubectlWebhook(t, "", "redeliver", "--failed", "-n", ns)
	mustSucceed(t, r)
	// 12 events: orders restarted in each; audit (4 of them) re-created; every event gets audit, the 8
	// others as an added delivery; legacy is gone.
	want := "12 DocumentEvents redelivered: 24 deliveries restarted (4 with a new delivery id as the endpoint was re-created, 8 added), 12 not restarted\n" +
		"12 deliveries not restarted:\n" +
		"  12  endpoint legacy no longer exists: still Failed (AttemptsExhausted)\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
}

func TestRedeliverFailedSince(t *testing.T) {
	ns := newNamespace(t)
	newEndpoint(t, ns, "orders")
	newEvent(t, ns, "failed-1", eventStatus(webhooksv1alpha1.DocumentEventFailed, "orders=Failed"))
	newEvent(t, ns, "delivered", eventStatus(webhooksv1alpha1.DocumentEventDelivered, "orders=Delivered"))
	fakeOperator(t, nil, ns)

	r := kubectlWebhook(t, "", "redeliver", "--failed", "--since", "2h", "-n", ns, "--scope", "failed")
	mustSucceed(t, r)
	if !strings.HasPrefix(r.stdout, "documentevent/failed-1: redelivered, 1 of 1 delivery restarted\n") {
		t.Errorf("--since 2h: unexpected output %s", r)
	}
	first, _, _ := redeliverAnnotations(t, ns, "failed-1")

	// creationTimestamp cannot be set back, so let the event age past a short window instead. The
	// redelivery left it Pending; make it Failed again.
	ev := getEvent(t, ns, "failed-1")
	before := ev.DeepCopy()
	ev.Status.Phase = webhooksv1alpha1.DocumentEventFailed
	if err := k.Status().Patch(context.Background(), ev, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2100 * time.Millisecond)
	r = kubectlWebhook(t, "", "redeliver", "--failed", "--since", "500ms", "-n", ns)
	mustSucceed(t, r)
	if r.stdout != "0 DocumentEvents redelivered\n" {
		t.Errorf("--since 500ms: unexpected output %s", r)
	}
	if !strings.Contains(r.stderr, "No Failed DocumentEvents found in namespace "+ns+" created within 500ms") {
		t.Errorf("--since 500ms: no explanation on stderr: %s", r)
	}
	if at, _, _ := redeliverAnnotations(t, ns, "failed-1"); at != first {
		t.Error("an event older than --since was redelivered")
	}
}
