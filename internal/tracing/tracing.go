// Package tracing gives each delivery of a DocumentEvent an OpenTelemetry trace: one span per delivery,
// from the event's creation until it was delivered or failed, and under it one span per attempt, whose
// W3C Trace Context goes to the receiver in the traceparent header. A pipeline that sets the
// webhooks.1flow.io/traceparent annotation gets the delivery spans under its own span, so one trace
// shows the document from the pipeline to the receiver.
//
// Spans are recorded after the status write that records what they describe, with the times the attempt
// really had: a reconcile that is retried records nothing twice, and a delivery span can cover retries
// made across restarts. That needs span ids known in advance, so they are derived: the delivery span's
// from the delivery id and the redelivery round (a redelivery keeps the delivery id), the attempt span's
// chosen when the attempt starts (it is in the header), and an event without a parent gets a trace id
// derived from its UID. IDGenerator hands these ids to the SDK.
//
// Nothing here imports Kubernetes; the controller passes plain values.
package tracing

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Trace is the trace an event's deliveries belong to.
type Trace struct {
	// parent is the pipeline's span from the annotations; invalid when there is none.
	parent trace.SpanContext
	// id is the trace id: the parent's, or one derived from the event's UID.
	id trace.TraceID
}

// ErrInvalidTraceContext reports annotations that are not W3C Trace Context.
var ErrInvalidTraceContext = errors.New("not a valid W3C traceparent (version-traceid-parentid-flags, for example " +
	"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01)")

// EventTrace returns the trace of an event's deliveries: under the pipeline's span when traceparent (and
// optionally tracestate) hold a valid W3C Trace Context, else a trace of the event's own. An invalid value
// returns the event's own trace and ErrInvalidTraceContext; the delivery goes on.
func EventTrace(eventUID, traceparent, tracestate string) (Trace, error) {
	own := Trace{id: derivedTraceID(eventUID)}
	if traceparent == "" {
		return own, nil
	}
	carrier := propagation.MapCarrier{"traceparent": traceparent}
	if tracestate != "" {
		carrier["tracestate"] = tracestate
	}
	parent := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier))
	if !parent.IsValid() {
		return own, ErrInvalidTraceContext
	}
	return Trace{parent: parent, id: parent.TraceID()}, nil
}

// deliverySpan is the span context of one round of the delivery: the parent of its attempts.
func (t Trace) deliverySpan(deliveryID, round string) trace.SpanContext {
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    t.id,
		SpanID:     deliverySpanID(deliveryID, round),
		TraceFlags: t.flags(),
		TraceState: t.parent.TraceState(),
		Remote:     true,
	})
}

func (t Trace) flags() trace.TraceFlags {
	if t.parent.IsValid() {
		return t.parent.TraceFlags()
	}
	return trace.FlagsSampled
}

// Attempt is the trace context of one attempt, chosen when it starts.
type Attempt struct {
	SpanID trace.SpanID
	// TraceParent and TraceState are the header values the receiver gets.
	TraceParent, TraceState string
}

// NewAttempt chooses the span of a new attempt and the headers that carry it.
func (t Trace) NewAttempt() Attempt {
	var id trace.SpanID
	_, _ = rand.Read(id[:])
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: t.id, SpanID: id, TraceFlags: t.flags(), TraceState: t.parent.TraceState(),
	})
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), sc), carrier)
	return Attempt{SpanID: id, TraceParent: carrier["traceparent"], TraceState: carrier["tracestate"]}
}

func derivedTraceID(seed string) trace.TraceID {
	sum := sha256.Sum256([]byte("trace/" + seed))
	var id trace.TraceID
	copy(id[:], sum[:])
	return id
}

// deliverySpanID derives the span id of one round of a delivery. The first round keeps the id derived
// from the delivery id alone, as before redeliveries had spans of their own.
func deliverySpanID(deliveryID, round string) trace.SpanID {
	if round == "" {
		return derivedSpanID(deliveryID)
	}
	// Delivery ids hold no NUL, so the first one ends the id and no other pair gives the same seed.
	return derivedSpanID(deliveryID + "\x00" + round)
}

func derivedSpanID(seed string) trace.SpanID {
	sum := sha256.Sum256([]byte("span/" + seed))
	var id trace.SpanID
	copy(id[:], sum[:])
	return id
}

// Recorder records delivery and attempt spans; a Recorder built on a no-op provider does nothing.
type Recorder struct {
	tracer  trace.Tracer
	enabled bool
}

// NewRecorder records through the provider; nil or a no-op provider records nothing.
func NewRecorder(tp trace.TracerProvider) *Recorder {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	_, isNoop := tp.(noop.TracerProvider)
	return &Recorder{tracer: tp.Tracer("github.com/1flow/webhook-operator"), enabled: !isNoop}
}

// Enabled reports whether spans are recorded, so that callers can skip gathering their attributes.
func (r *Recorder) Enabled() bool { return r != nil && r.enabled }

