package tracing

import (
	"context"
	"fmt"
	"os"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
)

// FromEnvironment returns the recorder the standard OTEL_* variables ask for, and a shutdown that
// flushes what is left. Spans are exported over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (http/protobuf, or gRPC with OTEL_EXPORTER_OTLP_PROTOCOL=grpc),
// unless OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true. Otherwise nothing is recorded, and
// nothing is spent on it. The exporters read the other OTEL_EXPORTER_OTLP_* variables (headers,
// certificates, timeout) and the SDK OTEL_TRACES_SAMPLER, OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
func FromEnvironment(ctx context.Context) (*Recorder, func(context.Context) error, error) {
	noShutdown := func(context.Context) error { return nil }
	if !exportRequested() {
		return NewRecorder(nil), noShutdown, nil
	}
	var exporter sdktrace.SpanExporter
	var err error
	switch protocol() {
	case "grpc":
		exporter, err = otlptracegrpc.New(ctx)
	case "http/protobuf":
		exporter, err = otlptracehttp.New(ctx)
	default:
		return nil, noShutdown, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: use http/protobuf or grpc", protocol())
	}
	if err != nil {
		return nil, noShutdown, fmt.Errorf("create the OTLP trace exporter: %w", err)
	}
	// Later options win: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override the default name.
	res, err := resource.New(ctx, resource.WithAttributes(semconv.ServiceName("webhook-operator")),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, noShutdown, fmt.Errorf("describe the trace resource: %w", err)
	}
	tp := NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	return NewRecorder(tp), tp.Shutdown, nil
}

func exportRequested() bool {
	if os.Getenv("OTEL_SDK_DISABLED") == "true" || os.Getenv("OTEL_TRACES_EXPORTER") == "none" {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

func protocol() string {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if value := os.Getenv(name); value != "" {
			return value
		}
	}
	return "http/protobuf"
}
