package payload

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/localcluster"
)

// apiServer is a kube-apiserver with the CRDs installed. The tests post DocumentEvents as raw JSON, as a
// pipeline does: the typed client writes a Decimal as a string, and the unstructured client decodes
// numbers into float64 before it sends them, so neither can send the number 12345678901234567890.
type apiServer struct {
	client   client.Client
	http     *http.Client
	eventURL string // the DocumentEvents of the default namespace
}

func startAPIServer(t *testing.T) *apiServer {
	t.Helper()
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: localcluster.AssetsDir(),
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver and etcd (binaries from hack/setup-envtest.sh): %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop the control plane: %v", err)
		}
	})
	scheme := runtime.NewScheme()
	if err := webhooksv1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	server, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &apiServer{
		client:   c,
		http:     httpClient,
		eventURL: strings.TrimSuffix(server.String(), "/") + "/apis/webhooks.1flow.io/v1alpha1/namespaces/default/documentevents",
	}
}

// create posts a DocumentEvent and returns the HTTP status and the response body.
func (s *apiServer) create(t *testing.T, event string) (int, []byte) {
	t.Helper()
	code, body, _ := s.createWithFieldValidation(t, event, "")
	return code, body
}

// createWithFieldValidation posts a DocumentEvent with the given fieldValidation (Strict, as kubectl
// sends by default; "" for the API's default, Warn) and also returns the API server's warnings.
func (s *apiServer) createWithFieldValidation(t *testing.T, event, fieldValidation string) (int, []byte, []string) {
	t.Helper()
	url := s.eventURL
	if fieldValidation != "" {
		url += "?fieldValidation=" + fieldValidation
	}
	resp, err := s.http.Post(url, "application/json", strings.NewReader(event))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body, resp.Header.Values("Warning")
}

// createRejected posts a DocumentEvent that the API server must reject as invalid and returns its message.
func (s *apiServer) createRejected(t *testing.T, event string) string {
	t.Helper()
	code, resp := s.create(t, event)
	if code != http.StatusUnprocessableEntity {
		t.Fatalf("create: HTTP %d, want 422: %s", code, resp)
	}
	var status struct{ Message string }
	if err := json.Unmarshal(resp, &status); err != nil {
		t.Fatal(err)
	}
	return status.Message
}

