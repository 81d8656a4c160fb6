package payload

import (
	"bytes"
	"cmp"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// eventWith returns an event with spec, created at a fixed time so that createdAt and updatedAt default
// to the same value on every call.
func eventWith(spec *webhooksv1alpha1.DocumentEventSpec) *webhooksv1alpha1.DocumentEvent {
	return &webhooksv1alpha1.DocumentEvent{
		ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(time.Date(2024, 1, 15, 10, 30, 0, 0, time.UTC))},
		Spec:       *spec,
	}
}

// withDefaults returns ev's spec with the defaults that Encode fills in written out, which is the spec
// that parsing the encoded body gives.
func withDefaults(ev *webhooksv1alpha1.DocumentEvent) *webhooksv1alpha1.DocumentEventSpec {
	spec := ev.Spec.DeepCopy()
	spec.Event = ev.GetEvent()
	spec.DocumentStatus.ExtractionStatus = ev.GetExtractionStatus()
	spec.DocumentStatus.CreatedAt = ev.GetCreatedAt()
	spec.DocumentStatus.UpdatedAt = ev.GetUpdatedAt()
	return spec
}

// FuzzRoundTrip checks that Parse and Encode are inverse: a spec that Parse accepts is encoded into a
// body that parses back into the same spec (with the defaults written out), and that body encodes
// again to the same bytes.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte(head + fullStatus + fullDocument + fullExtraction))
	f.Add([]byte(`{"documentId":"d"}`))
	f.Add([]byte(`{"documentId":"d","status":null,"document":null,"extraction":null}`))
	f.Add([]byte(`{"documentId":"d","document":{"description":null,"totalAmount":null,"documentDate":null}}`))
	f.Add([]byte(`{"documentId":"d","document":{"description":"","totalAmount":"0.10","documentDate":"2024-01-15"}}`))
	f.Add([]byte(`{"documentId":"d","document":{"totalAmount":-1.50E+10}}`))
	f.Add([]byte(`{"documentId":"d","document":{"totalAmount":12345678901234567890.123456789}}`))
	f.Add([]byte(`{"documentId":"d","status":{"extractionErrors":[null, {"a" : 1}, null]}}`))
	f.Add([]byte(`{"documentId":"d","status":{"extractionErrors":[]}}`))
	f.Add([]byte(`{"documentId":"<&>\u2028","document":{"description":"\ud800 \u0000 <b>"}}`))
	f.Add([]byte("{\"documentId\":\"d\",\"extraction\":{\"fields\":{\"s\":\"\xff\"},\"tables\":{ }}}"))
	f.Add([]byte(`{"documentId":"d","extraction":{"fields":[1]}}`))
	f.Add([]byte(`{"documentId":"d","document":{"documentDate":""}}`))

	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := Parse(bytes.NewReader(data))
		if err != nil {
			return
		}
		ev := eventWith(spec)
		encoded, err := Encode(ev)
		if err != nil {
			t.Fatalf("Encode rejects a spec that Parse accepted from %q: %v", data, err)
		}
		again, err := Parse(bytes.NewReader(encoded))
		if err != nil {
			t.Fatalf("Parse rejects the encoded body %s: %v", encoded, err)
		}
		if want := withDefaults(ev); !equality.Semantic.DeepEqual(again, want) {
			t.Fatalf("the spec changed through Encode and Parse\n got: %+v\nwant: %+v\nbody: %s", again, want, encoded)
		}
		reencoded, err := Encode(eventWith(again))
		if err != nil {
			t.Fatalf("Encode rejects the parsed body %s: %v", encoded, err)
		}
		if !bytes.Equal(reencoded, encoded) {
			t.Fatalf("the body changed through Parse and Encode\n got: %s\nwant: %s", reencoded, encoded)
		}
	})
}

