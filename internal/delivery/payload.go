package delivery

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Payload is the document.ready request body, field for field as the webhook callbacks spec lists it.
// Document and Extraction are pointers without omitempty: absent means JSON null, never a missing key.
type Payload struct {
	Event      string      `json:"event"`
	Success    bool        `json:"success"`
	DocumentID string      `json:"documentId"`
	Status     Status      `json:"status"`
	Document   *Document   `json:"document"`
	Extraction *Extraction `json:"extraction"`
}

// Status is the payload's status object.
type Status struct {
	ExtractionStatus string          `json:"extractionStatus"`
	DocType          *string         `json:"docType"`
	CreatedAt        string          `json:"createdAt"`
	UpdatedAt        string          `json:"updatedAt"`
	ExtractionErrors json.RawMessage `json:"extractionErrors"`
}

// Document is the payload's document summary. TotalAmount is the exact decimal text; it is written as a
// JSON number, so no digit passes through a float.
type Document struct {
	Description  string      `json:"description"`
	TotalAmount  json.Number `json:"totalAmount,omitempty"`
	DocumentDate string      `json:"documentDate,omitempty"`
}

// Extraction is the payload's extraction object; both members are raw JSON (null when nil).
type Extraction struct {
	Fields json.RawMessage `json:"fields"`
	Tables json.RawMessage `json:"tables"`
}

var jsonNull = json.RawMessage("null")

// Marshal returns the exact bytes that are sent and signed. It rejects a TotalAmount that is not a
// valid JSON number and raw members that are not valid JSON, rather than send a body receivers cannot
// parse.
func Marshal(p Payload) ([]byte, error) {
	p.Status.ExtractionErrors = orNull(p.Status.ExtractionErrors)
	if p.Extraction != nil {
		e := *p.Extraction
		e.Fields, e.Tables = orNull(e.Fields), orNull(e.Tables)
		p.Extraction = &e
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Receivers verify the raw bytes; HTML escaping would only make them harder to read by hand.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return nil, fmt.Errorf("encode payload: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func orNull(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return jsonNull
	}
	return raw
}
