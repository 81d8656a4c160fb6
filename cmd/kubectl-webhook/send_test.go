package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/payload"
)

// fullPayload is a payload as receivers get it, with every member set.
const fullPayload = `{
  "event": "document.ready",
  "success": true,
  "documentId": "doc_ABC.123/xyz",
  "status": {
    "extractionStatus": "INDEXED",
    "docType": "INVOICE",
    "createdAt": "2024-01-15T10:30:00Z",
    "updatedAt": "2024-01-15T10:35:00Z",
    "extractionErrors": [{"field": "dueDate", "message": "not found"}]
  },
  "document": {"description": "Invoice #1042 from Acme", "totalAmount": 1234.56, "documentDate": "2024-01-15"},
  "extraction": {
    "fields": {"invoiceNumber": "1042", "vendor": "Acme GmbH", "rate": 0.10000000000000000001},
    "tables": {"items": [{"description": "Widget", "quantity": 2, "unitPrice": 617.28}]}
  }
}`

// minimalPayload has "document": null and "extraction": null.
const minimalPayload = `{"event":"document.ready","success":true,"documentId":"doc_receipt_7",` +
	`"status":{"extractionStatus":"INDEXED","docType":null,"createdAt":"2024-01-15T10:30:00Z","updatedAt":"2024-01-15T10:30:00Z",` +
	`"extractionErrors":null},"document":null,"extraction":null}`

