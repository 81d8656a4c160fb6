package main

import (
	"strings"
	"testing"
	"time"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

func redeliverAnnotations(t *testing.T, ns, name string) (requestedAt, scope string, scopeSet bool) {
	t.Helper()
	a := getEvent(t, ns, name).Annotations
	scope, scopeSet = a[webhooksv1alpha1.RedeliverScopeAnnotation]
	return a[webhooksv1alpha1.RedeliverRequestedAtAnnotation], scope, scopeSet
}

func TestRedeliverNamed(t *testing.T) {
	ns := newNamespace(t)
	newEvent(t, ns, "doc-a", nil)
	newEvent(t, ns, "doc-b", eventStatus(webhooksv1alpha1.DocumentEventDelivered, "orders=Delivered"))
	newEvent(t, ns, "doc-c", nil)

	r := kubectlWebhook(t, "", "redeliver", "doc-a", "doc-b", "-n", ns)
	mustSucceed(t, r)
	want := "documentevent/doc-a: redelivery requested\ndocumentevent/doc-b: redelivery requested\n2 DocumentEvents redelivered\n"
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
	mustSucceed(t, kubectlWebhook(t, "", "redeliver", "doc-a", "--scope", "failed", "-n", ns))
	second, scope, _ := redeliverAnnotations(t, ns, "doc-a")
	if scope != webhooksv1alpha1.RedeliverScopeFailed {
		t.Errorf("scope = %q, want failed", scope)
	}
	if second == first {
		t.Error("the second request reused the requested-at value")
	}

	// Without --scope the earlier scope is removed, so the whole event is sent again.
	mustSucceed(t, kubectlWebhook(t, "", "redeliver", "doc-a", "-n", ns))
	if _, scope, scopeSet := redeliverAnnotations(t, ns, "doc-a"); scopeSet {
		t.Errorf("scope %q left from the previous request", scope)
	}

	mustSucceed(t, kubectlWebhook(t, "", "redeliver", "doc-a", "--scope", "all", "-n", ns))
	if _, scope, _ := redeliverAnnotations(t, ns, "doc-a"); scope != "all" {
		t.Errorf("scope = %q, want all", scope)
	}
}

func TestRedeliverNamedMissing(t *testing.T) {
	ns := newNamespace(t)
	newEvent(t, ns, "doc-a", nil)

	r := kubectlWebhook(t, "", "redeliver", "doc-a", "nope", "-n", ns)
	mustFail(t, r, `documentevent/nope: not found in namespace "`+ns+`"`)
	if !strings.Contains(r.stdout, "documentevent/doc-a: redelivery requested\n1 DocumentEvent redelivered\n") {
		t.Errorf("the existing event was not redelivered: %s", r)
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
}

func TestRedeliverFailed(t *testing.T) {
	ns := newNamespace(t)
	other := newNamespace(t)
	newEvent(t, ns, "failed-1", eventStatus(webhooksv1alpha1.DocumentEventFailed, "orders=Failed"))
	newEvent(t, ns, "failed-2", eventStatus(webhooksv1alpha1.DocumentEventFailed, "orders=Delivered", "audit=Failed"))
	newEvent(t, ns, "delivered", eventStatus(webhooksv1alpha1.DocumentEventDelivered, "orders=Delivered"))
	newEvent(t, ns, "delivering", eventStatus(webhooksv1alpha1.DocumentEventDelivering, "orders=Retrying"))
	newEvent(t, ns, "new", nil)
	newEvent(t, other, "failed-other", eventStatus(webhooksv1alpha1.DocumentEventFailed, "orders=Failed"))

	r := kubectlWebhook(t, "", "redeliver", "--failed", "--scope", "failed", "-n", ns)
	mustSucceed(t, r)
	want := "documentevent/failed-1: redelivery requested\ndocumentevent/failed-2: redelivery requested\n2 DocumentEvents redelivered\n"
	if r.stdout != want {
		t.Errorf("stdout = %q, want %q", r.stdout, want)
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

	// -A covers every namespace and says where each event is.
	r = kubectlWebhook(t, "", "redeliver", "--failed", "-A")
	mustSucceed(t, r)
	for _, line := range []string{
		"documentevent/failed-1 in namespace " + ns + ": redelivery requested",
		"documentevent/failed-2 in namespace " + ns + ": redelivery requested",
		"documentevent/failed-other in namespace " + other + ": redelivery requested",
	} {
		if !strings.Contains(r.stdout, line+"\n") {
			t.Errorf("-A output lacks %q", line)
		}
	}
	if strings.Contains(r.stdout, "documentevent/delivered ") || strings.Contains(r.stdout, "documentevent/delivering ") {
		t.Errorf("-A redelivered an event that is not Failed: %s", r)
	}
	if at, _, _ := redeliverAnnotations(t, other, "failed-other"); at == "" {
		t.Error("-A did not redeliver the Failed event of the other namespace")
	}
}

func TestRedeliverFailedSince(t *testing.T) {
	ns := newNamespace(t)
	newEvent(t, ns, "failed-1", eventStatus(webhooksv1alpha1.DocumentEventFailed, "orders=Failed"))
	newEvent(t, ns, "delivered", eventStatus(webhooksv1alpha1.DocumentEventDelivered, "orders=Delivered"))

	r := kubectlWebhook(t, "", "redeliver", "--failed", "--since", "2h", "-n", ns)
	mustSucceed(t, r)
	if r.stdout != "documentevent/failed-1: redelivery requested\n1 DocumentEvent redelivered\n" {
		t.Errorf("--since 2h: unexpected output %s", r)
	}
	first, _, _ := redeliverAnnotations(t, ns, "failed-1")

	// creationTimestamp cannot be set back, so let the event age past a short window instead.
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
