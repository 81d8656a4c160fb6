package controller

import (
	"bytes"
	"encoding/json"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
)

// payloadOf maps a DocumentEvent onto the webhook payload.
func payloadOf(ev *webhooksv1alpha1.DocumentEvent) delivery.Payload {
	st := ev.Spec.DocumentStatus
	p := delivery.Payload{
		Event:      string(ev.GetEvent()),
		Success:    true,
		DocumentID: ev.Spec.DocumentID,
		Status: delivery.Status{
			ExtractionStatus: ev.GetExtractionStatus(),
			DocType:          st.DocType,
			CreatedAt:        ev.GetCreatedAt(),
			UpdatedAt:        ev.GetUpdatedAt(),
		},
	}
	if st.ExtractionErrors != nil {
		p.Status.ExtractionErrors = jsonArray(st.ExtractionErrors)
	}
	if doc := ev.Spec.Document; doc != nil {
		p.Document = &delivery.Document{Description: doc.Description, DocumentDate: doc.DocumentDate}
		if doc.TotalAmount != nil {
			p.Document.TotalAmount = json.Number(*doc.TotalAmount)
		}
	}
	if ex := ev.Spec.Extraction; ex != nil {
		p.Extraction = &delivery.Extraction{Fields: rawJSON(ex.Fields), Tables: rawJSON(ex.Tables)}
	}
	return p
}

func rawJSON(v *apiextensionsv1.JSON) json.RawMessage {
	if v == nil {
		return nil
	}
	return v.Raw
}

// jsonArray joins the items as raw JSON; delivery.Marshal validates the result.
func jsonArray(items []apiextensionsv1.JSON) json.RawMessage {
	raw := make([][]byte, len(items))
	for i := range items {
		raw[i] = items[i].Raw
	}
	return json.RawMessage("[" + string(bytes.Join(raw, []byte(","))) + "]")
}