func writePayload(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "payload.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var createdName = regexp.MustCompile(`^documentevent/([a-z0-9.-]+) created in namespace (\S+) \(documentId (\S+)\)\n$`)

func TestSendFullPayload(t *testing.T) {
	ns := newNamespace(t)
	r := kubectlWebhook(t, "", "send", "-f", writePayload(t, fullPayload), "-n", ns)
	mustSucceed(t, r)
	m := createdName.FindStringSubmatch(r.stdout)
	if m == nil || m[2] != ns || m[3] != "doc_ABC.123/xyz" {
		t.Fatalf("unexpected output: %s", r)
	}
	if !regexp.MustCompile(`^doc-abc-123-xyz-[a-z0-9]{5}$`).MatchString(m[1]) {
		t.Errorf("name %q is not the sanitized documentId plus a suffix", m[1])
	}

	ev := getEvent(t, ns, m[1])
	spec := ev.Spec
	if spec.DocumentID != "doc_ABC.123/xyz" || spec.Event != webhooksv1alpha1.DocumentReadyEvent {
		t.Errorf("documentId %q event %q", spec.DocumentID, spec.Event)
	}
	st := spec.DocumentStatus
	if st.ExtractionStatus != "INDEXED" || st.DocType == nil || *st.DocType != "INVOICE" ||
		st.CreatedAt != "2024-01-15T10:30:00Z" || st.UpdatedAt != "2024-01-15T10:35:00Z" {
		t.Errorf("documentStatus = %+v", st)
	}
	if len(st.ExtractionErrors) != 1 || string(st.ExtractionErrors[0].Raw) != `{"field":"dueDate","message":"not found"}` {
		t.Errorf("extractionErrors = %v", st.ExtractionErrors)
	}
	if spec.Document == nil || spec.Document.TotalAmount == nil || *spec.Document.TotalAmount != "1234.56" {
		t.Fatalf("document = %+v, want totalAmount 1234.56", spec.Document)
	}
	if d := spec.Document.Description; d == nil || *d != "Invoice #1042 from Acme" || spec.Document.DocumentDate != "2024-01-15" {
		t.Errorf("document = %+v", spec.Document)
	}
	if spec.Extraction == nil || spec.Extraction.Fields == nil || spec.Extraction.Tables == nil {
		t.Fatalf("extraction = %+v", spec.Extraction)
	}
	// The API server keeps free-form numbers as float64 (0.10000000000000000001 comes back as 0.1); only
	// totalAmount, which send writes as a Decimal string, keeps every digit through the API server.
	if got := string(spec.Extraction.Fields.Raw); !strings.Contains(got, `"invoiceNumber":"1042"`) ||
		!strings.Contains(got, `"vendor":"Acme GmbH"`) {
		t.Errorf("fields = %s", got)
	}
	if got := string(spec.Extraction.Tables.Raw); got != `{"items":[{"description":"Widget","quantity":2,"unitPrice":617.28}]}` {
		t.Errorf("tables = %s", got)
	}
	if spec.EndpointSelector != nil {
		t.Errorf("selector set without --selector: %v", spec.EndpointSelector)
	}

	// Sending the same payload again creates a second event.
	r = kubectlWebhook(t, "", "send", "-f", writePayload(t, fullPayload), "-n", ns)
	mustSucceed(t, r)
	if again := createdName.FindStringSubmatch(r.stdout); again == nil || again[1] == m[1] {
		t.Errorf("second send did not create a new event: %s", r)
	}
}

func TestSendNullDocument(t *testing.T) {
	ns := newNamespace(t)
	r := kubectlWebhook(t, minimalPayload, "send", "-f", "-", "-n", ns, "--name", "receipt-7-replay", "--selector", "team=billing,tier in (prod,staging)")
	mustSucceed(t, r)
	ev := getEvent(t, ns, "receipt-7-replay")
	if ev.Spec.Document != nil || ev.Spec.Extraction != nil {
		t.Errorf("document %+v extraction %+v, want both null", ev.Spec.Document, ev.Spec.Extraction)
	}
	if ev.Spec.DocumentStatus.DocType != nil || ev.Spec.DocumentStatus.ExtractionErrors != nil {
		t.Errorf("documentStatus = %+v, want docType and extractionErrors null", ev.Spec.DocumentStatus)
	}
	sel := ev.Spec.EndpointSelector
	if sel == nil || sel.MatchLabels["team"] != "billing" || len(sel.MatchExpressions) != 1 ||
		sel.MatchExpressions[0].Key != "tier" || len(sel.MatchExpressions[0].Values) != 2 {
		t.Errorf("endpointSelector = %+v", sel)
	}

	mustFail(t, kubectlWebhook(t, minimalPayload, "send", "-f", "-", "-n", ns, "--name", "receipt-7-replay"), "already exists")
}

func TestSendExactDigits(t *testing.T) {
	ns := newNamespace(t)
	body := strings.Replace(fullPayload, "1234.56", "12345678901234567890.123456789", 1)
	r := kubectlWebhook(t, "", "send", "-f", writePayload(t, body), "-n", ns, "--name", "big")
	mustSucceed(t, r)
	if got := *getEvent(t, ns, "big").Spec.Document.TotalAmount; got != "12345678901234567890.123456789" {
		t.Errorf("totalAmount = %s", got)
	}
}

// The operator sends an event created by send as the payload it was created from, byte for byte, when
// the payload is compact and has its members in the contract's order.
func TestSendReplaysPayloadExactly(t *testing.T) {
	ns := newNamespace(t)
	payloads := map[string]string{
		"minimal": minimalPayload,
		"nulls": `{"event":"document.ready","success":true,"documentId":"doc_nulls","status":{"extractionStatus":"INDEXED",` +
			`"docType":"INVOICE","createdAt":"2024-01-15T10:30:00Z","updatedAt":"2024-01-15T10:35:00Z",` +
			`"extractionErrors":[null,{"field":"dueDate","message":"not found"},null]},` +
			`"document":{"description":null,"totalAmount":null,"documentDate":null},"extraction":{"fields":null,"tables":null}}`,
		"exact amount": `{"event":"document.ready","success":true,"documentId":"doc_exact","status":{"extractionStatus":"INDEXED",` +
			`"docType":null,"createdAt":"2024-01-15T10:30:00Z","updatedAt":"2024-01-15T10:35:00Z","extractionErrors":[{}]},` +
			`"document":{"description":"","totalAmount":12345678901234567890.10,"documentDate":"2024-01-15"},` +
			`"extraction":{"fields":{"invoiceNumber":"1042"},"tables":{"items":[]}}}`,
	}
	for name, body := range payloads {
		t.Run(name, func(t *testing.T) {
			eventName := strings.ReplaceAll(name, " ", "-")
			mustSucceed(t, kubectlWebhook(t, body, "send", "-f", "-", "-n", ns, "--name", eventName))
			got, err := payload.Encode(getEvent(t, ns, eventName))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != body {
				t.Errorf("the operator would send\n%s\nnot the payload the event was created from\n%s", got, body)
			}
		})
	}
}

func TestSendDryRun(t *testing.T) {
	ns := newNamespace(t)
	r := kubectlWebhook(t, "", "send", "-f", writePayload(t, fullPayload), "-n", ns, "--dry-run", "--selector", "team=billing")
	mustSucceed(t, r)
	if want := "validated by the API server (server-side dry run in namespace " + ns + "); nothing was created\n"; r.stderr != want {
		t.Errorf("stderr %q, want %q", r.stderr, want)
	}

	ev := &webhooksv1alpha1.DocumentEvent{}
	if err := yaml.UnmarshalStrict([]byte(r.stdout), ev); err != nil {
		t.Fatalf("the output is not a DocumentEvent manifest: %v\n%s", err, r.stdout)
	}
	if ev.Kind != "DocumentEvent" || ev.APIVersion != "webhooks.1flow.io/v1alpha1" {
		t.Errorf("kind %q apiVersion %q", ev.Kind, ev.APIVersion)
	}
	if ev.Namespace != ns || !strings.HasPrefix(ev.Name, "doc-abc-123-xyz-") {
		t.Errorf("metadata = %s/%s", ev.Namespace, ev.Name)
	}
	if ev.Spec.Document == nil || ev.Spec.Document.TotalAmount == nil || *ev.Spec.Document.TotalAmount != "1234.56" {
		t.Errorf("document = %+v", ev.Spec.Document)
	}
	if !strings.Contains(r.stdout, `totalAmount: "1234.56"`) {
		t.Errorf("totalAmount is not a quoted string in the YAML:\n%s", r.stdout)
	}
	if ev.Spec.EndpointSelector == nil || ev.Spec.EndpointSelector.MatchLabels["team"] != "billing" {
		t.Errorf("endpointSelector = %+v", ev.Spec.EndpointSelector)
	}
	for _, unwanted := range []string{"status:", "creationTimestamp"} {
		if strings.Contains(r.stdout, unwanted) {
			t.Errorf("the manifest contains %q:\n%s", unwanted, r.stdout)
		}
	}

	list := &webhooksv1alpha1.DocumentEventList{}
	if err := k.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("--dry-run created %d events", len(list.Items))
	}

	// The manifest created by the dry run is accepted by the API server as it is.
	if err := k.Create(context.Background(), ev); err != nil {
		t.Errorf("create the printed manifest: %v", err)
	}

	// Without -n the manifest has no namespace, so kubectl apply -n chooses it; the dry run uses the
	// kubeconfig's namespace.
	r = kubectlWebhook(t, "", "send", "-f", writePayload(t, minimalPayload), "--dry-run")
	mustSucceed(t, r)
	if strings.Contains(r.stdout, "namespace:") {
		t.Errorf("namespace in the manifest without -n:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "server-side dry run in namespace default") {
		t.Errorf("stderr %q does not name the kubeconfig's namespace", r.stderr)
	}
}

// The local parser knows the payload's shape but not the CRD's rules, so --dry-run asks the API server,
// whose answer is the one the real send gets.
func TestSendDryRunValidatesOnServer(t *testing.T) {
	ns := newNamespace(t)
	cases := []struct{ name, from, to, want string }{
		{
			name: "date in another format",
			from: `"documentDate": "2024-01-15"`, to: `"documentDate": "15/01/2024"`,
			want: `spec.document.documentDate: Invalid value: "15/01/2024": documentDate must be a calendar date in YYYY-MM-DD format`,
		},
		{
			name: "date that does not exist",
			from: `"createdAt": "2024-01-15T10:30:00Z"`, to: `"createdAt": "2023-02-29T10:30:00Z"`,
			want: `spec.documentStatus.createdAt: Invalid value: "2023-02-29T10:30:00Z": createdAt must be an RFC 3339 ` +
				`timestamp such as 2024-01-15T10:30:00Z (February 2023 has 28 days)`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writePayload(t, strings.Replace(fullPayload, tc.from, tc.to, 1))
			r := kubectlWebhook(t, "", "send", "-f", path, "-n", ns, "--dry-run")
			mustFail(t, r, "the API server rejects documentevent")
			mustFail(t, r, "(server-side dry run in namespace "+ns+"; nothing was created)")
			mustFail(t, r, tc.want)
			if r.stdout != "" {
				t.Errorf("a rejected dry run printed a manifest:\n%s", r.stdout)
			}
			mustFail(t, kubectlWebhook(t, "", "send", "-f", path, "-n", ns), tc.want)
		})
	}
	list := &webhooksv1alpha1.DocumentEventList{}
	if err := k.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("rejected payloads created %d events", len(list.Items))
	}
}

