package delivery

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func strPtr(s string) *string { return &s }

func fullPayload() Payload {
	return Payload{
		Event:      "document.ready",
		Success:    true,
		DocumentID: "doc_abc123xyz",
		Status: Status{
			ExtractionStatus: "INDEXED",
			DocType:          strPtr("INVOICE"),
			CreatedAt:        "2024-01-02T03:04:05Z",
			UpdatedAt:        "2024-01-02T03:05:06.789Z",
			ExtractionErrors: json.RawMessage(`[{"field":"totalAmount","message":"low confidence"}]`),
		},
		Document: &Document{
			Description:  "Invoice #42",
			TotalAmount:  json.Number("1234.56"),
			DocumentDate: "2024-01-02",
		},
		Extraction: &Extraction{
			Fields: json.RawMessage(`{"vendor":"ACME","vat":19}`),
			Tables: json.RawMessage(`{"items":[{"sku":"A1","qty":2,"price":9.99}]}`),
		},
	}
}

func TestMarshalExactBytes(t *testing.T) {
	const fullStatus = `"status":{"extractionStatus":"INDEXED","docType":"INVOICE","createdAt":"2024-01-02T03:04:05Z",` +
		`"updatedAt":"2024-01-02T03:05:06.789Z","extractionErrors":[{"field":"totalAmount","message":"low confidence"}]}`
	const head = `{"event":"document.ready","success":true,"documentId":"doc_abc123xyz",`

	tests := []struct {
		name   string
		modify func(p *Payload)
		want   string
	}{
		{
			name:   "full payload",
			modify: func(*Payload) {},
			want: head + fullStatus +
				`,"document":{"description":"Invoice #42","totalAmount":1234.56,"documentDate":"2024-01-02"}` +
				`,"extraction":{"fields":{"vendor":"ACME","vat":19},"tables":{"items":[{"sku":"A1","qty":2,"price":9.99}]}}}`,
		},
		{
			name: "nil document, extraction, docType, extractionErrors are null, not omitted",
			modify: func(p *Payload) {
				p.Document, p.Extraction = nil, nil
				p.Status.DocType, p.Status.ExtractionErrors = nil, nil
			},
			want: head + `"status":{"extractionStatus":"INDEXED","docType":null,"createdAt":"2024-01-02T03:04:05Z",` +
				`"updatedAt":"2024-01-02T03:05:06.789Z","extractionErrors":null},"document":null,"extraction":null}`,
		},
		{
			name:   "empty non-nil extractionErrors is null",
			modify: func(p *Payload) { p.Status.ExtractionErrors = json.RawMessage{} },
			want: head + `"status":{"extractionStatus":"INDEXED","docType":"INVOICE","createdAt":"2024-01-02T03:04:05Z",` +
				`"updatedAt":"2024-01-02T03:05:06.789Z","extractionErrors":null}` +
				`,"document":{"description":"Invoice #42","totalAmount":1234.56,"documentDate":"2024-01-02"}` +
				`,"extraction":{"fields":{"vendor":"ACME","vat":19},"tables":{"items":[{"sku":"A1","qty":2,"price":9.99}]}}}`,
		},
		{
			name:   "empty array extractionErrors stays an array",
			modify: func(p *Payload) { p.Status.ExtractionErrors = json.RawMessage(`[]`) },
			want: head + `"status":{"extractionStatus":"INDEXED","docType":"INVOICE","createdAt":"2024-01-02T03:04:05Z",` +
				`"updatedAt":"2024-01-02T03:05:06.789Z","extractionErrors":[]}` +
				`,"document":{"description":"Invoice #42","totalAmount":1234.56,"documentDate":"2024-01-02"}` +
				`,"extraction":{"fields":{"vendor":"ACME","vat":19},"tables":{"items":[{"sku":"A1","qty":2,"price":9.99}]}}}`,
		},
		{
			name:   "extraction with nil fields and tables",
			modify: func(p *Payload) { p.Extraction = &Extraction{} },
			want: head + fullStatus +
				`,"document":{"description":"Invoice #42","totalAmount":1234.56,"documentDate":"2024-01-02"}` +
				`,"extraction":{"fields":null,"tables":null}}`,
		},
		{
			name:   "extraction with fields only",
			modify: func(p *Payload) { p.Extraction = &Extraction{Fields: json.RawMessage(`{"a":1}`)} },
			want: head + fullStatus +
				`,"document":{"description":"Invoice #42","totalAmount":1234.56,"documentDate":"2024-01-02"}` +
				`,"extraction":{"fields":{"a":1},"tables":null}}`,
		},
		{
			name: "raw members are compacted",
			modify: func(p *Payload) {
				p.Extraction = &Extraction{
					Fields: json.RawMessage("{\n  \"vendor\" : \"ACME\",\n  \"vat\" : 19\n}\n"),
					Tables: json.RawMessage(" { \"items\" : [ ] } "),
				}
			},
			want: head + fullStatus +
				`,"document":{"description":"Invoice #42","totalAmount":1234.56,"documentDate":"2024-01-02"}` +
				`,"extraction":{"fields":{"vendor":"ACME","vat":19},"tables":{"items":[]}}}`,
		},
		{
			name:   "empty totalAmount and documentDate are omitted",
			modify: func(p *Payload) { p.Document = &Document{Description: "x"} },
			want: head + fullStatus +
				`,"document":{"description":"x"}` +
				`,"extraction":{"fields":{"vendor":"ACME","vat":19},"tables":{"items":[{"sku":"A1","qty":2,"price":9.99}]}}}`,
		},
		{
			name: "HTML characters are not escaped",
			modify: func(p *Payload) {
				p.DocumentID = "doc_<1>&2"
				p.Document = &Document{Description: "<b>&</b> 'quoted' \"double\""}
				p.Extraction = &Extraction{Fields: json.RawMessage(`{"html":"<i>a&b</i>"}`), Tables: json.RawMessage(`{"<k>":"&"}`)}
			},
			want: `{"event":"document.ready","success":true,"documentId":"doc_<1>&2",` + fullStatus +
				`,"document":{"description":"<b>&</b> 'quoted' \"double\""}` +
				`,"extraction":{"fields":{"html":"<i>a&b</i>"},"tables":{"<k>":"&"}}}`,
		},
		{
			name: "unicode and control characters",
			modify: func(p *Payload) {
				p.Document = &Document{Description: "Rechnung für Müller\t€\n"}
				p.Extraction = nil
			},
			want: head + fullStatus +
				`,"document":{"description":"Rechnung für Müller\t€\n"},"extraction":null}`,
		},
		{
			name:   "success false and empty strings",
			modify: func(p *Payload) { *p = Payload{} },
			want: `{"event":"","success":false,"documentId":"","status":{"extractionStatus":"","docType":null,` +
				`"createdAt":"","updatedAt":"","extractionErrors":null},"document":null,"extraction":null}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := fullPayload()
			tc.modify(&p)
			got, err := Marshal(p)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if string(got) != tc.want {
				t.Fatalf("Marshal mismatch\n got: %s\nwant: %s", got, tc.want)
			}
			if !json.Valid(got) {
				t.Fatalf("output is not valid JSON: %s", got)
			}
			if bytes.HasSuffix(got, []byte("\n")) {
				t.Fatalf("output has a trailing newline")
			}
		})
	}
}

func TestMarshalFieldOrder(t *testing.T) {
	for _, p := range []Payload{fullPayload(), {}} {
		got, err := Marshal(p)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		dec := json.NewDecoder(bytes.NewReader(got))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			t.Fatalf("first token %v, %v", tok, err)
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
		want := []string{"event", "success", "documentId", "status", "document", "extraction"}
		if strings.Join(keys, ",") != strings.Join(want, ",") {
			t.Fatalf("top-level keys %v, want %v", keys, want)
		}
	}
}

func TestMarshalTotalAmountExact(t *testing.T) {
	tests := []struct {
		amount string
	}{
		{"1234.56"},
		{"0.10"},
		{"0.1"},
		{"0"},
		{"-0.00"},
		{"12345678901234567890.123456789"},
		{"99999999999999999999999999999999999999"},
		{"1e3"},
		{"1.50E-2"},
		{"-17"},
		{"9007199254740993"}, // 2^53+1: a float64 round trip would print ...992
	}
	for _, tc := range tests {
		t.Run(tc.amount, func(t *testing.T) {
			p := Payload{Document: &Document{Description: "d", TotalAmount: json.Number(tc.amount)}}
			got, err := Marshal(p)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			want := `"document":{"description":"d","totalAmount":` + tc.amount + `}`
			if !bytes.Contains(got, []byte(want)) {
				t.Fatalf("output %s does not contain %s", got, want)
			}
			// The number is a JSON number, not a string, and decodes to the same text.
			var back struct {
				Document struct {
					TotalAmount json.RawMessage `json:"totalAmount"`
				} `json:"document"`
			}
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatal(err)
			}
			if string(back.Document.TotalAmount) != tc.amount {
				t.Fatalf("decoded totalAmount %s, want %s", back.Document.TotalAmount, tc.amount)
			}
		})
	}
}

func TestMarshalRejectsInvalid(t *testing.T) {
	tests := []struct {
		name   string
		modify func(p *Payload)
	}{
		{"fields truncated object", func(p *Payload) { p.Extraction.Fields = json.RawMessage(`{"a":`) }},
		{"fields bare word", func(p *Payload) { p.Extraction.Fields = json.RawMessage(`vendor`) }},
		{"fields two values", func(p *Payload) { p.Extraction.Fields = json.RawMessage(`{} {}`) }},
		{"fields single-quoted", func(p *Payload) { p.Extraction.Fields = json.RawMessage(`{'a':1}`) }},
		{"fields whitespace only", func(p *Payload) { p.Extraction.Fields = json.RawMessage("  ") }},
		{"tables trailing comma", func(p *Payload) { p.Extraction.Tables = json.RawMessage(`[1,]`) }},
		{"tables NaN", func(p *Payload) { p.Extraction.Tables = json.RawMessage(`NaN`) }},
		{"extractionErrors invalid", func(p *Payload) { p.Status.ExtractionErrors = json.RawMessage(`[nope]`) }},
		{"totalAmount with comma", func(p *Payload) { p.Document.TotalAmount = "1234,56" }},
		{"totalAmount with currency", func(p *Payload) { p.Document.TotalAmount = "1234.56 EUR" }},
		{"totalAmount text", func(p *Payload) { p.Document.TotalAmount = "abc" }},
		{"totalAmount leading zero", func(p *Payload) { p.Document.TotalAmount = "01" }},
		{"totalAmount leading plus", func(p *Payload) { p.Document.TotalAmount = "+1" }},
		{"totalAmount trailing dot", func(p *Payload) { p.Document.TotalAmount = "1." }},
		{"totalAmount leading dot", func(p *Payload) { p.Document.TotalAmount = ".5" }},
		{"totalAmount NaN", func(p *Payload) { p.Document.TotalAmount = "NaN" }},
		{"totalAmount Infinity", func(p *Payload) { p.Document.TotalAmount = "Infinity" }},
		{"totalAmount padded", func(p *Payload) { p.Document.TotalAmount = " 1" }},
		{"totalAmount hex", func(p *Payload) { p.Document.TotalAmount = "0x10" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := fullPayload()
			tc.modify(&p)
			got, err := Marshal(p)
			if err == nil {
				t.Fatalf("Marshal succeeded with %s", got)
			}
			if got != nil {
				t.Fatalf("Marshal returned bytes %q along with error %v", got, err)
			}
			if !strings.HasPrefix(err.Error(), "encode payload: ") {
				t.Fatalf("error %q lacks the encode payload prefix", err)
			}
		})
	}
}

// Marshal fills in nulls on a copy; the caller's payload must not change.
func TestMarshalDoesNotMutateInput(t *testing.T) {
	ex := &Extraction{}
	p := Payload{Extraction: ex}
	if _, err := Marshal(p); err != nil {
		t.Fatal(err)
	}
	if ex.Fields != nil || ex.Tables != nil {
		t.Fatalf("Marshal changed the caller's extraction to %+v", *ex)
	}
	if p.Status.ExtractionErrors != nil {
		t.Fatalf("Marshal changed the caller's extractionErrors")
	}
	if p.Extraction != ex {
		t.Fatalf("Marshal replaced the caller's extraction pointer")
	}
}

func FuzzMarshal(f *testing.F) {
	f.Add("doc_abc123xyz", "Invoice #42", []byte(`{"vendor":"ACME"}`), "1234.56")
	f.Add("", "", []byte(nil), "")
	f.Add("doc_<&>", "<b>&</b>", []byte(`{"h":"<i>"}`), "0.10")
	f.Add("\xff\xfe", "\u2028\u2029\x00", []byte(`"\xff"`), "12345678901234567890.123456789")
	f.Add("d", "x", []byte(`{"a":`), "1")
	f.Add("d", "x", []byte(" [ 1 , 2 ] "), "1,5")
	f.Add("d", "x", []byte("null"), "-0")
	f.Add("d", "x", []byte("  "), "1e400")

	keys := []string{"event", "success", "documentId", "status", "document", "extraction"}
	f.Fuzz(func(t *testing.T, documentID, description string, fields []byte, amount string) {
		p := Payload{
			Event:      "document.ready",
			Success:    true,
			DocumentID: documentID,
			Status:     Status{ExtractionStatus: "INDEXED"},
			Document:   &Document{Description: description, TotalAmount: json.Number(amount)},
			Extraction: &Extraction{Fields: json.RawMessage(fields)},
		}
		got, err := Marshal(p)

		fieldsOK := len(fields) == 0 || json.Valid(fields)
		amountOK := amount == "" || isJSONNumber(amount)
		if err != nil {
			if fieldsOK && amountOK {
				t.Fatalf("Marshal rejected valid input (fields %q, amount %q): %v", fields, amount, err)
			}
			return
		}
		if !fieldsOK || !amountOK {
			t.Fatalf("Marshal accepted invalid input (fields %q, amount %q): %s", fields, amount, got)
		}
		if !json.Valid(got) {
			t.Fatalf("Marshal output is not valid JSON: %q", got)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(got, &m); err != nil {
			t.Fatalf("unmarshal: %v", err)
		}
		for _, k := range keys {
			if _, ok := m[k]; !ok {
				t.Fatalf("key %q missing from %s", k, got)
			}
		}
		if len(m) != len(keys) {
			t.Fatalf("unexpected extra top-level keys in %s", got)
		}

		var back struct {
			DocumentID string `json:"documentId"`
			Document   struct {
				Description string          `json:"description"`
				TotalAmount json.RawMessage `json:"totalAmount"`
			} `json:"document"`
			Extraction struct {
				Fields json.RawMessage `json:"fields"`
			} `json:"extraction"`
		}
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("unmarshal: %v", err)
		}
		if utf8.ValidString(documentID) && back.DocumentID != documentID {
			t.Fatalf("documentId round trip: got %q, want %q", back.DocumentID, documentID)
		}
		if utf8.ValidString(description) && back.Document.Description != description {
			t.Fatalf("description round trip: got %q, want %q", back.Document.Description, description)
		}
		if amount != "" && string(back.Document.TotalAmount) != amount {
			t.Fatalf("totalAmount changed: got %s, want %s", back.Document.TotalAmount, amount)
		}
		wantFields := []byte("null")
		if len(fields) > 0 {
			var buf bytes.Buffer
			if err := json.Compact(&buf, fields); err != nil {
				t.Fatal(err)
			}
			wantFields = buf.Bytes()
		}
		if !bytes.Equal(back.Extraction.Fields, wantFields) {
			t.Fatalf("fields: got %s, want %s", back.Extraction.Fields, wantFields)
		}
	})
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