// storedDocument returns spec.document of the event as the API server returns it, with every number in
// its text.
func (s *apiServer) storedDocument(t *testing.T, name string) string {
	t.Helper()
	resp, err := s.http.Get(s.eventURL + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var object struct {
		Spec struct {
			Document json.RawMessage `json:"document"`
		} `json:"spec"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&object); err != nil {
		t.Fatal(err)
	}
	return string(object.Spec.Document)
}

// documentEvent is a DocumentEvent as a pipeline posts it, with the given spec.document and
// spec.documentStatus.extractionErrors (raw JSON, or empty to leave them out).
func documentEvent(name, document, extractionErrors string) string {
	status := `"docType":"INVOICE","createdAt":"2024-01-15T10:30:00Z","updatedAt":"2024-01-15T10:35:00Z"`
	if extractionErrors != "" {
		status += `,"extractionErrors":` + extractionErrors
	}
	spec := `"documentId":"doc_1","documentStatus":{` + status + `}`
	if document != "" {
		spec += `,"document":` + document
	}
	return `{"apiVersion":"webhooks.1flow.io/v1alpha1","kind":"DocumentEvent","metadata":{"name":"` + name +
		`"},"spec":{` + spec + `}}`
}

// sentBody is the payload of documentEvent, with document and extractionErrors as they are sent.
func sentBody(document, extractionErrors string) string {
	return `{"event":"document.ready","success":true,"documentId":"doc_1","status":{"extractionStatus":"INDEXED",` +
		`"docType":"INVOICE","createdAt":"2024-01-15T10:30:00Z","updatedAt":"2024-01-15T10:35:00Z",` +
		`"extractionErrors":` + extractionErrors + `},"document":` + document + `,"extraction":null}`
}

func TestThroughAPIServer(t *testing.T) {
	s := startAPIServer(t)
	ctx := context.Background()

	// What the API server stores for each form of totalAmount, and what receivers then get.
	accepted := []struct {
		name, document, extractionErrors string
		stored, sent                     string // spec.document as read back, and the payload's document
		sentErrors                       string // the payload's extractionErrors
	}{
		{
			name:     "number",
			document: `{"description":"Invoice #1042","totalAmount":1234.56,"documentDate":"2024-01-15"}`,
			stored:   `{"description":"Invoice #1042","documentDate":"2024-01-15","totalAmount":1234.56}`,
			sent:     `{"description":"Invoice #1042","totalAmount":1234.56,"documentDate":"2024-01-15"}`,
		},
		{
			name:     "number with a trailing zero",
			document: `{"totalAmount":0.10}`,
			stored:   `{"totalAmount":0.1}`,
			sent:     `{"description":null,"totalAmount":0.1,"documentDate":null}`,
		},
		{
			name:     "number with an exponent",
			document: `{"totalAmount":1e3}`,
			stored:   `{"totalAmount":1000}`,
			sent:     `{"description":null,"totalAmount":1000,"documentDate":null}`,
		},
		{
			name:     "integer within 64 bits",
			document: `{"totalAmount":9007199254740993}`,
			stored:   `{"totalAmount":9007199254740993}`,
			sent:     `{"description":null,"totalAmount":9007199254740993,"documentDate":null}`,
		},
		{
			name:     "integer beyond 64 bits",
			document: `{"totalAmount":12345678901234567890}`,
			stored:   `{"totalAmount":12345678901234567000}`,
			sent:     `{"description":null,"totalAmount":12345678901234567000,"documentDate":null}`,
		},
		{
			name:     "number with more than 17 significant digits",
			document: `{"totalAmount":1234567890.123456789}`,
			stored:   `{"totalAmount":1234567890.1234567}`,
			sent:     `{"description":null,"totalAmount":1234567890.1234567,"documentDate":null}`,
		},
		{
			name:     "string",
			document: `{"totalAmount":"1234.56"}`,
			stored:   `{"totalAmount":"1234.56"}`,
			sent:     `{"description":null,"totalAmount":1234.56,"documentDate":null}`,
		},
		{
			name:     "string keeps every digit",
			document: `{"totalAmount":"12345678901234567890.123456789"}`,
			stored:   `{"totalAmount":"12345678901234567890.123456789"}`,
			sent:     `{"description":null,"totalAmount":12345678901234567890.123456789,"documentDate":null}`,
		},
		{
			name:     "string keeps the notation",
			document: `{"totalAmount":"0.10"}`,
			stored:   `{"totalAmount":"0.10"}`,
			sent:     `{"description":null,"totalAmount":0.10,"documentDate":null}`,
		},
		{
			name:     "nulls",
			document: `{"description":null,"totalAmount":null,"documentDate":null}`,
			stored:   `{"description":null,"documentDate":null,"totalAmount":null}`,
			sent:     `{"description":null,"totalAmount":null,"documentDate":null}`,
		},
		{
			name:     "absent members",
			document: `{}`,
			stored:   `{}`,
			sent:     `{"description":null,"totalAmount":null,"documentDate":null}`,
		},
		{
			name:     "empty description",
			document: `{"description":""}`,
			stored:   `{"description":""}`,
			sent:     `{"description":"","totalAmount":null,"documentDate":null}`,
		},
		{
			name:             "null extraction errors",
			document:         `{"totalAmount":1}`,
			extractionErrors: `[null,{"field":"dueDate","message":"not found"},null]`,
			stored:           `{"totalAmount":1}`,
			sent:             `{"description":null,"totalAmount":1,"documentDate":null}`,
			sentErrors:       `[null,{"field":"dueDate","message":"not found"},null]`,
		},
	}
	for i, tc := range accepted {
		t.Run("accepts "+tc.name, func(t *testing.T) {
			name := fmt.Sprintf("accepted-%d", i)
			if code, resp := s.create(t, documentEvent(name, tc.document, tc.extractionErrors)); code != http.StatusCreated {
				t.Fatalf("create: HTTP %d: %s", code, resp)
			}
			if got := s.storedDocument(t, name); got != tc.stored {
				t.Errorf("stored spec.document %s, want %s", got, tc.stored)
			}
			ev := &webhooksv1alpha1.DocumentEvent{}
			if err := s.client.Get(ctx, types.NamespacedName{Namespace: "default", Name: name}, ev); err != nil {
				t.Fatal(err)
			}
			got, err := Encode(ev)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			want := sentBody(tc.sent, cmp.Or(tc.sentErrors, "null"))
			if string(got) != want {
				t.Errorf("payload mismatch\n got: %s\nwant: %s", got, want)
			}
		})
	}

	// The schema of totalAmount has no type, and the API server runs no CEL rule on such a schema (it
	// refuses the CRD), so these are the OpenAPI validator's messages (see hack/decimal-schema).
	const pattern = `should match '^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$'`
	rejected := []struct{ amount, message string }{
		{`"12,5"`, pattern},
		{`"1234.56 EUR"`, pattern},
		{`"1e3 "`, pattern},
		{`""`, pattern},
		{`"` + strings.Repeat("1", 65) + `"`, "Too long: may not be more than 64 bytes"},
		{`true`, "must not validate the schema (not)"},
		{`false`, "must not validate the schema (not)"},
		{`{}`, "must not validate the schema (not)"},
		{`[]`, "must not validate the schema (not)"},
		{`{"value":1}`, "Too many: 1: must have at most 0 items"},
		{`[1]`, "Too many: 1: must have at most 0 items"},
	}
	for i, tc := range rejected {
		t.Run("rejects "+tc.amount, func(t *testing.T) {
			message := s.createRejected(t, documentEvent(fmt.Sprintf("rejected-%d", i), `{"totalAmount":`+tc.amount+`}`, ""))
			if !strings.Contains(message, "spec.document.totalAmount") || !strings.Contains(message, tc.message) {
				t.Errorf("message %q, want spec.document.totalAmount and %q", message, tc.message)
			}
		})
	}

	t.Run("dates", func(t *testing.T) { checkDates(t, s) })
	t.Run("rules skipped after a schema error", func(t *testing.T) { checkRulesSkippedAfterSchemaError(t, s) })
	t.Run("unknown members of document", func(t *testing.T) { checkUnknownDocumentMembers(t, s) })

	// Decimal has no MarshalJSON, so a Go client writes a number back as a string; the API reference
	// tells Go clients to patch rather than update such an event.
	t.Run("a Go update of a number amount is rejected", func(t *testing.T) {
		if code, resp := s.create(t, documentEvent("update", `{"totalAmount":1234.56}`, "")); code != http.StatusCreated {
			t.Fatalf("create: HTTP %d: %s", code, resp)
		}
		ev := &webhooksv1alpha1.DocumentEvent{}
		if err := s.client.Get(ctx, types.NamespacedName{Namespace: "default", Name: "update"}, ev); err != nil {
			t.Fatal(err)
		}
		ev.Labels = map[string]string{"team": "billing"}
		err := s.client.Update(ctx, ev.DeepCopy())
		if err == nil || !strings.Contains(err.Error(), "spec is immutable") {
			t.Fatalf("update: %v, want spec is immutable", err)
		}
		patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"team":"billing"}}}`))
		if err := s.client.Patch(ctx, ev, patch); err != nil {
			t.Fatalf("patch the labels: %v", err)
		}
	})
}

// checkDates posts dates that are malformed, out of range or not in the calendar. Each is refused with a
// message that says what is wrong, after the value as typed; never with a CEL error, which is what
// timestamp() gave for a date such as 2024-02-30 (and which showed "string" instead of the value).
func checkDates(t *testing.T, s *apiServer) {
	const (
		createdAt    = "spec.documentStatus.createdAt"
		updatedAt    = "spec.documentStatus.updatedAt"
		documentDate = "spec.document.documentDate"
	)
	// withDate returns documentEvent with the field at path set to value.
	withDate := func(name, path, value string) string {
		switch path {
		case createdAt:
			return strings.Replace(documentEvent(name, "", ""), "2024-01-15T10:30:00Z", value, 1)
		case updatedAt:
			return strings.Replace(documentEvent(name, "", ""), "2024-01-15T10:35:00Z", value, 1)
		default:
			return documentEvent(name, `{"documentDate":"`+value+`"}`, "")
		}
	}
	const (
		timestamp       = "createdAt must be an RFC 3339 timestamp such as 2024-01-15T10:30:00Z"
		timestampRanges = timestamp + " (months are 01-12, days 01-31, hours 00-23, minutes and seconds 00-59, UTC offsets at most 23:59)"
		date            = "documentDate must be a calendar date in YYYY-MM-DD format"
		dateRanges      = date + " (months are 01-12, days 01-31)"
	)
	rejected := []struct{ path, value, message string }{
		{createdAt, "2024-02-30T10:00:00Z", timestamp + " (February 2024 has 29 days)"},
		{createdAt, "2023-02-29T10:00:00Z", timestamp + " (February 2023 has 28 days)"},
		{createdAt, "1900-02-29T10:00:00Z", timestamp + " (February 1900 has 28 days)"},
		{createdAt, "2024-04-31T10:00:00+02:00", timestamp + " (April 2024 has 30 days)"},
		{createdAt, "2024-13-01T10:00:00Z", timestampRanges},
		{createdAt, "2024-01-00T10:00:00Z", timestampRanges},
		{createdAt, "2024-01-15T24:00:00Z", timestampRanges},
		{createdAt, "2024-01-15T23:59:60Z", timestampRanges},
		{createdAt, "2024-01-15T10:00:00+24:00", timestampRanges},
		{createdAt, "2024-01-15 10:30:00", timestamp},
		{createdAt, "1705314600", timestamp},
		{updatedAt, "2024-06-31T10:35:00Z", "updatedAt must be an RFC 3339 timestamp such as 2024-01-15T10:30:00Z (June 2024 has 30 days)"},
		{documentDate, "2024-02-30", date + " (February 2024 has 29 days)"},
		{documentDate, "2023-02-29", date + " (February 2023 has 28 days)"},
		{documentDate, "2024-11-31", date + " (November 2024 has 30 days)"},
		{documentDate, "2024-00-10", dateRanges},
		{documentDate, "2024-01-32", dateRanges},
		{documentDate, "15/01/2024", date},
	}
	for i, tc := range rejected {
		t.Run("rejects "+tc.path+" "+tc.value, func(t *testing.T) {
			name := fmt.Sprintf("date-rejected-%d", i)
			message := s.createRejected(t, withDate(name, tc.path, tc.value))
			for _, internal := range []string{"google.protobuf.Timestamp", "type conversion", "evaluating rule", `Invalid value: "string"`} {
				if strings.Contains(message, internal) {
					t.Errorf("the message shows CEL internals (%q): %s", internal, message)
				}
			}
			want := fmt.Sprintf(`DocumentEvent.webhooks.1flow.io %q is invalid: %s: Invalid value: %q: %s`, name, tc.path, tc.value, tc.message)
			if message != want {
				t.Errorf("message\n got: %s\nwant: %s", message, want)
			}
		})
	}

	accepted := []struct{ path, value string }{
		{createdAt, "2024-02-29T10:00:00Z"},
		{createdAt, "2000-02-29T00:00:00Z"},
		{createdAt, "2024-12-31T23:59:59.999999999-05:30"},
		{updatedAt, "0001-01-01T00:00:00+23:59"},
		{documentDate, "2024-02-29"},
		{documentDate, "2024-12-31"},
	}
	for i, tc := range accepted {
		t.Run("accepts "+tc.path+" "+tc.value, func(t *testing.T) {
			if code, resp := s.create(t, withDate(fmt.Sprintf("date-accepted-%d", i), tc.path, tc.value)); code != http.StatusCreated {
				t.Errorf("create: HTTP %d: %s", code, resp)
			}
		})
	}
}

// checkRulesSkippedAfterSchemaError shows when the API server adds "some validation rules were not
// checked": after an error that the CRD's CEL rules could not safely run past (a value too long, a value
// not in an enum, a missing required field, too many items, a wrong type). It then runs none of them, on
// any field, so the error of a rule shows only once the other errors are fixed. The user guide explains it.
func checkRulesSkippedAfterSchemaError(t *testing.T, s *apiServer) {
	const skipped = "<nil>: Invalid value: null: some validation rules were not checked because the object was " +
		"invalid; correct the existing errors to complete validation"
	badDate := strings.Replace(documentEvent("skipped", "", ""), "2024-01-15T10:30:00Z", "2024-02-30T10:00:00Z", 1)
	tooLong := strings.Replace(badDate, `"docType":"INVOICE"`, `"docType":"`+strings.Repeat("X", 129)+`"`, 1)
	want := `DocumentEvent.webhooks.1flow.io "skipped" is invalid: [spec.documentStatus.docType: Too long: may not be ` +
		`more than 128 bytes, ` + skipped + `]`
	if message := s.createRejected(t, tooLong); message != want {
		t.Errorf("message\n got: %s\nwant: %s", message, want)
	}
	// With the docType fixed, the date rule runs.
	if message := s.createRejected(t, badDate); strings.Contains(message, skipped) || !strings.Contains(message, "February 2024 has 29 days") {
		t.Errorf("message %s, want the date rule's error alone", message)
	}
}

// checkUnknownDocumentMembers shows what happens to a member of spec.document that the schema does not
// have (here "total", for totalAmount): spec.document keeps only its known members. kubectl asks for
// strict field validation by default, and gets an error; a client that does not (the API's default is
// Warn) gets a warning, and the member is dropped, so receivers get "totalAmount": null.
func checkUnknownDocumentMembers(t *testing.T, s *apiServer) {
	event := documentEvent("unknown-member", `{"total":1234.56,"documentDate":"2024-01-15"}`, "")

	code, resp, _ := s.createWithFieldValidation(t, event, "Strict")
	var status struct{ Message string }
	if err := json.Unmarshal(resp, &status); err != nil {
		t.Fatal(err)
	}
	const strict = `DocumentEvent in version "v1alpha1" cannot be handled as a DocumentEvent: strict decoding error: unknown field "spec.document.total"`
	if code != http.StatusBadRequest || status.Message != strict {
		t.Errorf("strict create: HTTP %d %q, want 400 %q", code, status.Message, strict)
	}

	code, resp, warnings := s.createWithFieldValidation(t, event, "")
	if code != http.StatusCreated {
		t.Fatalf("create: HTTP %d: %s", code, resp)
	}
	if want := []string{`299 - "unknown field \"spec.document.total\""`}; !slices.Equal(warnings, want) {
		t.Errorf("warnings %q, want %q", warnings, want)
	}
	if got := s.storedDocument(t, "unknown-member"); got != `{"documentDate":"2024-01-15"}` {
		t.Errorf("stored spec.document %s, want the unknown member dropped", got)
	}
}
