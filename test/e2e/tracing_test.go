package e2e

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// otlpCollector is an OTLP/HTTP trace receiver: it keeps the spans it is sent, by name, with their trace
// id and the service that sent them.
type otlpCollector struct {
	*httptest.Server
	mu    sync.Mutex
	spans []collectedSpan
}

type collectedSpan struct {
	name, traceID, service string
}

func newOTLPCollector(t *testing.T) *otlpCollector {
	c := &otlpCollector{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
					c.spans = append(c.spans, collectedSpan{span.GetName(), hex.EncodeToString(span.GetTraceId()), service})
				}
			}
		}
		c.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *otlpCollector) collected() []collectedSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]collectedSpan(nil), c.spans...)
}

// The manager binary exports its spans over OTLP when the standard variables say where, under the trace
// of the pipeline that created the event.
func TestManagerBinaryExportsTracesOverOTLP(t *testing.T) {
	g := NewWithT(t)
	collector := newOTLPCollector(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	const ns, secret = "e2e-tracing", "e2e-tracing-secret"
	recv := newCountingReceiver(t, secret, 0)
	setupTenant(t, ns, secret, recv.URL)
	startManager(t, "tracing", fastLeaderElection...)

	const pipelineTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	ev := &webhooksv1alpha1.DocumentEvent{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "traced", Annotations: map[string]string{
			webhooksv1alpha1.TraceParentAnnotation: "00-" + pipelineTrace + "-00f067aa0ba902b7-01",
		}},
		Spec: webhooksv1alpha1.DocumentEventSpec{DocumentID: "doc_traced"},
	}
	g.Expect(cluster.Client.Create(context.Background(), ev)).To(Succeed())
	waitAllDelivered(t, ns, time.Minute)

	g.Eventually(collector.collected, 30*time.Second).Should(ContainElements(
		collectedSpan{"webhook attempt", pipelineTrace, "webhook-operator"},
		collectedSpan{"webhook delivery", pipelineTrace, "webhook-operator"},
	))
}
