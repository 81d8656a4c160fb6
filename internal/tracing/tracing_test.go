package tracing

import (
	"errors"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const pipelineParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func TestEventTrace(t *testing.T) {
	for _, tc := range []struct {
		name, traceparent, tracestate string
		wantErr                       bool
		wantTrace                     string
	}{
		{name: "pipeline's span", traceparent: pipelineParent, tracestate: "vendor=abc", wantTrace: "4bf92f3577b34da6a3ce929d0e0e4736"},
		{name: "no annotation", wantTrace: derivedTraceID("uid-1").String()},
		{name: "not trace context", traceparent: "hello", wantErr: true, wantTrace: derivedTraceID("uid-1").String()},
		{name: "all-zero trace id", traceparent: "00-00000000000000000000000000000000-00f067aa0ba902b7-01", wantErr: true,
			wantTrace: derivedTraceID("uid-1").String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := EventTrace("uid-1", tc.traceparent, tc.tracestate)
			if tc.wantErr != errors.Is(err, ErrInvalidTraceContext) {
				t.Fatalf("err = %v, want invalid: %v", err, tc.wantErr)
			}
			if got := tr.id.String(); got != tc.wantTrace {
				t.Fatalf("trace id %s, want %s", got, tc.wantTrace)
			}
		})
	}
}

func TestAttemptHeadersCarryTheTraceAndANewSpan(t *testing.T) {
	tr, err := EventTrace("uid-1", pipelineParent, "vendor=abc")
	if err != nil {
		t.Fatal(err)
	}
	first, second := tr.NewAttempt(), tr.NewAttempt()
	if first.SpanID == second.SpanID {
		t.Fatal("two attempts got the same span")
	}
	want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + first.SpanID.String() + "-01"
	if first.TraceParent != want || first.TraceState != "vendor=abc" {
		t.Fatalf("headers %q %q, want %q vendor=abc", first.TraceParent, first.TraceState, want)
	}
}

func TestSpansOfADeliveryUnderThePipelinesSpan(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	r := NewRecorder(NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	tr, _ := EventTrace("uid-1", pipelineParent, "")
	created := time.Date(2024, 1, 15, 10, 0, 0, 0, time.UTC)
	first, second := tr.NewAttempt(), tr.NewAttempt()
	r.Attempt(tr, first, AttemptSpan{Namespace: "acme", Endpoint: "orders", DeliveryID: "whd_1", Number: 1,
		Start: created.Add(time.Second), Duration: 40 * time.Millisecond, StatusCode: 503, Outcome: OutcomeRetrying,
		ErrorClass: "http_status", RetryIn: 2 * time.Second, Circuit: "opened"})
	r.Attempt(tr, second, AttemptSpan{Namespace: "acme", Endpoint: "orders", DeliveryID: "whd_1", Number: 2,
		Start: created.Add(3 * time.Second), Duration: 10 * time.Millisecond, StatusCode: 200, Outcome: OutcomeDelivered})
	r.Delivery(tr, DeliverySpan{Namespace: "acme", Endpoint: "orders", DeliveryID: "whd_1", Start: created,
		End: created.Add(3 * time.Second), Phase: "Delivered", Attempts: 2})

	ended := spans.Ended()
	if len(ended) != 3 {
		t.Fatalf("%d spans, want 2 attempts and the delivery", len(ended))
	}
	delivery := ended[2]
	if delivery.Parent().SpanID().String() != "00f067aa0ba902b7" || delivery.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("delivery span under %s in trace %s, want the pipeline's span", delivery.Parent().SpanID(), delivery.SpanContext().TraceID())
	}
	if !delivery.StartTime().Equal(created) {
		t.Fatalf("delivery span starts %s, want the event's creation", delivery.StartTime())
	}
	for i, attempt := range ended[:2] {
		if attempt.Parent().SpanID() != delivery.SpanContext().SpanID() {
			t.Fatalf("attempt %d under %s, want the delivery span %s", i+1, attempt.Parent().SpanID(), delivery.SpanContext().SpanID())
		}
		if want := []trace.SpanID{first.SpanID, second.SpanID}[i]; attempt.SpanContext().SpanID() != want {
			t.Fatalf("attempt %d span %s, want the one in its traceparent header %s", i+1, attempt.SpanContext().SpanID(), want)
		}
	}
	attrs := map[string]string{}
	for _, kv := range ended[0].Attributes() {
		attrs[string(kv.Key)] = kv.Value.String()
	}
	for key, want := range map[string]string{"webhook.attempt": "1", "http.response.status_code": "503",
		"webhook.outcome": "retrying", "error.type": "http_status", "webhook.retry_in_seconds": "2",
		"webhook.delivery_id": "whd_1", "webhook.endpoint": "orders"} {
		if attrs[key] != want {
			t.Errorf("attribute %s = %q, want %q", key, attrs[key], want)
		}
	}
	if events := ended[0].Events(); len(events) != 1 || !strings.Contains(events[0].Name, "circuit opened") {
		t.Errorf("events %v, want the circuit opening", events)
	}
}

