package payload

import (
	"errors"
	"strings"
	"testing"
	"testing/iotest"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

func TestNameBase(t *testing.T) {
	cases := map[string]string{
		"doc_abc123xyz":                "doc-abc123xyz",
		"DOC.ABC/123":                  "doc-abc-123",
		"__doc__":                      "doc",
		"___":                          "doc",
		"":                             "doc",
		"ünïcode-ok":                   "n-code-ok",
		strings.Repeat("a", 80):        strings.Repeat("a", 57),
		strings.Repeat("a", 56) + "_b": strings.Repeat("a", 56),
	}
	for in, want := range cases {
		if got := nameBase(in); got != want {
			t.Errorf("nameBase(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNameIsValid(t *testing.T) {
	for _, id := range []string{"doc_abc123xyz", strings.Repeat("X_", 200), "-", "9lives"} {
		name := Name(id)
		if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
			t.Errorf("Name(%q) = %q: %v", id, name, errs)
		}
	}
	if first, second := Name("doc"), Name("doc"); first == second {
		t.Error("two names for the same documentId are equal")
	}
}

func TestParseFullPayload(t *testing.T) {
	spec, err := Parse(strings.NewReader(head + fullStatus + fullDocument + fullExtraction))
	if err != nil {
		t.Fatal(err)
	}
	if want := &fullEvent().Spec; !equality.Semantic.DeepEqual(spec, want) {
		t.Errorf("spec = %+v\nwant %+v", spec, want)
	}
}

func TestParseKeepsDigits(t *testing.T) {
	spec, err := Parse(strings.NewReader(`{"documentId":"d","document":{"totalAmount":-1.50e+10},"extraction":{"fields":{"n":1.000},"tables":null}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(*spec.Document.TotalAmount); got != "-1.50e+10" {
		t.Errorf("totalAmount = %s", got)
	}
	if got := string(spec.Extraction.Fields.Raw); got != `{"n":1.000}` {
		t.Errorf("fields = %s", got)
	}
	if spec.Extraction.Tables != nil {
		t.Errorf("tables = %s, want nil", spec.Extraction.Tables.Raw)
	}
}

func TestParseQuotedAmount(t *testing.T) {
	// A quoted amount, as in YAML-minded hand-written payloads, is accepted when it is a number.
	spec, err := Parse(strings.NewReader(`{"documentId":"d","document":{"totalAmount":"0.10"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(*spec.Document.TotalAmount); got != "0.10" {
		t.Errorf("totalAmount = %s", got)
	}
}

func TestParseNulls(t *testing.T) {
	tests := []struct {
		name, payload string
		want          webhooksv1alpha1.DocumentEventSpec
	}{
		{
			name:    "null document members stay unset",
			payload: `{"documentId":"d","document":{"description":null,"totalAmount":null,"documentDate":null}}`,
			want:    webhooksv1alpha1.DocumentEventSpec{DocumentID: "d", Document: &webhooksv1alpha1.DocumentSummary{}},
		},
		{
			name:    "absent document members stay unset",
			payload: `{"documentId":"d","document":{}}`,
			want:    webhooksv1alpha1.DocumentEventSpec{DocumentID: "d", Document: &webhooksv1alpha1.DocumentSummary{}},
		},
		{
			name:    "an empty description is kept",
			payload: `{"documentId":"d","document":{"description":""}}`,
			want: webhooksv1alpha1.DocumentEventSpec{DocumentID: "d",
				Document: &webhooksv1alpha1.DocumentSummary{Description: ptr.To("")}},
		},
		{
			name:    "null extraction errors keep their place",
			payload: `{"documentId":"d","status":{"extractionErrors":[null, {"a": 1}, null]}}`,
			want: webhooksv1alpha1.DocumentEventSpec{DocumentID: "d", DocumentStatus: webhooksv1alpha1.DocumentStatus{
				ExtractionErrors: []apiextensionsv1.JSON{{}, *raw(`{"a":1}`), {}},
			}},
		},
		{
			name:    "null document, extraction and extractionErrors",
			payload: `{"documentId":"d","status":{"docType":null,"extractionErrors":null},"document":null,"extraction":null}`,
			want:    webhooksv1alpha1.DocumentEventSpec{DocumentID: "d"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := Parse(strings.NewReader(tc.payload))
			if err != nil {
				t.Fatal(err)
			}
			if !equality.Semantic.DeepEqual(*spec, tc.want) {
				t.Errorf("spec = %+v\nwant %+v", *spec, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct{ name, payload, want string }{
		{"bad JSON", `{"documentId": "doc_1",`, "invalid payload JSON: "},
		{"not an object", `[1, 2]`, "invalid payload JSON: "},
		{"empty input", ``, "invalid payload JSON: the input is empty"},
		{"trailing data", `{"documentId":"doc_1"} {}`, "invalid payload JSON: unexpected data after the payload object"},
		{"missing documentId", `{"event":"document.ready","success":true,"document":null}`, "invalid payload: documentId is missing or empty"},
		{"blank documentId", `{"documentId":"  "}`, "invalid payload: documentId is missing or empty"},
		{"unknown member", `{"documentId":"doc_1","documentID":"doc_1"}`, `invalid payload: unknown member "documentID" (member names are case-sensitive)`},
		{"wrong case", `{"DocumentId":"doc_1"}`, `invalid payload: unknown member "DocumentId"`},
		{"nested unknown member", `{"documentId":"doc_1","document":{"total":1}}`, `invalid payload: unknown member "document.total"`},
		{"success false", `{"documentId":"doc_1","success":false}`, `invalid payload: "success" is false`},
		{"other event", `{"documentId":"doc_1","event":"document.deleted"}`, `invalid payload: unsupported event "document.deleted" (supported: document.ready)`},
		{"document not an object", `{"documentId":"doc_1","document":[]}`, "invalid payload JSON: "},
		{"fields not an object", `{"documentId":"doc_1","extraction":{"fields":[1]}}`, "invalid payload: extraction.fields must be a JSON object or null"},
		{"tables not an object", `{"documentId":"doc_1","extraction":{"tables":"x"}}`, "invalid payload: extraction.tables must be a JSON object or null"},
		{"errors not an array", `{"documentId":"doc_1","status":{"extractionErrors":"boom"}}`, "invalid payload: status.extractionErrors must be a JSON array or null"},
		{"amount not a number", `{"documentId":"doc_1","document":{"totalAmount":"12,50"}}`, "invalid payload JSON: "},
		{"amount a boolean", `{"documentId":"doc_1","document":{"totalAmount":true}}`, "invalid payload JSON: "},
		{"description a number", `{"documentId":"doc_1","document":{"description":1}}`, "invalid payload JSON: "},
		{"empty documentDate", `{"documentId":"doc_1","document":{"documentDate":""}}`, `invalid payload: document.documentDate is ""; an unknown date is null`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := Parse(strings.NewReader(tc.payload))
			if err == nil {
				t.Fatalf("Parse accepted %s as %+v", tc.payload, spec)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to start with %q", err, tc.want)
			}
		})
	}
}

func TestParseReadError(t *testing.T) {
	_, err := Parse(iotest.ErrReader(errors.New("disk on fire")))
	if err == nil || err.Error() != "read the payload: disk on fire" {
		t.Fatalf("error %v", err)
	}
}
