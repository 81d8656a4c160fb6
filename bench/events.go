package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// typicalEvent is an invoice like the one in config/samples: a few hundred bytes of spec.
func typicalEvent(ns, prefix string, i int) *webhooksv1alpha1.DocumentEvent {
	docType := "INVOICE"
	total := webhooksv1alpha1.Decimal("1234.56")
	return &webhooksv1alpha1.DocumentEvent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%05d", prefix, i)},
		Spec: webhooksv1alpha1.DocumentEventSpec{
			DocumentID: fmt.Sprintf("%s-%s-%05d", ns, prefix, i),
			DocumentStatus: webhooksv1alpha1.DocumentStatus{
				ExtractionStatus: "INDEXED",
				DocType:          &docType,
				CreatedAt:        "2024-01-15T10:30:00Z",
				UpdatedAt:        "2024-01-15T10:35:00Z",
			},
			Document: &webhooksv1alpha1.DocumentSummary{
				Description:  ptr.To(fmt.Sprintf("Invoice #%d from Acme", i)),
				TotalAmount:  &total,
				DocumentDate: "2024-01-15",
			},
			Extraction: &webhooksv1alpha1.Extraction{
				Fields: rawJSON(map[string]any{"invoiceNumber": fmt.Sprint(i), "vendor": "Acme GmbH", "currency": "EUR"}),
				Tables: rawJSON(map[string]any{"items": []any{map[string]any{"description": "Widget", "quantity": 2, "unitPrice": 617.28}}}),
			},
		},
	}
}

// largeExtraction returns extraction fields and line items that bring an event's spec to about size
// bytes of JSON.
func largeExtraction(size int) *webhooksv1alpha1.Extraction {
	fields := map[string]any{
		"invoiceNumber": "INV-2024-000123", "vendor": "Acme Industrial Supplies GmbH", "vendorVatId": "DE123456789",
		"customer": "Example Retail AG", "currency": "EUR", "paymentTerms": "30 days net", "iban": "DE89370400440532013000",
	}
	var items []any
	for i := 0; ; i++ {
		ext := &webhooksv1alpha1.Extraction{Fields: rawJSON(fields), Tables: rawJSON(map[string]any{"items": items})}
		ev := typicalEvent("bench-memory", "mem", 0)
		ev.Spec.Extraction = ext
		data, _ := json.Marshal(ev.Spec)
		if len(data) >= size {
			return ext
		}
		items = append(items, map[string]any{
			"position": i + 1, "sku": fmt.Sprintf("SKU-%06d", 1000+i), "description": "Stainless steel hex bolt M8x40, box of 100",
			"quantity": 3, "unitPrice": "12.40", "amount": "37.20",
		})
	}
}

func rawJSON(v any) *apiextensionsv1.JSON {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return &apiextensionsv1.JSON{Raw: data}
}

// markDelivered writes the status the operator writes on the happy path, with the same kind of request:
// one merge patch of the status subresource.
func (h *harness) markDelivered(ctx context.Context, ev *webhooksv1alpha1.DocumentEvent, endpoint string) error {
	base := ev.DeepCopy()
	now := metav1.NowMicro()
	ev.Status.ObservedGeneration = ev.Generation
	ev.Status.Phase = webhooksv1alpha1.DocumentEventDelivered
	ev.Status.CompletionTime = &now
	ev.Status.Deliveries = []webhooksv1alpha1.EndpointDelivery{{
		Endpoint:        endpoint,
		DeliveryID:      fmt.Sprintf("%s-%s", ev.UID, endpoint),
		Phase:           webhooksv1alpha1.DeliveryDelivered,
		Attempts:        1,
		LastAttemptTime: &now,
		LastStatusCode:  200,
		DeliveredAt:     &now,
		Duration:        webhooksv1alpha1.AttemptDuration(time.Millisecond),
	}}
	apimeta.SetStatusCondition(&ev.Status.Conditions, metav1.Condition{
		Type: webhooksv1alpha1.DeliveredCondition, Status: metav1.ConditionTrue, ObservedGeneration: ev.Generation,
		Reason: webhooksv1alpha1.DeliverySucceededReason, Message: "1 of 1 endpoints delivered", LastTransitionTime: metav1.NewTime(now.Time),
	})
	return retry(ctx, func() error { return h.c.Status().Patch(ctx, ev, client.MergeFrom(base)) })
}

// specBytes is the size of an event's spec as JSON.
func specBytes(ev *webhooksv1alpha1.DocumentEvent) int {
	data, _ := json.Marshal(ev.Spec)
	return len(data)
}

func since(t0, t time.Time) float64 { return t.Sub(t0).Seconds() }

// objectSize returns the size of one stored event as JSON, and the part of it that is managedFields.
func (h *harness) objectSize(ctx context.Context, ns, name string) (object, managedFields int, err error) {
	ev := &webhooksv1alpha1.DocumentEvent{}
	if err := h.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, ev); err != nil {
		return 0, 0, fmt.Errorf("get DocumentEvent %s/%s: %w", ns, name, err)
	}
	all, _ := json.Marshal(ev)
	mf, _ := json.Marshal(ev.ManagedFields)
	return len(all), len(mf), nil
}