func TestSendDryRunWithoutCluster(t *testing.T) {
	// Nothing listens on port 1, so the dry run cannot reach an API server.
	r := kubectlWebhook(t, "", "send", "-f", writePayload(t, fullPayload), "--dry-run", "--server", "https://127.0.0.1:1")
	mustSucceed(t, r)
	if err := yaml.UnmarshalStrict([]byte(r.stdout), &webhooksv1alpha1.DocumentEvent{}); err != nil {
		t.Fatalf("the output is not a DocumentEvent manifest: %v\n%s", err, r.stdout)
	}
	for _, want := range []string{
		"validated locally only: the API server could not be asked (",
		"connection refused",
		"The CRD's schema and rules (date formats, lengths, ...) did not run",
		"kubectl create --dry-run=server -f FILE",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
}

// payloadWithBlob is fullPayload with a string of n bytes in extraction.fields.
func payloadWithBlob(n int) string {
	return strings.Replace(fullPayload, `"invoiceNumber": "1042"`, `"invoiceNumber": "1042", "blob": "`+strings.Repeat("a", n)+`"`, 1)
}

// largestStatus is about the largest status the operator writes: 256 deliveries with the longest endpoint
// names and errors, and every condition with a long message.
func largestStatus() webhooksv1alpha1.DocumentEventStatus {
	now := metav1.NewMicroTime(time.Now())
	var st webhooksv1alpha1.DocumentEventStatus
	for i := range webhooksv1alpha1.MaxDeliveriesPerEvent {
		st.Deliveries = append(st.Deliveries, webhooksv1alpha1.EndpointDelivery{
			Endpoint:        fmt.Sprintf("%03d-%s", i, strings.Repeat("e", 249)), // 253: the longest object name
			DeliveryID:      strings.Repeat("d", 64),
			Phase:           webhooksv1alpha1.DeliveryRetrying,
			Reason:          "AttemptFailed",
			Attempts:        10,
			LastAttemptTime: &now,
			NextAttemptTime: &now,
			LastStatusCode:  500,
			LastError:       strings.Repeat("x", webhooksv1alpha1.MaxDeliveryErrorLength),
		})
	}
	for _, condition := range []string{"Ready", "Reconciling", "Stalled", "Delivered"} {
		st.Conditions = append(st.Conditions, metav1.Condition{
			Type: condition, Status: metav1.ConditionFalse, Reason: "Waiting", Message: strings.Repeat("m", 1024),
			LastTransitionTime: metav1.Now(),
		})
	}
	return st
}

func TestSendSizeLimit(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()

	// An event just under the limit is created, and the largest status still fits in etcd next to it.
	mustSucceed(t, kubectlWebhook(t, "", "send", "-f", writePayload(t, payloadWithBlob(maxEventBytes-4096)), "-n", ns, "--name", "at-limit"))
	ev := getEvent(t, ns, "at-limit")
	before := ev.DeepCopy()
	ev.Status = largestStatus()
	if err := k.Status().Patch(ctx, ev, client.MergeFrom(before)); err != nil {
		t.Fatalf("write the largest status to an event at send's limit: %v", err)
	}

	// One byte of blob over the limit is refused before the API server is asked, also by --dry-run, whose
	// server-side check never reaches etcd.
	refused := regexp.MustCompile(`^error: the DocumentEvent would be 10[0-9]{5} bytes of JSON, over send's limit of ` +
		`1048576 bytes \(1 MiB\): etcd refuses to store objects over 1\.5 MiB \(its --max-request-bytes default\), .*` +
		`Keep large data out of the event: store it elsewhere and put a reference to it \(a URL or an id\) in extraction\.fields\n$`)
	over := writePayload(t, payloadWithBlob(maxEventBytes+1))
	for _, args := range [][]string{{"--name", "over-limit"}, {"--name", "over-limit", "--dry-run"}} {
		r := kubectlWebhook(t, "", append([]string{"send", "-f", over, "-n", ns}, args...)...)
		if r.code == 0 || !refused.MatchString(r.stderr) || r.stdout != "" {
			t.Errorf("send %v of an event over the limit: %s", args, r)
		}
	}
	if err := k.Get(ctx, client.ObjectKey{Namespace: ns, Name: "over-limit"}, &webhooksv1alpha1.DocumentEvent{}); !apierrors.IsNotFound(err) {
		t.Errorf("get the refused event: %v, want NotFound", err)
	}

	// Where the limits come from (docs/security.md): etcd refuses a 1.5 MiB object, which a server-side
	// dry run accepts; the API server refuses a request over 3 MiB; client-side kubectl apply copies the
	// event into an annotation, and annotations hold 256 KiB.
	withBlob := func(name string, n int) *webhooksv1alpha1.DocumentEvent {
		return &webhooksv1alpha1.DocumentEvent{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: webhooksv1alpha1.DocumentEventSpec{
				DocumentID: "doc_" + name,
				Extraction: &webhooksv1alpha1.Extraction{Fields: &apiextensionsv1.JSON{Raw: []byte(`{"blob":"` + strings.Repeat("a", n) + `"}`)}},
			},
		}
	}
	if err := k.Create(ctx, withBlob("etcd-limit", 3<<19), client.DryRunAll); err != nil {
		t.Errorf("server-side dry run of a 1.5 MiB event: %v, want success", err)
	}
	if err := k.Create(ctx, withBlob("etcd-limit", 3<<19)); err == nil || !strings.Contains(err.Error(), "etcdserver: request is too large") {
		t.Errorf("create a 1.5 MiB event: %v, want etcdserver: request is too large", err)
	}
	if err := k.Create(ctx, withBlob("request-limit", 3<<20)); !apierrors.IsRequestEntityTooLargeError(err) ||
		!strings.Contains(err.Error(), "limit is 3145728") {
		t.Errorf("create a 3 MiB event: %v, want Request entity too large: limit is 3145728", err)
	}
	applied := withBlob("annotation-limit", 256<<10)
	applied.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": string(applied.Spec.Extraction.Fields.Raw)}
	if err := k.Create(ctx, applied); err == nil || !strings.Contains(err.Error(), "metadata.annotations: Too long: may not be more than 262144 bytes") {
		t.Errorf("create an event with a 256 KiB annotation: %v, want metadata.annotations: Too long", err)
	}
}

func TestSendErrors(t *testing.T) {
	ns := newNamespace(t)
	cases := []struct{ name, payload, want string }{
		{"bad JSON", `{"documentId": "doc_1",`, "invalid payload JSON"},
		{"not an object", `[1, 2]`, "invalid payload JSON"},
		{"empty input", ``, "invalid payload JSON: the input is empty"},
		{"trailing data", `{"documentId":"doc_1"} {}`, "unexpected data after the payload object"},
		{"missing documentId", `{"event":"document.ready","success":true,"document":null}`, "documentId is missing or empty"},
		{"unknown member", `{"documentId":"doc_1","documentID":"doc_1"}`, `unknown member "documentID"`},
		{"wrong case", `{"DocumentId":"doc_1"}`, `unknown member "DocumentId"`},
		{"nested unknown member", `{"documentId":"doc_1","document":{"total":1}}`, `unknown member "document.total"`},
		{"success false", `{"documentId":"doc_1","success":false}`, `"success" is false`},
		{"other event", `{"documentId":"doc_1","event":"document.deleted"}`, `unsupported event "document.deleted"`},
		{"fields not an object", `{"documentId":"doc_1","extraction":{"fields":[1]}}`, "extraction.fields must be a JSON object or null"},
		{"errors not an array", `{"documentId":"doc_1","status":{"extractionErrors":"boom"}}`, "status.extractionErrors must be a JSON array or null"},
		{"amount not a number", `{"documentId":"doc_1","document":{"totalAmount":"12,50"}}`, "invalid payload JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writePayload(t, tc.payload)
			mustFail(t, kubectlWebhook(t, "", "send", "-f", path, "-n", ns), tc.want)
			mustFail(t, kubectlWebhook(t, "", "send", "-f", path, "--dry-run"), path+": ")
		})
	}
	mustFail(t, kubectlWebhook(t, "", "send", "-n", ns), `required flag(s) "filename" not set`)
	mustFail(t, kubectlWebhook(t, "", "send", "-f", filepath.Join(t.TempDir(), "missing.json")), "no such file")
	mustFail(t, kubectlWebhook(t, minimalPayload, "send", "-f", "-", "--name", "Not_Valid"), `invalid --name "Not_Valid"`)
	mustFail(t, kubectlWebhook(t, minimalPayload, "send", "-f", "-", "--selector", "a in in"), "invalid --selector")

	list := &webhooksv1alpha1.DocumentEventList{}
	if err := k.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("invalid payloads created %d events", len(list.Items))
	}
}
