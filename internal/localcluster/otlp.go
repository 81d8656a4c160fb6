package localcluster

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// OTLPCollector is an OTLP/HTTP trace receiver for the tests and the benchmark: point a manager's
// OTEL_EXPORTER_OTLP_ENDPOINT at its URL and it keeps what the manager exports.
type OTLPCollector struct {
	*httptest.Server
	mu    sync.Mutex
	spans []CollectedSpan
}

// CollectedSpan is what the collector keeps of a span.
type CollectedSpan struct {
	Name, TraceID, Service string
}

// StartOTLPCollector listens on a loopback port; Close stops it.
func StartOTLPCollector() *OTLPCollector {
	c := &OTLPCollector{}
	c.Server = httptest.NewServer(http.HandlerFunc(c.export))
	return c
}

func (c *OTLPCollector) export(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req := &coltracepb.ExportTraceServiceRequest{}
	if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, req) != nil {
		http.Error(w, "not an OTLP trace export", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, span := range ss.GetSpans() {
				c.spans = append(c.spans, CollectedSpan{span.GetName(), hex.EncodeToString(span.GetTraceId()), service})
			}
		}
	}
	c.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// Spans returns the spans received so far.
func (c *OTLPCollector) Spans() []CollectedSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]CollectedSpan(nil), c.spans...)
}