func TestAnEventWithoutParentHasATraceOfItsOwn(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	r := NewRecorder(NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	tr, _ := EventTrace("uid-1", "", "")
	r.Delivery(tr, DeliverySpan{DeliveryID: "whd_1", Start: time.Now(), End: time.Now(), Phase: "Failed", Reason: "AttemptsExhausted"})
	span := spans.Ended()[0]
	if span.Parent().IsValid() || span.SpanContext().TraceID() != derivedTraceID("uid-1") ||
		span.SpanContext().SpanID() != derivedSpanID("whd_1") {
		t.Fatalf("span %s/%s under %v, want a root in the event's trace with the delivery's span id",
			span.SpanContext().TraceID(), span.SpanContext().SpanID(), span.Parent())
	}
}

func TestADisabledRecorderRecordsNothing(t *testing.T) {
	r := NewRecorder(nil)
	if r.Enabled() {
		t.Fatal("a recorder without a provider is enabled")
	}
	tr, _ := EventTrace("uid-1", "", "")
	r.Attempt(tr, tr.NewAttempt(), AttemptSpan{DeliveryID: "whd_1"})
	r.Delivery(tr, DeliverySpan{DeliveryID: "whd_1"})
	var none *Recorder
	none.Attempt(tr, tr.NewAttempt(), AttemptSpan{})
}

func TestEachRedeliveryRoundHasADeliverySpanOfItsOwn(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	r := NewRecorder(NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	tr, _ := EventTrace("uid-1", pipelineParent, "")
	created := time.Date(2024, 1, 15, 10, 0, 0, 0, time.UTC)
	// The first round has no redelivery request; the second acts on the annotation's value.
	rounds := []string{"", "2024-01-15T11:00:00Z"}
	for i, round := range rounds {
		start := created.Add(time.Duration(i) * time.Hour)
		r.Attempt(tr, tr.NewAttempt(), AttemptSpan{DeliveryID: "whd_1", Round: round, Number: 1, Start: start,
			Duration: 10 * time.Millisecond, StatusCode: 200, Outcome: OutcomeDelivered})
		r.Delivery(tr, DeliverySpan{DeliveryID: "whd_1", Round: round, Start: created, End: start.Add(10 * time.Millisecond),
			Phase: "Delivered", Attempts: 1})
	}

	ended := spans.Ended()
	if len(ended) != 4 {
		t.Fatalf("%d spans, want an attempt and a delivery per round", len(ended))
	}
	seen := map[trace.SpanID]bool{}
	for _, span := range ended {
		if id := span.SpanContext().SpanID(); seen[id] {
			t.Fatalf("span id %s used twice", id)
		}
		seen[span.SpanContext().SpanID()] = true
	}
	for i := range rounds {
		attempt, delivery := ended[2*i], ended[2*i+1]
		if attempt.Parent().SpanID() != delivery.SpanContext().SpanID() {
			t.Fatalf("round %d: attempt under %s, want its own round's delivery span %s", i+1,
				attempt.Parent().SpanID(), delivery.SpanContext().SpanID())
		}
	}
	if first := ended[1].SpanContext().SpanID(); first != derivedSpanID("whd_1") {
		t.Fatalf("first round's delivery span %s, want the id it had before redeliveries counted (%s)", first, derivedSpanID("whd_1"))
	}
}
