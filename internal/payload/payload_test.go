package payload

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

func raw(s string) *apiextensionsv1.JSON { return &apiextensionsv1.JSON{Raw: []byte(s)} }

func decimal(s string) *webhooksv1alpha1.Decimal { return ptr.To(webhooksv1alpha1.Decimal(s)) }

// fullEvent has every member of the payload set.
func fullEvent() *webhooksv1alpha1.DocumentEvent {
	return &webhooksv1alpha1.DocumentEvent{Spec: webhooksv1alpha1.DocumentEventSpec{
		Event:      webhooksv1alpha1.DocumentReadyEvent,
		DocumentID: "doc_abc123xyz",
		DocumentStatus: webhooksv1alpha1.DocumentStatus{
			ExtractionStatus: "INDEXED",
			DocType:          ptr.To("INVOICE"),
			CreatedAt:        "2024-01-02T03:04:05Z",
			UpdatedAt:        "2024-01-02T03:05:06.789Z",
			ExtractionErrors: []apiextensionsv1.JSON{*raw(`{"field":"totalAmount","message":"low confidence"}`)},
		},
		Document: &webhooksv1alpha1.DocumentSummary{
			Description:  ptr.To("Invoice #42"),
			TotalAmount:  decimal("1234.56"),
			DocumentDate: "2024-01-02",
		},
		Extraction: &webhooksv1alpha1.Extraction{
			Fields: raw(`{"vendor":"ACME","vat":19}`),
			Tables: raw(`{"items":[{"sku":"A1","qty":2,"price":9.99}]}`),
		},
	}}
}

const (
	head       = `{"event":"document.ready","success":true,"documentId":"doc_abc123xyz",`
	fullStatus = `"status":{"extractionStatus":"INDEXED","docType":"INVOICE","createdAt":"2024-01-02T03:04:05Z",` +
		`"updatedAt":"2024-01-02T03:05:06.789Z","extractionErrors":[{"field":"totalAmount","message":"low confidence"}]}`
	fullDocument   = `,"document":{"description":"Invoice #42","totalAmount":1234.56,"documentDate":"2024-01-02"}`
	fullExtraction = `,"extraction":{"fields":{"vendor":"ACME","vat":19},"tables":{"items":[{"sku":"A1","qty":2,"price":9.99}]}}}`
)

// statusWithErrors is fullStatus with other extractionErrors.
func statusWithErrors(errs string) string {
	return `"status":{"extractionStatus":"INDEXED","docType":"INVOICE","createdAt":"2024-01-02T03:04:05Z",` +
		`"updatedAt":"2024-01-02T03:05:06.789Z","extractionErrors":` + errs + `}`
}

