package e2e

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/localcluster"
)

// The manager binary exports its spans over OTLP when the standard variables say where, under the trace
// of the pipeline that created the event.
func TestManagerBinaryExportsTracesOverOTLP(t *testing.T) {
	g := NewWithT(t)
	collector := localcluster.StartOTLPCollector()
	t.Cleanup(collector.Close)
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

	g.Eventually(collector.Spans, 30*time.Second).Should(ContainElements(
		localcluster.CollectedSpan{Name: "webhook attempt", TraceID: pipelineTrace, Service: "webhook-operator"},
		localcluster.CollectedSpan{Name: "webhook delivery", TraceID: pipelineTrace, Service: "webhook-operator"},
	))
}
