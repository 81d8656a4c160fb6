package main

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// setEndpointStatus writes the Ready condition and the last delivery as the operator would.
func setEndpointStatus(t *testing.T, ns, name string, ready metav1.ConditionStatus, reason string, last *webhooksv1alpha1.LastDelivery) {
	t.Helper()
	ep := getEndpoint(t, ns, name)
	before := ep.DeepCopy()
	ep.Status.Conditions = []metav1.Condition{{
		Type: webhooksv1alpha1.ReadyCondition, Status: ready, Reason: reason,
		Message: "set by the test", LastTransitionTime: metav1.Now(), ObservedGeneration: ep.Generation,
	}}
	ep.Status.LastDelivery = last
	if err := k.Status().Patch(context.Background(), ep, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
}

// statusRows parses the table: the header's columns, then one map per row keyed by column. The LAST
// DELIVERY cell holds spaces, so rows are cut at the header's column offsets. The table ends at the
// first empty line; what follows is returned as footer.
func statusRows(t *testing.T, output string) (header []string, rows []map[string]string, footer string) {
	t.Helper()
	table, footer, _ := strings.Cut(output, "\n\n")
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	if len(lines) == 0 {
		t.Fatal("empty table")
	}
	head := lines[0]
	var starts []int
	for i := range head {
		if head[i] != ' ' && (i == 0 || (head[i-1] == ' ' && (i < 2 || head[i-2] == ' '))) {
			starts = append(starts, i)
		}
	}
	for i, start := range starts {
		end := len(head)
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		header = append(header, strings.TrimSpace(head[start:end]))
	}
	for _, line := range lines[1:] {
		row := map[string]string{}
		for i, start := range starts {
			end := len(line)
			if i+1 < len(starts) {
				end = min(starts[i+1], len(line))
			}
			if start < len(line) {
				row[header[i]] = strings.TrimSpace(line[start:end])
			}
		}
		rows = append(rows, row)
	}
	return header, rows, footer
}

func rowFor(rows []map[string]string, namespace, name string) map[string]string {
	for _, r := range rows {
		if r["NAME"] == name && (namespace == "" || r["NAMESPACE"] == namespace) {
			return r
		}
	}
	return nil
}

func TestStatus(t *testing.T) {
	ns := newNamespace(t)
	for _, name := range []string{"alpha", "beta", "gamma"} {
		newEndpoint(t, ns, name)
	}
	setEndpointStatus(t, ns, "alpha", metav1.ConditionTrue, webhooksv1alpha1.ReadyReason, &webhooksv1alpha1.LastDelivery{
		Event: "e1", Time: metav1.NewTime(time.Now().Add(-5 * time.Minute)), StatusCode: 200, Duration: webhooksv1alpha1.AttemptDuration(400 * time.Microsecond), Success: true,
	})
	setEndpointStatus(t, ns, "beta", metav1.ConditionFalse, webhooksv1alpha1.CircuitOpenReason, &webhooksv1alpha1.LastDelivery{
		Event: "e2", Time: metav1.NewTime(time.Now().Add(-30 * time.Second)), StatusCode: 503, Success: false,
	})
	// gamma has no status yet.

	newEvent(t, ns, "e1", eventStatus(webhooksv1alpha1.DocumentEventDelivering, "alpha=Delivered", "beta=Retrying"))
	newEvent(t, ns, "e2", eventStatus(webhooksv1alpha1.DocumentEventDelivering, "alpha=Pending", "beta=Failed"))
	newEvent(t, ns, "e3", eventStatus(webhooksv1alpha1.DocumentEventFailed, "alpha=Failed", "beta=Failed"))
	newEvent(t, ns, "e4", eventStatus(webhooksv1alpha1.DocumentEventDelivered, "alpha=Delivered", "beta=Delivered"))
	newEvent(t, ns, "e5", eventStatus(webhooksv1alpha1.DocumentEventDelivering, "alpha=Retrying", "deleted-endpoint=Retrying"))
	newEvent(t, ns, "e6", nil)
	// Events of another namespace count for that namespace only.
	other := newNamespace(t)
	newEndpoint(t, other, "alpha")
	newEvent(t, other, "x1", eventStatus(webhooksv1alpha1.DocumentEventFailed, "alpha=Failed"))

	r := kubectlWebhook(t, "", "status", "-n", ns)
	mustSucceed(t, r)
	header, rows, footer := statusRows(t, r.stdout)
	wantHeader := []string{"NAME", "READY", "REASON", "CIRCUIT", "LAST DELIVERY", "PENDING", "FAILED"}
	if strings.Join(header, "|") != strings.Join(wantHeader, "|") {
		t.Fatalf("header = %q, want %q", header, wantHeader)
	}
	if len(rows) != 3 {
		t.Fatalf("want 3 rows, got %d: %s", len(rows), r)
	}
	want := map[string]map[string]string{
		"alpha": {"READY": "True", "REASON": "Ready", "CIRCUIT": "closed", "LAST DELIVERY": "5m ago 200 ok in 0.4ms", "PENDING": "2", "FAILED": "1"},
		"beta":  {"READY": "False", "REASON": "CircuitOpen", "CIRCUIT": "open", "LAST DELIVERY": "30s ago 503 failed", "PENDING": "1", "FAILED": "2"},
		"gamma": {"READY": "Unknown", "REASON": "-", "CIRCUIT": "closed", "LAST DELIVERY": "-", "PENDING": "0", "FAILED": "0"},
	}
	for i, name := range []string{"alpha", "beta", "gamma"} {
		if rows[i]["NAME"] != name {
			t.Errorf("row %d is %q, want %q (sorted by name)", i, rows[i]["NAME"], name)
		}
		row := rowFor(rows, "", name)
		if row == nil {
			t.Errorf("no row for %s", name)
			continue
		}
		for col, value := range want[name] {
			got := row[col]
			if col == "LAST DELIVERY" && value != "-" {
				// The age depends on the clock: compare the HTTP status and outcome, and the age's first digit.
				gotAge, gotRest, _ := strings.Cut(got, " ago ")
				wantAge, wantRest, _ := strings.Cut(value, " ago ")
				if gotRest != wantRest || gotAge == "" || gotAge[0] != wantAge[0] {
					t.Errorf("%s %s = %q, want about %q", name, col, got, value)
				}
				continue
			}
			if got != value {
				t.Errorf("%s %s = %q, want %q", name, col, got, value)
			}
		}
	}

	// e5's delivery to an endpoint that does not exist is counted below the table.
	if want := "Deliveries to deleted or re-created endpoints, not counted above: 1 pending, 0 failed\n" +
		"  deleted-endpoint (deleted): 1 pending, 0 failed\n"; footer != want {
		t.Errorf("footer = %q, want %q", footer, want)
	}

	// -A adds the NAMESPACE column and covers both namespaces.
	r = kubectlWebhook(t, "", "status", "-A")
	mustSucceed(t, r)
	header, rows, footer = statusRows(t, r.stdout)
	if header[0] != "NAMESPACE" || header[1] != "NAME" {
		t.Fatalf("-A header = %q", header)
	}
	if row := rowFor(rows, ns, "beta"); row == nil || row["PENDING"] != "1" || row["FAILED"] != "2" || row["CIRCUIT"] != "open" {
		t.Errorf("-A row of %s/beta = %v", ns, row)
	}
	if row := rowFor(rows, other, "alpha"); row == nil || row["PENDING"] != "0" || row["FAILED"] != "1" {
		t.Errorf("-A row of %s/alpha = %v", other, row)
	}
	if row := rowFor(rows, ns, "alpha"); row == nil || row["PENDING"] != "2" || row["FAILED"] != "1" {
		t.Errorf("-A row of %s/alpha = %v", ns, row)
	}
	// Other tests leave events in their namespaces too: look for this one's line only.
	if want := "\n  " + ns + "/deleted-endpoint (deleted): 1 pending, 0 failed\n"; !strings.Contains(footer, want) {
		t.Errorf("-A footer lacks %q: %q", want, footer)
	}
}

// TestStatusRecreatedEndpoint: an endpoint deleted and created again under the same name is charged only
// with the deliveries to itself; those to the earlier one, and to deleted endpoints, are counted apart.
func TestStatusRecreatedEndpoint(t *testing.T) {
	ns := newNamespace(t)
	newEndpoint(t, ns, "alpha")
	newEndpoint(t, ns, "old")
	newEvent(t, ns, "e1", eventStatus(webhooksv1alpha1.DocumentEventFailed, "alpha=Failed", "old=Failed"))
	newEvent(t, ns, "e2", eventStatus(webhooksv1alpha1.DocumentEventDelivering, "alpha=Retrying", "old=Delivered"))
	recreateEndpoint(t, ns, "alpha")
	deleteEndpoint(t, ns, "old")
	newEvent(t, ns, "e3", eventStatus(webhooksv1alpha1.DocumentEventFailed, "alpha=Failed"))
	newEvent(t, ns, "e4", eventStatus(webhooksv1alpha1.DocumentEventDelivering, "alpha=Pending"))

	r := kubectlWebhook(t, "", "status", "-n", ns)
	mustSucceed(t, r)
	_, rows, footer := statusRows(t, r.stdout)
	if len(rows) != 1 {
		t.Fatalf("want 1 row, got %d: %s", len(rows), r)
	}
	// Only e3 and e4 were delivered to the alpha that exists now.
	if row := rowFor(rows, "", "alpha"); row == nil || row["PENDING"] != "1" || row["FAILED"] != "1" {
		t.Errorf("alpha row = %v, want 1 pending and 1 failed", row)
	}
	want := "Deliveries to deleted or re-created endpoints, not counted above: 1 pending, 2 failed\n" +
		"  alpha (earlier endpoint, since re-created): 1 pending, 1 failed\n" +
		"  old (deleted): 0 pending, 1 failed\n"
	if footer != want {
		t.Errorf("footer:\n%s\nwant:\n%s", footer, want)
	}

	// Without endpoints there is no table, but the deliveries are still counted.
	deleteEndpoint(t, ns, "alpha")
	r = kubectlWebhook(t, "", "status", "-n", ns)
	mustSucceed(t, r)
	if !strings.Contains(r.stderr, "No WebhookEndpoints found in "+ns+" namespace.") {
		t.Errorf("no note that there are no endpoints: %s", r)
	}
	want = "Deliveries to deleted or re-created endpoints, not counted above: 2 pending, 3 failed\n" +
		"  alpha (deleted): 2 pending, 2 failed\n" +
		"  old (deleted): 0 pending, 1 failed\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
}

func TestStatusEmpty(t *testing.T) {
	ns := newNamespace(t)
	r := kubectlWebhook(t, "", "status", "-n", ns)
	mustSucceed(t, r)
	if r.stdout != "" || !strings.Contains(r.stderr, "No WebhookEndpoints found in "+ns+" namespace.") {
		t.Errorf("unexpected output for an empty namespace: %s", r)
	}
}
