package payload

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
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
		if got := NameBase(in); got != want {
			t.Errorf("NameBase(%q) = %q, want %q", in, got, want)
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
