// Package payload maps a DocumentEvent onto the document.ready request body and back. Encode writes the
// body the operator sends and signs; Parse turns such a body into the DocumentEvent spec that is sent as
// the same body, for `kubectl webhook send`. The body follows the webhook callbacks contract member for
// member: every member is present, and an unknown value is null rather than left out.
package payload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/utils/ptr"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// body is the document.ready request body, in the contract's member order. Pointers without omitempty
// make an absent value JSON null, never a missing member.
type body struct {
	Event      string      `json:"event"`
	Success    bool        `json:"success"`
	DocumentID string      `json:"documentId"`
	Status     status      `json:"status"`
	Document   *document   `json:"document"`
	Extraction *extraction `json:"extraction"`
}

// status is the body's status object. An extraction error with no Raw, which is what decoding a JSON
// null gives, is written as null in its place.
type status struct {
	ExtractionStatus string                 `json:"extractionStatus"`
	DocType          *string                `json:"docType"`
	CreatedAt        string                 `json:"createdAt"`
	UpdatedAt        string                 `json:"updatedAt"`
	ExtractionErrors []apiextensionsv1.JSON `json:"extractionErrors"`
}

// document is the body's document summary, shared with Parse. TotalAmount is the exact decimal text:
// encoding/json writes a json.Number as it is, so no digit passes through a float, and it rejects text
// that is not a JSON number.
type document struct {
	Description  *string      `json:"description"`
	TotalAmount  *json.Number `json:"totalAmount"`
	DocumentDate *string      `json:"documentDate"`
}

// extraction is the body's extraction object; a nil member is written as null.
type extraction struct {
	Fields *apiextensionsv1.JSON `json:"fields"`
	Tables *apiextensionsv1.JSON `json:"tables"`
}

// Encode returns the request body for ev: the exact bytes that are sent and signed. Unset defaults
// (event, extractionStatus, createdAt, updatedAt) are filled in as the DocumentEvent getters define them.
// It fails when a raw member (extractionErrors, fields, tables) is not valid JSON or totalAmount is not
// a JSON number, rather than send a body that receivers cannot parse; the API server never stores such
// an event.
func Encode(ev *webhooksv1alpha1.DocumentEvent) ([]byte, error) {
	spec := &ev.Spec
	b := body{
		Event:      string(ev.GetEvent()),
		Success:    true,
		DocumentID: spec.DocumentID,
		Status: status{
			ExtractionStatus: ev.GetExtractionStatus(),
			DocType:          spec.DocumentStatus.DocType,
			CreatedAt:        ev.GetCreatedAt(),
			UpdatedAt:        ev.GetUpdatedAt(),
			ExtractionErrors: spec.DocumentStatus.ExtractionErrors,
		},
	}
	if doc := spec.Document; doc != nil {
		b.Document = &document{Description: doc.Description}
		if amount := doc.TotalAmount; amount != nil {
			if *amount == "" {
				// encoding/json would write an empty json.Number as 0.
				return nil, errors.New("encode payload: document.totalAmount is empty")
			}
			b.Document.TotalAmount = ptr.To(json.Number(*amount))
		}
		// "" is not a valid documentDate, so it can only mean unset.
		if doc.DocumentDate != "" {
			b.Document.DocumentDate = &doc.DocumentDate
		}
	}
	if ex := spec.Extraction; ex != nil {
		b.Extraction = &extraction{Fields: ex.Fields, Tables: ex.Tables}
	}
	return marshal(b)
}

// TestSample returns the body of a test webhook: a document.ready payload for the INVOICE "test_"+id
// with a zero total, dated now. It is built like any event's body, so receivers parse it the same way.
func TestSample(now time.Time, id string) ([]byte, error) {
	now = now.UTC()
	stamp := now.Format(time.RFC3339)
	amount := webhooksv1alpha1.Decimal("0.00")
	return Encode(&webhooksv1alpha1.DocumentEvent{Spec: webhooksv1alpha1.DocumentEventSpec{
		Event:      webhooksv1alpha1.DocumentReadyEvent,
		DocumentID: "test_" + id,
		DocumentStatus: webhooksv1alpha1.DocumentStatus{
			ExtractionStatus: "INDEXED",
			DocType:          ptr.To("INVOICE"),
			CreatedAt:        stamp,
			UpdatedAt:        stamp,
		},
		Document: &webhooksv1alpha1.DocumentSummary{
			Description:  ptr.To("Test webhook from webhook-operator"),
			TotalAmount:  &amount,
			DocumentDate: now.Format(time.DateOnly),
		},
	}})
}

func marshal(b body) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Receivers verify the raw bytes; HTML escaping would only make them harder to read by hand.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(b); err != nil {
		return nil, fmt.Errorf("encode payload: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
