package controller

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/internal/localcluster"
	"github.com/1flow/webhook-operator/internal/tracing"
)

var (
	ctx       context.Context
	cancel    context.CancelFunc
	testEnv   *envtest.Environment
	cfg       *rest.Config
	k8sClient client.Client
	// managerCache is the running manager's cache, to check what it holds.
	managerCache cache.Cache
	// spans holds the spans the manager recorded.
	spans = tracetest.NewSpanRecorder()
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	// Gomega's 1 s default is a race with the machine, not a property of the operator: CI runs this
	// suite on two cores shared with the API server, etcd and at times the e2e package's 300-event burst.
	// A spec whose point is a bound (a delivery that must not wait for a hanging endpoint, nothing sent
	// while a circuit is open) passes its own timeout or Consistently duration.
	SetDefaultEventuallyTimeout(30 * time.Second)
	// Each poll is an API or cache read; polling every 10 ms would add load to the machine it waits on.
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	RunSpecs(t, "Controller Suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	ctx, cancel = context.WithCancel(context.TODO())

	Expect(webhooksv1alpha1.AddToScheme(scheme.Scheme)).To(Succeed())

	// AssetsDir finds the binaries that hack/setup-envtest.sh builds, so the tests also run from an IDE
	// without KUBEBUILDER_ASSETS.
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: localcluster.AssetsDir(),
	}

	var err error
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	Expect(cfg).NotTo(BeNil())

	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme.Scheme})
	Expect(err).NotTo(HaveOccurred())

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme.Scheme,
		Cache:                  WatchScope{}.CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	Expect(err).NotTo(HaveOccurred())
	managerCache = mgr.GetCache()
	// Only loopback is ours on these machines: 127.0.0.3 stands for a private address.
	egress, err := delivery.NewEgressPolicy([]string{}, nil, []string{privateTestAddress + "/32"}, true)
	Expect(err).NotTo(HaveOccurred())
	egress.PrivateHint = PrivateEgressHint
	shared, err := NewShared(mgr, Options{
		Sender:              delivery.NewSender(delivery.WithEgressPolicy(egress)),
		Egress:              egress,
		MaxInFlight:         64,
		StatusFlushInterval: 200 * time.Millisecond,
		Traces:              tracing.NewRecorder(tracing.NewTracerProvider(sdktrace.WithSpanProcessor(spans))),
	})
	Expect(err).NotTo(HaveOccurred())
	Expect((&WebhookEndpointReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr, shared)).To(Succeed())
	Expect((&DocumentEventReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr, shared, 8)).To(Succeed())

	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
})

var _ = AfterSuite(func() {
	cancel()
	Expect(testEnv.Stop()).To(Succeed())
})