func TestEncodeExactBytes(t *testing.T) {
	tests := []struct {
		name   string
		modify func(spec *webhooksv1alpha1.DocumentEventSpec)
		want   string
	}{
		{
			name:   "full payload",
			modify: func(*webhooksv1alpha1.DocumentEventSpec) {},
			want:   head + fullStatus + fullDocument + fullExtraction,
		},
		{
			name: "nil document, extraction, docType, extractionErrors are null, not omitted",
			modify: func(spec *webhooksv1alpha1.DocumentEventSpec) {
				spec.Document, spec.Extraction = nil, nil
				spec.DocumentStatus.DocType, spec.DocumentStatus.ExtractionErrors = nil, nil
			},
			want: head + `"status":{"extractionStatus":"INDEXED","docType":null,"createdAt":"2024-01-02T03:04:05Z",` +
				`"updatedAt":"2024-01-02T03:05:06.789Z","extractionErrors":null},"document":null,"extraction":null}`,
		},
		{
			name: "unset document members are null, not omitted",
			modify: func(spec *webhooksv1alpha1.DocumentEventSpec) {
				spec.Document = &webhooksv1alpha1.DocumentSummary{}
			},
			want: head + fullStatus + `,"document":{"description":null,"totalAmount":null,"documentDate":null}` + fullExtraction,
		},
		{
			name: "an empty description stays an empty string",
			modify: func(spec *webhooksv1alpha1.DocumentEventSpec) {
				spec.Document = &webhooksv1alpha1.DocumentSummary{Description: ptr.To("")}
			},
			want: head + fullStatus + `,"document":{"description":"","totalAmount":null,"documentDate":null}` + fullExtraction,
		},
		{
			name: "empty extractionErrors stays an array",
			modify: func(spec *webhooksv1alpha1.DocumentEventSpec) {
				spec.DocumentStatus.ExtractionErrors = []apiextensionsv1.JSON{}
			},
			want: head + statusWithErrors(`[]`) + fullDocument + fullExtraction,
		},
		{
			name: "a null extraction error is sent as null",
			modify: func(spec *webhooksv1alpha1.DocumentEventSpec) {
				spec.DocumentStatus.ExtractionErrors = []apiextensionsv1.JSON{{}}
			},
			want: head + statusWithErrors(`[null]`) + fullDocument + fullExtraction,
		},
		{
			name: "null extraction errors keep their place",
			modify: func(spec *webhooksv1alpha1.DocumentEventSpec) {
				spec.DocumentStatus.ExtractionErrors = []apiextensionsv1.JSON{*raw(`{"a":1}`), {}, {Raw: []byte{}}, *raw(`"x"`)}
			},
			want: head + statusWithErrors(`[{"a":1},null,null,"x"]`) + fullDocument + fullExtraction,
		},
		{
			name: "defaults fill unset event, extractionStatus, createdAt and updatedAt",
			modify: func(spec *webhooksv1alpha1.DocumentEventSpec) {
				spec.Event = ""
				spec.DocumentStatus = webhooksv1alpha1.DocumentStatus{}
			},
			want: head + `"status":{"extractionStatus":"INDEXED","docType":null,"createdAt":"2024-01-15T10:30:00Z",` +
				`"updatedAt":"2024-01-15T10:30:00Z","extractionErrors":null}` + fullDocument + fullExtraction,
		},
		{
			name: "extraction with nil fields and tables",
			modify: func(spec *webhooksv1alpha1.DocumentEventSpec) {
				spec.Extraction = &webhooksv1alpha1.Extraction{}
			},
			want: head + fullStatus + fullDocument + `,"extraction":{"fields":null,"tables":null}}`,
		},
		{
			name: "extraction with fields only",
			modify: func(spec *webhooksv1alpha1.DocumentEventSpec) {
				spec.Extraction = &webhooksv1alpha1.Extraction{Fields: raw(`{"a":1}`)}
			},
			want: head + fullStatus + fullDocument + `,"extraction":{"fields":{"a":1},"tables":null}}`,
		},
		{
			name: "raw members are compacted",
			modify: func(spec *webhooksv1alpha1.DocumentEventSpec) {
				spec.DocumentStatus.ExtractionErrors = []apiextensionsv1.JSON{*raw(" { \"a\" : [ 1 , 2 ] } ")}
				spec.Extraction = &webhooksv1alpha1.Extraction{
					Fields: raw("{\n  \"vendor\" : \"ACME\",\n  \"vat\" : 19\n}\n"),
					Tables: raw(" { \"items\" : [ ] } "),
				}
			},
			want: head + statusWithErrors(`[{"a":[1,2]}]`) + fullDocument +
				`,"extraction":{"fields":{"vendor":"ACME","vat":19},"tables":{"items":[]}}}`,
		},
		{
			name: "HTML characters are not escaped",
			modify: func(spec *webhooksv1alpha1.DocumentEventSpec) {
				spec.DocumentID = "doc_<1>&2"
				spec.Document = &webhooksv1alpha1.DocumentSummary{Description: ptr.To(`<b>&</b> 'quoted' "double"`)}
				spec.Extraction = &webhooksv1alpha1.Extraction{Fields: raw(`{"html":"<i>a&b</i>"}`), Tables: raw(`{"<k>":"&"}`)}
			},
			want: `{"event":"document.ready","success":true,"documentId":"doc_<1>&2",` + fullStatus +
				`,"document":{"description":"<b>&</b> 'quoted' \"double\"","totalAmount":null,"documentDate":null}` +
				`,"extraction":{"fields":{"html":"<i>a&b</i>"},"tables":{"<k>":"&"}}}`,
		},
		{
			name: "unicode and control characters",
			modify: func(spec *webhooksv1alpha1.DocumentEventSpec) {
				spec.Document.Description = ptr.To("Rechnung für Müller\t€\n")
				spec.Extraction = nil
			},
			want: head + fullStatus +
				`,"document":{"description":"Rechnung für Müller\t€\n","totalAmount":1234.56,"documentDate":"2024-01-02"},"extraction":null}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := fullEvent()
			ev.CreationTimestamp = metav1.NewTime(time.Date(2024, 1, 15, 10, 30, 0, 0, time.UTC))
			tc.modify(&ev.Spec)
			before := ev.DeepCopy()
			got, err := Encode(ev)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if string(got) != tc.want {
				t.Fatalf("Encode mismatch\n got: %s\nwant: %s", got, tc.want)
			}
			if !json.Valid(got) {
				t.Fatalf("output is not valid JSON: %s", got)
			}
			if !equality.Semantic.DeepEqual(ev, before) {
				t.Fatalf("Encode changed the event")
			}
		})
	}
}

// Bug: a null item in extractionErrors used to vanish ([null] was sent as []) or to break the JSON
// ([{...},]).
func TestEncodeNullExtractionErrorFromJSON(t *testing.T) {
	for _, errs := range []string{`[null]`, `[{"a":1},null]`, `[null,{"a":1},null]`} {
		t.Run(errs, func(t *testing.T) {
			ev := fullEvent()
			ev.Spec.DocumentStatus.ExtractionErrors = nil
			// Decode as the controller's client does, so the items are what decoding null really gives.
			if err := json.Unmarshal([]byte(errs), &ev.Spec.DocumentStatus.ExtractionErrors); err != nil {
				t.Fatal(err)
			}
			got, err := Encode(ev)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if want := head + statusWithErrors(errs) + fullDocument + fullExtraction; string(got) != want {
				t.Fatalf("Encode mismatch\n got: %s\nwant: %s", got, want)
			}
		})
	}
}

// Bug: null document members used to be left out (totalAmount, documentDate) or sent as "" (description).
func TestEncodeNullDocumentMembersFromJSON(t *testing.T) {
	ev := fullEvent()
	ev.Spec.Document = nil
	if err := json.Unmarshal([]byte(`{"description":null,"totalAmount":null,"documentDate":null}`), &ev.Spec.Document); err != nil {
		t.Fatal(err)
	}
	got, err := Encode(ev)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if want := head + fullStatus + `,"document":{"description":null,"totalAmount":null,"documentDate":null}` + fullExtraction; string(got) != want {
		t.Fatalf("Encode mismatch\n got: %s\nwant: %s", got, want)
	}
}

func TestEncodeMemberOrder(t *testing.T) {
	for _, ev := range []*webhooksv1alpha1.DocumentEvent{fullEvent(), {}} {
		got, err := Encode(ev)
		if err != nil {
			t.Fatalf("Encode: %v", err)
		}
		if keys := memberNames(t, got); strings.Join(keys, ",") != "event,success,documentId,status,document,extraction" {
			t.Fatalf("top-level members %v", keys)
		}
	}
}

// memberNames returns the member names of a JSON object, in order.
func memberNames(t *testing.T, object []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(object))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("first token %v, %v in %s", tok, err, object)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func TestEncodeTotalAmountExact(t *testing.T) {
	for _, amount := range []string{
		"1234.56",
		"0.10",
		"0.1",
		"0",
		"-0.00",
		"12345678901234567890.123456789",
		"99999999999999999999999999999999999999",
		"1e3",
		"1.50E-2",
		"-17",
		"9007199254740993", // 2^53+1: a float64 round trip would print ...992
	} {
		t.Run(amount, func(t *testing.T) {
			ev := &webhooksv1alpha1.DocumentEvent{Spec: webhooksv1alpha1.DocumentEventSpec{
				Document: &webhooksv1alpha1.DocumentSummary{TotalAmount: decimal(amount)},
			}}
			got, err := Encode(ev)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			want := `"document":{"description":null,"totalAmount":` + amount + `,"documentDate":null}`
			if !bytes.Contains(got, []byte(want)) {
				t.Fatalf("output %s does not contain %s", got, want)
			}
		})
	}
}

func TestEncodeRejectsInvalid(t *testing.T) {
	tests := []struct {
		name   string
		modify func(spec *webhooksv1alpha1.DocumentEventSpec)
	}{
		{"fields truncated object", func(s *webhooksv1alpha1.DocumentEventSpec) { s.Extraction.Fields = raw(`{"a":`) }},
		{"fields bare word", func(s *webhooksv1alpha1.DocumentEventSpec) { s.Extraction.Fields = raw(`vendor`) }},
		{"fields two values", func(s *webhooksv1alpha1.DocumentEventSpec) { s.Extraction.Fields = raw(`{} {}`) }},
		{"fields single-quoted", func(s *webhooksv1alpha1.DocumentEventSpec) { s.Extraction.Fields = raw(`{'a':1}`) }},
		{"fields whitespace only", func(s *webhooksv1alpha1.DocumentEventSpec) { s.Extraction.Fields = raw("  ") }},
		{"tables trailing comma", func(s *webhooksv1alpha1.DocumentEventSpec) { s.Extraction.Tables = raw(`[1,]`) }},
		{"tables NaN", func(s *webhooksv1alpha1.DocumentEventSpec) { s.Extraction.Tables = raw(`NaN`) }},
		{"extraction error invalid", func(s *webhooksv1alpha1.DocumentEventSpec) {
			s.DocumentStatus.ExtractionErrors = []apiextensionsv1.JSON{*raw(`[nope]`)}
		}},
		{"extraction error of two values", func(s *webhooksv1alpha1.DocumentEventSpec) {
			// Joined with a comma these would pass as two array items.
			s.DocumentStatus.ExtractionErrors = []apiextensionsv1.JSON{*raw(`1,2`)}
		}},
		{"totalAmount with comma", func(s *webhooksv1alpha1.DocumentEventSpec) { s.Document.TotalAmount = decimal("1234,56") }},
		{"totalAmount with currency", func(s *webhooksv1alpha1.DocumentEventSpec) { s.Document.TotalAmount = decimal("1234.56 EUR") }},
		{"totalAmount text", func(s *webhooksv1alpha1.DocumentEventSpec) { s.Document.TotalAmount = decimal("abc") }},
		{"totalAmount empty", func(s *webhooksv1alpha1.DocumentEventSpec) { s.Document.TotalAmount = decimal("") }},
		{"totalAmount leading zero", func(s *webhooksv1alpha1.DocumentEventSpec) { s.Document.TotalAmount = decimal("01") }},
		{"totalAmount leading plus", func(s *webhooksv1alpha1.DocumentEventSpec) { s.Document.TotalAmount = decimal("+1") }},
		{"totalAmount trailing dot", func(s *webhooksv1alpha1.DocumentEventSpec) { s.Document.TotalAmount = decimal("1.") }},
		{"totalAmount leading dot", func(s *webhooksv1alpha1.DocumentEventSpec) { s.Document.TotalAmount = decimal(".5") }},
		{"totalAmount NaN", func(s *webhooksv1alpha1.DocumentEventSpec) { s.Document.TotalAmount = decimal("NaN") }},
		{"totalAmount Infinity", func(s *webhooksv1alpha1.DocumentEventSpec) { s.Document.TotalAmount = decimal("Infinity") }},
		{"totalAmount padded", func(s *webhooksv1alpha1.DocumentEventSpec) { s.Document.TotalAmount = decimal(" 1") }},
		{"totalAmount hex", func(s *webhooksv1alpha1.DocumentEventSpec) { s.Document.TotalAmount = decimal("0x10") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := fullEvent()
			tc.modify(&ev.Spec)
			got, err := Encode(ev)
			if err == nil {
				t.Fatalf("Encode succeeded with %s", got)
			}
			if got != nil {
				t.Fatalf("Encode returned bytes %q along with error %v", got, err)
			}
			if !strings.HasPrefix(err.Error(), "encode payload: ") {
				t.Fatalf("error %q lacks the encode payload prefix", err)
			}
		})
	}
}

func TestTestSample(t *testing.T) {
	// 01:30 in Tokyo is the previous day in UTC; the sample is dated in UTC.
	now := time.Date(2024, 1, 16, 1, 30, 0, 0, time.FixedZone("JST", 9*3600))
	got, err := TestSample(now, "0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"event":"document.ready","success":true,"documentId":"test_0123456789abcdef",` +
		`"status":{"extractionStatus":"INDEXED","docType":"INVOICE","createdAt":"2024-01-15T16:30:00Z",` +
		`"updatedAt":"2024-01-15T16:30:00Z","extractionErrors":null},` +
		`"document":{"description":"Test webhook from webhook-operator","totalAmount":0.00,"documentDate":"2024-01-15"},` +
		`"extraction":null}`
	if string(got) != want {
		t.Fatalf("TestSample mismatch\n got: %s\nwant: %s", got, want)
	}
	if _, err := Parse(bytes.NewReader(got)); err != nil {
		t.Fatalf("Parse rejects the test sample: %v", err)
	}
}

// isJSONNumber reports whether s is exactly one JSON number literal (RFC 8259), written independently
// of encoding/json.
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	return i == len(s)
}