// AttemptSpan describes one attempt. It never holds a secret, a signature or payload values.
type AttemptSpan struct {
	Namespace, Endpoint, DeliveryID string
	// Round is the redelivery request of the delivery round that counts the attempt (see DeliverySpan).
	Round      string
	Number     int32
	Start      time.Time
	Duration   time.Duration
	StatusCode int
	// Outcome is delivered, retrying, failed or blocked.
	Outcome string
	// ErrorClass sorts a failure (http_status, timeout, connection, blocked, ...); empty for a success.
	ErrorClass string
	// RetryIn is the wait chosen before the next attempt; 0 when none follows.
	RetryIn time.Duration
	// Circuit is "opened" or "closed" when this attempt changed the endpoint's circuit.
	Circuit string
}

// Attempt records the span of an attempt under its delivery's span.
func (r *Recorder) Attempt(t Trace, attempt Attempt, a AttemptSpan) {
	if !r.Enabled() {
		return
	}
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), t.deliverySpan(a.DeliveryID, a.Round))
	ctx = withIDs(ctx, t.id, attempt.SpanID)
	attrs := []attribute.KeyValue{
		attribute.String("k8s.namespace.name", a.Namespace),
		attribute.String("webhook.endpoint", a.Endpoint),
		attribute.String("webhook.delivery_id", a.DeliveryID),
		attribute.Int("webhook.attempt", int(a.Number)),
		attribute.String("webhook.outcome", a.Outcome),
	}
	if a.StatusCode != 0 {
		attrs = append(attrs, attribute.Int("http.response.status_code", a.StatusCode))
	}
	if a.ErrorClass != "" {
		attrs = append(attrs, attribute.String("error.type", a.ErrorClass))
	}
	if a.RetryIn > 0 {
		attrs = append(attrs, attribute.Float64("webhook.retry_in_seconds", a.RetryIn.Seconds()))
	}
	_, span := r.tracer.Start(ctx, "webhook attempt", trace.WithTimestamp(a.Start),
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	if a.Circuit != "" {
		span.AddEvent("circuit "+a.Circuit, trace.WithTimestamp(a.Start.Add(a.Duration)))
	}
	if a.Outcome != OutcomeDelivered {
		span.SetStatus(codes.Error, a.ErrorClass)
	}
	span.End(trace.WithTimestamp(a.Start.Add(a.Duration)))
}

// Outcomes of an attempt span.
const (
	OutcomeDelivered = "delivered"
	OutcomeRetrying  = "retrying"
	OutcomeFailed    = "failed"
	OutcomeBlocked   = "blocked"
)

// DeliverySpan describes a delivery that ended.
type DeliverySpan struct {
	Namespace, Endpoint, DeliveryID string
	// Round is the redelivery request this round of the delivery acts on (the event's
	// status.lastRedeliveryRequest), empty for the first: a redelivery keeps the delivery id, and each
	// round is a span of its own.
	Round string
	// Start is when the event was created; End when the delivery was delivered or failed.
	Start, End time.Time
	// Phase is Delivered or Failed; Reason explains a failure.
	Phase, Reason string
	Attempts      int32
}

// Delivery records the span of a delivery that ended, under the pipeline's span when there is one.
func (r *Recorder) Delivery(t Trace, d DeliverySpan) {
	if !r.Enabled() {
		return
	}
	ctx := context.Background()
	if t.parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, t.parent)
	}
	ctx = withIDs(ctx, t.id, deliverySpanID(d.DeliveryID, d.Round))
	_, span := r.tracer.Start(ctx, "webhook delivery", trace.WithTimestamp(d.Start), trace.WithAttributes(
		attribute.String("k8s.namespace.name", d.Namespace),
		attribute.String("webhook.endpoint", d.Endpoint),
		attribute.String("webhook.delivery_id", d.DeliveryID),
		attribute.Int("webhook.attempts", int(d.Attempts)),
		attribute.String("webhook.phase", d.Phase),
	))
	if d.Reason != "" {
		span.SetStatus(codes.Error, d.Reason)
	}
	span.End(trace.WithTimestamp(d.End))
}

type idsKey struct{}

type forcedIDs struct {
	trace trace.TraceID
	span  trace.SpanID
}

func withIDs(ctx context.Context, traceID trace.TraceID, spanID trace.SpanID) context.Context {
	return context.WithValue(ctx, idsKey{}, forcedIDs{traceID, spanID})
}

// IDGenerator gives the SDK the ids that were chosen in advance (see the package comment), and random
// ones otherwise.
type IDGenerator struct{}

var _ sdktrace.IDGenerator = IDGenerator{}

// NewIDs returns the ids of a root span.
func (IDGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if ids, ok := ctx.Value(idsKey{}).(forcedIDs); ok {
		return ids.trace, ids.span
	}
	var traceID trace.TraceID
	var spanID trace.SpanID
	_, _ = rand.Read(traceID[:])
	_, _ = rand.Read(spanID[:])
	return traceID, spanID
}

// NewSpanID returns the id of a span under a parent.
func (IDGenerator) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if ids, ok := ctx.Value(idsKey{}).(forcedIDs); ok {
		return ids.span
	}
	var spanID trace.SpanID
	_, _ = rand.Read(spanID[:])
	return spanID
}

// NewTracerProvider is an SDK provider with the IDGenerator the recorder needs.
func NewTracerProvider(opts ...sdktrace.TracerProviderOption) *sdktrace.TracerProvider {
	return sdktrace.NewTracerProvider(append([]sdktrace.TracerProviderOption{sdktrace.WithIDGenerator(IDGenerator{})}, opts...)...)
}