// FuzzEncode builds events from arbitrary members, as the API server would hand them over or as a bug
// could, and checks that Encode either rejects them or writes a body with every member of the contract,
// which Parse accepts and encodes again to the same bytes.
func FuzzEncode(f *testing.F) {
	f.Add("doc_abc123xyz", "Invoice #42", "1234.56", []byte(`{"field":"x"}`), []byte(`{"vendor":"ACME"}`))
	f.Add("", "", "", []byte(nil), []byte(nil))
	f.Add("doc_<&>", "<b>&</b>", "0.10", []byte(`null`), []byte(`{"h":"<i>"}`))
	f.Add("\xff\xfe", "\u2028\u2029\x00", "12345678901234567890.123456789", []byte(`"\xff"`), []byte(`"\xff"`))
	f.Add("d", "x", "1", []byte(`1,2`), []byte(`{"a":`))
	f.Add("d", "x", "1,5", []byte(`[]`), []byte(" [ 1 , 2 ] "))
	f.Add("d", "x", "-0", []byte(` {} `), []byte("null"))
	f.Add("d", "x", "1e400", []byte(`{}`), []byte("  "))

	documentMembers := "description,totalAmount,documentDate"
	f.Fuzz(func(t *testing.T, documentID, description, amount string, extractionError, fields []byte) {
		doc := &webhooksv1alpha1.DocumentSummary{Description: ptr.To(description)}
		if amount != "" {
			doc.TotalAmount = ptr.To(webhooksv1alpha1.Decimal(amount))
		}
		ev := eventWith(&webhooksv1alpha1.DocumentEventSpec{
			DocumentID: documentID,
			DocumentStatus: webhooksv1alpha1.DocumentStatus{
				// The second item is what decoding a JSON null gives.
				ExtractionErrors: []apiextensionsv1.JSON{{Raw: extractionError}, {}},
			},
			Document:   doc,
			Extraction: &webhooksv1alpha1.Extraction{Fields: &apiextensionsv1.JSON{Raw: fields}},
		})
		got, err := Encode(ev)

		valid := (amount == "" || isJSONNumber(amount)) &&
			(len(extractionError) == 0 || json.Valid(extractionError)) &&
			(len(fields) == 0 || json.Valid(fields))
		if err != nil {
			if valid {
				t.Fatalf("Encode rejected a valid event (amount %q, extraction error %q, fields %q): %v", amount, extractionError, fields, err)
			}
			return
		}
		if !valid {
			t.Fatalf("Encode accepted an invalid event (amount %q, extraction error %q, fields %q): %s", amount, extractionError, fields, got)
		}
		if !json.Valid(got) {
			t.Fatalf("Encode output is not valid JSON: %q", got)
		}
		if keys := memberNames(t, got); strings.Join(keys, ",") != "event,success,documentId,status,document,extraction" {
			t.Fatalf("top-level members %v in %s", keys, got)
		}

		var back struct {
			DocumentID string `json:"documentId"`
			Status     struct {
				ExtractionErrors []json.RawMessage `json:"extractionErrors"`
			} `json:"status"`
			Document   json.RawMessage `json:"document"`
			Extraction struct {
				Fields json.RawMessage `json:"fields"`
			} `json:"extraction"`
		}
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("unmarshal: %v", err)
		}
		if keys := memberNames(t, back.Document); strings.Join(keys, ",") != documentMembers {
			t.Fatalf("document members %v in %s", keys, got)
		}
		var document struct {
			Description string          `json:"description"`
			TotalAmount json.RawMessage `json:"totalAmount"`
		}
		if err := json.Unmarshal(back.Document, &document); err != nil {
			t.Fatalf("unmarshal document: %v", err)
		}
		if utf8.ValidString(documentID) && back.DocumentID != documentID {
			t.Fatalf("documentId round trip: got %q, want %q", back.DocumentID, documentID)
		}
		if utf8.ValidString(description) && document.Description != description {
			t.Fatalf("description round trip: got %q, want %q", document.Description, description)
		}
		if wantAmount := cmp.Or(amount, "null"); string(document.TotalAmount) != wantAmount {
			t.Fatalf("totalAmount: got %s, want %s", document.TotalAmount, wantAmount)
		}
		if len(back.Status.ExtractionErrors) != 2 || string(back.Status.ExtractionErrors[1]) != "null" {
			t.Fatalf("extractionErrors: got %s, want 2 items, the second null", back.Status.ExtractionErrors)
		}
		if want := compacted(t, fields); !bytes.Equal(back.Extraction.Fields, want) {
			t.Fatalf("fields: got %s, want %s", back.Extraction.Fields, want)
		}

		// Parse takes the body of every event the API server accepts: a documentId that is not blank,
		// fields that are an object, and strings in UTF-8 (the API server decodes JSON, which replaces
		// invalid bytes with U+FFFD; Encode writes those as the escape \ufffd, and U+FFFD itself as is).
		if strings.TrimSpace(documentID) == "" || !isObjectOrNull(fields) ||
			!utf8.ValidString(documentID) || !utf8.ValidString(description) {
			return
		}
		spec, err := Parse(bytes.NewReader(got))
		if err != nil {
			t.Fatalf("Parse rejects the encoded body %s: %v", got, err)
		}
		reencoded, err := Encode(eventWith(spec))
		if err != nil {
			t.Fatalf("Encode rejects the parsed body %s: %v", got, err)
		}
		if !bytes.Equal(reencoded, got) {
			t.Fatalf("the body changed through Parse and Encode\n got: %s\nwant: %s", reencoded, got)
		}
	})
}

// compacted is raw without insignificant white space, or null when raw is empty.
func compacted(t *testing.T, raw []byte) []byte {
	t.Helper()
	if len(raw) == 0 {
		return []byte("null")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func isObjectOrNull(raw []byte) bool {
	trimmed := bytes.TrimSpace(raw)
	return len(trimmed) == 0 || trimmed[0] == '{' || bytes.Equal(trimmed, []byte("null"))
}
