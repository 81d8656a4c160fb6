package payload

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
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
	resp, err := s.http.Post(s.eventURL, "application/json", strings.NewReader(event))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
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
			code, resp := s.create(t, documentEvent(fmt.Sprintf("rejected-%d", i), `{"totalAmount":`+tc.amount+`}`, ""))
			if code != http.StatusUnprocessableEntity {
				t.Fatalf("create: HTTP %d, want 422: %s", code, resp)
			}
			var status struct{ Message string }
			if err := json.Unmarshal(resp, &status); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(status.Message, "spec.document.totalAmount") || !strings.Contains(status.Message, tc.message) {
				t.Errorf("message %q, want spec.document.totalAmount and %q", status.Message, tc.message)
			}
		})
	}

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
