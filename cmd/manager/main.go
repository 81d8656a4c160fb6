// Command manager runs the webhook-operator controllers.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/controller"
	"github.com/1flow/webhook-operator/internal/delivery"
	"github.com/1flow/webhook-operator/internal/tracing"
)

var (
	scheme   = runtime.NewScheme()
	setupLog = ctrl.Log.WithName("setup")
)

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(webhooksv1alpha1.AddToScheme(scheme))
}

func main() {
	var (
		metricsAddr             string
		probeAddr               string
		secureMetrics           bool
		enableHTTP2             bool
		enableLeaderElection    bool
		leaderElectionNamespace string
		maxConcurrentReconciles int
		maxInFlight             int
		maxInFlightPerNamespace int
		statusFlushInterval     time.Duration
		defaultTTL              time.Duration
		gracefulShutdown        time.Duration
		kubeAPIQPS              float64
		kubeAPIBurst            int
		leaseDuration           time.Duration
		renewDeadline           time.Duration
		retryPeriod             time.Duration
		blockedCIDRs            string
		allowedCIDRs            string
		blockPrivateNetworks    bool
		privateCIDRs            string
		requireHTTPS            bool
		watchNamespaces         string
		watchLabelSelector      string
		leaderElectionID        string
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", "0",
		"The address the metrics endpoint binds to, for example :8443 (HTTPS) or :8080 (HTTP). 0 disables it.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "The address the probe endpoint binds to.")
	flag.BoolVar(&secureMetrics, "metrics-secure", true,
		"Serve metrics over HTTPS with authentication and authorization. Use --metrics-secure=false for HTTP.")
	flag.BoolVar(&enableHTTP2, "enable-http2", false,
		"Serve metrics over HTTP/2 too. Off by default because of the HTTP/2 stream cancellation and rapid reset CVEs.")
	flag.BoolVar(&enableLeaderElection, "leader-elect", false,
		"Elect a leader through a Lease, so that only one of several replicas delivers at a time.")
	flag.DurationVar(&leaseDuration, "leader-election-lease-duration", 15*time.Second,
		"How long a standby replica waits after the last renewal before it takes the lead.")
	flag.DurationVar(&renewDeadline, "leader-election-renew-deadline", 10*time.Second,
		"How long the leader retries renewing its Lease before it gives up leading.")
	flag.DurationVar(&retryPeriod, "leader-election-retry-period", 2*time.Second,
		"How often leader election clients retry acquiring or renewing the Lease.")
	flag.StringVar(&leaderElectionNamespace, "leader-election-namespace", "",
		"Namespace of the leader election Lease; defaults to the namespace the manager runs in.")
	flag.IntVar(&maxConcurrentReconciles, "max-concurrent-reconciles", 16,
		"DocumentEvents reconciled in parallel. Reconciles never wait for HTTP; attempts run in the dispatcher.")
	flag.IntVar(&maxInFlight, "max-in-flight", controller.DefaultMaxInFlight,
		"Delivery attempts in flight at once across all endpoints. Each endpoint also has its own spec.maxInFlight.")
	flag.IntVar(&maxInFlightPerNamespace, "max-in-flight-per-namespace", 0,
		"Delivery attempts in flight at once for the endpoints of one namespace, so that a few tenants whose "+
			"receivers hang cannot take all of --max-in-flight. 0 means a quarter of --max-in-flight.")
	flag.DurationVar(&defaultTTL, "default-ttl-after-finished", 0,
		"Delete Delivered or Failed DocumentEvents this long after they finish, unless spec.ttlSecondsAfterFinished "+
			"is set. 0 (the default) keeps them.")
	flag.DurationVar(&gracefulShutdown, "graceful-shutdown-timeout", 70*time.Second,
		"How long SIGTERM waits for attempts in flight to finish and be recorded. Keep it above the largest "+
			"spec.timeout (at most 60s) and below the Pod's terminationGracePeriodSeconds.")
	flag.Float64Var(&kubeAPIQPS, "kube-api-qps", 200, "Client-side rate limit for requests to the API server, per second.")
	flag.IntVar(&kubeAPIBurst, "kube-api-burst", 400, "Burst above --kube-api-qps for requests to the API server.")
	flag.DurationVar(&statusFlushInterval, "endpoint-status-interval", controller.DefaultStatusFlushInterval,
		"Minimum time between two writes of one WebhookEndpoint's delivery summary (lastDelivery, consecutiveFailures).")
	flag.StringVar(&blockedCIDRs, "blocked-cidrs", strings.Join(delivery.DefaultBlockedCIDRs, ","),
		"Comma-separated CIDRs the operator never connects to, checked against the resolved IP at dial time. "+
			"The default covers loopback, link-local (cloud metadata such as 169.254.169.254), 0.0.0.0/8 and their IPv6 forms.")
	flag.StringVar(&allowedCIDRs, "allowed-cidrs", "",
		"Comma-separated CIDRs that are allowed for every namespace, even when --blocked-cidrs or --private-cidrs covers them.")
	flag.BoolVar(&blockPrivateNetworks, "block-private-networks", true,
		"Refuse the --private-cidrs ranges, except for endpoints in namespaces labelled "+
			webhooksv1alpha1.PrivateEgressLabel+"="+webhooksv1alpha1.PrivateEgressAllowed+
			" (a label tenants cannot set on their own namespace under normal RBAC). false allows them everywhere.")
	flag.StringVar(&privateCIDRs, "private-cidrs", strings.Join(delivery.PrivateCIDRs, ","),
		"Comma-separated CIDRs treated as private: RFC 1918, carrier-grade NAT and IPv6 unique-local by default.")
	flag.BoolVar(&requireHTTPS, "require-https", false,
		"Refuse http:// endpoint URLs (Ready=False, reason InsecureURL).")
	flag.StringVar(&watchNamespaces, "watch-namespaces", "",
		"Comma-separated namespaces to serve; empty serves the whole cluster.")
	flag.StringVar(&watchLabelSelector, "watch-label-selector", "",
		"Serve only the DocumentEvents and WebhookEndpoints whose labels match this selector, to split the "+
			"operator into shards (for example webhooks.1flow.io/shard=a, and !webhooks.1flow.io/shard on the "+
			"main instance). An event only reaches the endpoints of its own shard. Empty serves all.")
	flag.StringVar(&leaderElectionID, "leader-election-id", "webhook-operator.webhooks.1flow.io",
		"Name of the leader election Lease; give each shard its own.")
	opts := zap.Options{Development: false}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))

	if maxConcurrentReconciles < 1 || maxInFlight < 1 || defaultTTL < 0 || maxInFlightPerNamespace < 0 {
		setupLog.Error(nil, "--max-concurrent-reconciles and --max-in-flight must be at least 1, "+
			"--default-ttl-after-finished and --max-in-flight-per-namespace at least 0",
			"max-concurrent-reconciles", maxConcurrentReconciles, "max-in-flight", maxInFlight,
			"max-in-flight-per-namespace", maxInFlightPerNamespace, "default-ttl-after-finished", defaultTTL)
		os.Exit(1)
	}

	egress, err := delivery.NewEgressPolicy(splitList(blockedCIDRs), splitList(allowedCIDRs), splitList(privateCIDRs),
		blockPrivateNetworks)
	if err != nil {
		setupLog.Error(err, "invalid egress flags")
		os.Exit(1)
	}
	egress.PrivateHint = controller.PrivateEgressHint

	var tlsOpts []func(*tls.Config)
	if !enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	metricsOptions := metricsserver.Options{
		BindAddress:   metricsAddr,
		SecureServing: secureMetrics,
		TLSOpts:       tlsOpts,
	}
	if secureMetrics {
		metricsOptions.FilterProvider = filters.WithAuthenticationAndAuthorization
	}

	scope := controller.WatchScope{Namespaces: splitList(watchNamespaces)}
	if watchLabelSelector != "" {
		if scope.Labels, err = labels.Parse(watchLabelSelector); err != nil {
			setupLog.Error(err, "invalid --watch-label-selector", "value", watchLabelSelector)
			os.Exit(1)
		}
	}

	restConfig := ctrl.GetConfigOrDie()
	restConfig.QPS, restConfig.Burst = float32(kubeAPIQPS), kubeAPIBurst
	// The API server is usually a hop away in the same cluster: compressing every watch event and
	// response costs both sides CPU for little gain.
	restConfig.DisableCompression = true
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                        scheme,
		Cache:                         scope.CacheOptions(),
		Metrics:                       metricsOptions,
		HealthProbeBindAddress:        probeAddr,
		LeaderElection:                enableLeaderElection,
		LeaderElectionID:              leaderElectionID,
		LeaderElectionNamespace:       leaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &leaseDuration,
		RenewDeadline:                 &renewDeadline,
		RetryPeriod:                   &retryPeriod,
		GracefulShutdownTimeout:       &gracefulShutdown,
	})
	if err != nil {
		setupLog.Error(err, "unable to create manager")
		os.Exit(1)
	}

	traces, flushTraces, err := tracing.FromEnvironment(context.Background())
	if err != nil {
		setupLog.Error(err, "invalid OpenTelemetry settings (OTEL_* variables)")
		os.Exit(1)
	}
	shared, err := controller.NewShared(mgr, controller.Options{
		Sender:                  delivery.NewSender(delivery.WithEgressPolicy(egress)),
		MaxInFlight:             maxInFlight,
		MaxInFlightPerNamespace: maxInFlightPerNamespace,
		StatusFlushInterval:     statusFlushInterval,
		RequireHTTPS:            requireHTTPS,
		Egress:                  egress,
		Scope:                   scope,
		Traces:                  traces,
	})
	if err != nil {
		setupLog.Error(err, "unable to set up the delivery engine")
		os.Exit(1)
	}
	if err := (&controller.WebhookEndpointReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr, shared); err != nil {
		setupLog.Error(err, "unable to create controller", "controller", "WebhookEndpoint")
		os.Exit(1)
	}
	if err := (&controller.DocumentEventReconciler{
		Client:                  mgr.GetClient(),
		DefaultTTLAfterFinished: defaultTTL,
	}).SetupWithManager(mgr, shared, maxConcurrentReconciles); err != nil {
		setupLog.Error(err, "unable to create controller", "controller", "DocumentEvent")
		os.Exit(1)
	}

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		setupLog.Error(err, "unable to set up health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		setupLog.Error(err, "unable to set up ready check")
		os.Exit(1)
	}

	setupLog.Info("starting manager", "tracing", traces.Enabled())
	err = mgr.Start(ctrl.SetupSignalHandler())
	// The spans of the last deliveries are still in the batch; send them before exiting.
	flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if flushErr := flushTraces(flushCtx); flushErr != nil {
		setupLog.Error(flushErr, "export the last trace spans")
	}
	cancel()
	if err != nil {
		setupLog.Error(err, "problem running manager")
		os.Exit(1)
	}
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(value string) []string {
	var out []string
	for _, item := range strings.Split(value, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
