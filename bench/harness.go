package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
	"github.com/1flow/webhook-operator/internal/localcluster"
)

const (
	signingSecret = "bench-signing-secret"
	// signingSecretName is the Secret, in every benchmark namespace, that holds signingSecret.
	signingSecretName = "signing"
)

// harness owns the control plane, the manager binary and every manager process it started.
type harness struct {
	sizes      sizes
	root, work string
	cluster    *localcluster.Cluster
	binary     string
	kubeconfig string
	// c is the benchmark's own client: the same one creates events, measures the ceiling and watches.
	// client-go's default rate limit (5 QPS) would measure the limiter, so it is lifted.
	c client.WithWatch

	// controlPlane holds the pids of kube-apiserver and etcd, to measure their CPU time.
	controlPlane map[string]int

	mu       sync.Mutex
	managers map[*manager]struct{}
}

func newHarness(ctx context.Context, sz sizes) (*harness, error) {
	root, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(root, "config", "crd", "bases")); err != nil {
		return nil, fmt.Errorf("run the benchmark from the repository root (make bench): %w", err)
	}
	work, err := os.MkdirTemp("", "webhook-operator-bench-")
	if err != nil {
		return nil, err
	}
	h := &harness{sizes: sz, root: root, work: work, managers: map[*manager]struct{}{}}

	step("Starting the control plane (kube-apiserver and etcd from %s)", localcluster.AssetsDir())
	if h.cluster, err = localcluster.Start(root); err != nil {
		_ = os.RemoveAll(work)
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = h.cluster.Stop()
			_ = os.RemoveAll(work)
		}
	}()
	step("Building the manager (go build ./cmd/manager)")
	if h.binary, err = localcluster.BuildManager(ctx, root, work); err != nil {
		return nil, err
	}
	if h.kubeconfig, err = h.cluster.ManagerKubeconfig(ctx, work); err != nil {
		return nil, err
	}
	h.controlPlane = controlPlanePIDs()
	cfg := rest.CopyConfig(h.cluster.Config)
	cfg.QPS, cfg.Burst = 5000, 10000
	if h.c, err = client.NewWithWatch(cfg, client.Options{Scheme: localcluster.Scheme}); err != nil {
		return nil, err
	}
	ok = true
	return h, nil
}

// close kills the managers still running, stops the control plane, and removes the work folder unless
// keep is set (then it prints where the manager logs are).
func (h *harness) close(keep bool) {
	h.mu.Lock()
	running := make([]*manager, 0, len(h.managers))
	for m := range h.managers {
		running = append(running, m)
	}
	h.mu.Unlock()
	for _, m := range running {
		_ = m.Kill()
		h.forget(m)
	}
	if err := h.cluster.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: stop control plane:", err)
	}
	if keep {
		step("Manager logs kept in %s", h.work)
		return
	}
	_ = os.RemoveAll(h.work)
}

// manager is one manager process with its plain-HTTP metrics endpoint.
type manager struct {
	*localcluster.Manager
	name    string
	metrics string
	logPath string
	logFile *os.File
}

// startManager runs a fresh manager process and waits until its probes answer. extra flags come before
// --manager-flag's, so that those still win.
func (h *harness) startManager(ctx context.Context, name string, extra ...string) (*manager, error) {
	metrics, err := localcluster.FreeAddress()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(h.work, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := append(append([]string{"--metrics-bind-address=" + metrics, "--metrics-secure=false"}, extra...), managerArgs...)
	lm, err := localcluster.StartManager(ctx, h.binary, h.kubeconfig, logFile, args...)
	if err != nil {
		_ = logFile.Close()
		return nil, withLog(fmt.Errorf("start manager %s: %w", name, err), logPath)
	}
	m := &manager{Manager: lm, name: name, metrics: metrics, logPath: logPath, logFile: logFile}
	h.mu.Lock()
	h.managers[m] = struct{}{}
	h.mu.Unlock()
	return m, nil
}

// stopManager sends SIGTERM and waits; a manager that does not exit in time is killed and reported, but
// that does not fail the scenario.
func (h *harness) stopManager(m *manager) {
	if err := m.Stop(40 * time.Second); err != nil {
		info("warning: manager %s did not stop cleanly: %v (log: %s)", m.name, err, m.logPath)
	}
	h.forget(m)
}

// killManager ends a manager at once; scenarios defer it so that no process outlives an error.
func (h *harness) killManager(m *manager) {
	h.mu.Lock()
	_, running := h.managers[m]
	h.mu.Unlock()
	if running {
		_ = m.Kill()
		h.forget(m)
	}
}

func (h *harness) forget(m *manager) {
	h.mu.Lock()
	delete(h.managers, m)
	h.mu.Unlock()
	_ = m.logFile.Close()
}

// writeCounts scrapes controller-runtime's rest_client_requests_total and returns the requests by method.
func (m *manager) writeCounts(ctx context.Context) (map[string]float64, error) {
	metrics, err := m.scrape(ctx)
	return metrics.requestsByMethod, err
}

// managerMetrics is what the benchmark reads from one scrape of a manager's metrics.
type managerMetrics struct {
	// requestsByMethod is rest_client_requests_total summed by method.
	requestsByMethod map[string]float64
	// gauges are the unlabelled Go runtime gauges (go_memstats_*, go_goroutines).
	gauges map[string]float64
	// cachedObjects is webhook_operator_cached_objects by kind; empty for a manager without that metric.
	cachedObjects map[string]float64
}

const cachedObjectsMetric = "webhook_operator_cached_objects"

// scrape reads the manager's metrics.
func (m *manager) scrape(ctx context.Context) (managerMetrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.metrics+"/metrics", nil)
	if err != nil {
		return managerMetrics{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return managerMetrics{}, fmt.Errorf("scrape manager metrics: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return managerMetrics{}, fmt.Errorf("scrape manager metrics: HTTP %d", resp.StatusCode)
	}
	out := managerMetrics{requestsByMethod: map[string]float64{}, gauges: map[string]float64{}, cachedObjects: map[string]float64{}}
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "rest_client_requests_total{"), strings.HasPrefix(line, cachedObjectsMetric+"{"):
			end := strings.LastIndex(line, "}")
			if end < 0 {
				continue
			}
			value, err := strconv.ParseFloat(strings.TrimSpace(line[end+1:]), 64)
			if err != nil {
				return managerMetrics{}, fmt.Errorf("parse metric line %q: %w", line, err)
			}
			if strings.HasPrefix(line, cachedObjectsMetric) {
				out.cachedObjects[labelValue(line[:end], "kind")] = value
				continue
			}
			found = true
			out.requestsByMethod[strings.ToUpper(labelValue(line[:end], "method"))] += value
		case strings.HasPrefix(line, "go_memstats_") || strings.HasPrefix(line, "go_goroutines "):
			name, value, ok := strings.Cut(line, " ")
			if !ok || strings.Contains(name, "{") {
				continue
			}
			if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
				out.gauges[name] = v
			}
		}
	}
	if err := sc.Err(); err != nil {
		return managerMetrics{}, err
	}
	if !found {
		return managerMetrics{}, errors.New("the manager's metrics have no rest_client_requests_total")
	}
	return out, nil
}

func labelValue(labels, name string) string {
	key := name + `="`
	i := strings.Index(labels, key)
	if i < 0 {
		return ""
	}
	tail := labels[i+len(key):]
	if j := strings.Index(tail, `"`); j >= 0 {
		return tail[:j]
	}
	return ""
}

var writeMethods = []string{"POST", "PUT", "PATCH", "DELETE"}

// writeDelta is the difference of two scrapes, restricted to write methods.
func writeDelta(before, after map[string]float64) (total float64, byMethod map[string]float64) {
	byMethod = map[string]float64{}
	for _, method := range writeMethods {
		d := after[method] - before[method]
		byMethod[method] = d
		total += d
	}
	return total, byMethod
}

// rss reads the manager's current and peak resident set size, in bytes, from /proc.
func (m *manager) rss() (current, peak int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.PID()))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		kb, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "VmRSS:":
			current = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	if current == 0 || peak == 0 {
		return 0, 0, fmt.Errorf("no VmRSS/VmHWM in /proc/%d/status", m.PID())
	}
	return current, peak, nil
}

// cpuSeconds returns the user plus system CPU time the manager process has used so far.
func (m *manager) cpuSeconds() (float64, error) { return processCPU(m.PID()) }

// quietCPU is the share of one CPU under which a manager counts as done with its start-up work.
const quietCPU = 0.05

// waitQuiet waits until the manager used less than quietCPU over a whole second, so that a reading taken
// next comes after its start-up work (listing the cluster, catching up), and returns how long it waited.
// Running out of limit is not an error: the reading is then taken anyway.
func (m *manager) waitQuiet(ctx context.Context, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	before, err := m.cpuSeconds()
	if err != nil {
		return 0, err
	}
	for time.Since(start) < limit {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Second):
		}
		now, err := m.cpuSeconds()
		if err != nil {
			return 0, err
		}
		if now-before < quietCPU {
			break
		}
		before = now
	}
	return time.Since(start), nil
}

// processCPU returns the user plus system CPU time a process has used so far.
func processCPU(pid int) (float64, error) {
	_, _, utime, stime, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	// USER_HZ is 100 on every Linux architecture Go supports.
	return (utime + stime) / 100, nil
}

// procStat reads a process's name, parent and CPU ticks from /proc/<pid>/stat.
func procStat(pid int) (name string, ppid int, utime, stime float64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, 0, 0, err
	}
	text := string(data)
	open, closing := strings.IndexByte(text, '('), strings.LastIndexByte(text, ')')
	if open < 0 || closing < open {
		return "", 0, 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	// The command name in parentheses may hold spaces; the fields after it are fixed.
	fields := strings.Fields(text[closing+1:])
	if len(fields) < 13 {
		return "", 0, 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ppid, err1 := strconv.Atoi(fields[1])
	utime, err2 := strconv.ParseFloat(fields[11], 64)
	stime, err3 := strconv.ParseFloat(fields[12], 64)
	return text[open+1 : closing], ppid, utime, stime, errors.Join(err1, err2, err3)
}

// controlPlanePIDs finds the kube-apiserver and etcd that envtest started as children of this process.
func controlPlanePIDs() map[string]int {
	pids := map[string]int{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return pids
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		name, ppid, _, _, err := procStat(pid)
		if err != nil || ppid != self {
			continue
		}
		if name == "kube-apiserver" || name == "etcd" {
			pids[name] = pid
		}
	}
	return pids
}

// cpuMeter measures the CPU time the processes of a run use: the API server, etcd, the benchmark
// process itself (clients, watch and receivers) and, when given, the manager. They share the machine's
// CPUs, so this shows where a run's time goes.
type cpuMeter struct {
	pids  map[string]int
	start map[string]float64
	t0    time.Time
}

func (h *harness) meterCPU(m *manager) *cpuMeter {
	c := &cpuMeter{pids: map[string]int{"benchmark": os.Getpid()}, start: map[string]float64{}, t0: time.Now()}
	for name, pid := range h.controlPlane {
		c.pids[name] = pid
	}
	if m != nil {
		c.pids["manager"] = m.PID()
	}
	for name, pid := range c.pids {
		if v, err := processCPU(pid); err == nil {
			c.start[name] = v
		}
	}
	return c
}

// read returns the CPU seconds each process used since the meter started, the wall time, and how many
// CPUs' worth that was in total.
func (c *cpuMeter) read() map[string]any {
	out := map[string]any{}
	total := 0.0
	for name, pid := range c.pids {
		v, err := processCPU(pid)
		start, ok := c.start[name]
		if err != nil || !ok {
			continue
		}
		out[name] = round(v-start, 2)
		total += v - start
	}
	wall := time.Since(c.t0).Seconds()
	out["wall_seconds"] = round(wall, 2)
	out["cpus_busy"] = round(total/wall, 2)
	return out
}

// usage is what a manager consumed over a measured window: API writes and CPU time.
type usage struct {
	writes     float64
	cpuSeconds float64
}

// usageSince returns a function that, called at the end of the window, reports the manager's usage.
func (m *manager) usageSince(ctx context.Context) (func() (usage, error), error) {
	writes0, err := m.writeCounts(ctx)
	if err != nil {
		return nil, err
	}
	cpu0, err := m.cpuSeconds()
	if err != nil {
		return nil, err
	}
	return func() (usage, error) {
		writes1, err := m.writeCounts(ctx)
		if err != nil {
			return usage{}, err
		}
		cpu1, err := m.cpuSeconds()
		if err != nil {
			return usage{}, err
		}
		total, _ := writeDelta(writes0, writes1)
		return usage{writes: total, cpuSeconds: cpu1 - cpu0}, nil
	}, nil
}

// setupNamespace creates a namespace with the signing Secret every endpoint uses.
func (h *harness) setupNamespace(ctx context.Context, ns string) error {
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: signingSecretName},
			StringData: map[string]string{"signingSecret": signingSecret},
		},
	} {
		if err := h.c.Create(ctx, obj); err != nil {
			return fmt.Errorf("create %T %s: %w", obj, obj.GetName(), err)
		}
	}
	return nil
}

// signedEndpoint is an endpoint that signs with the namespace's signing Secret, with the default
// maxInFlight.
func signedEndpoint(ns, name, url string, timeout time.Duration) *webhooksv1alpha1.WebhookEndpoint {
	return &webhooksv1alpha1.WebhookEndpoint{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: webhooksv1alpha1.WebhookEndpointSpec{
			URL:       url,
			SecretRef: &webhooksv1alpha1.SecretKeyReference{Name: signingSecretName},
			Timeout:   &metav1.Duration{Duration: timeout},
		},
	}
}

func (h *harness) createEndpoint(ctx context.Context, ep *webhooksv1alpha1.WebhookEndpoint) error {
	if err := retry(ctx, func() error { return h.c.Create(ctx, ep) }); err != nil {
		return fmt.Errorf("create WebhookEndpoint %s/%s: %w", ep.Namespace, ep.Name, err)
	}
	return nil
}

// waitEndpointsReady waits until the manager marked every endpoint of the namespace Ready, which also
// tells that its caches are synced and its controllers run.
func (h *harness) waitEndpointsReady(ctx context.Context, ns string, want int) (int32, error) {
	var maxInFlight int32
	var notReady []string
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		list := &webhooksv1alpha1.WebhookEndpointList{}
		if err := h.c.List(ctx, list, client.InNamespace(ns)); err != nil {
			return false, nil
		}
		ready := 0
		notReady = notReady[:0]
		for i := range list.Items {
			ep := &list.Items[i]
			c := apimeta.FindStatusCondition(ep.Status.Conditions, webhooksv1alpha1.ReadyCondition)
			switch {
			case c != nil && c.Status == metav1.ConditionTrue:
				ready++
			case c != nil:
				notReady = append(notReady, fmt.Sprintf("%s: %s: %s", ep.Name, c.Reason, c.Message))
			default:
				notReady = append(notReady, ep.Name+": no Ready condition yet")
			}
			maxInFlight = max(maxInFlight, ep.Spec.MaxInFlight)
		}
		return ready == want && len(list.Items) == want, nil
	})
	if err != nil {
		return 0, fmt.Errorf("endpoints in %s not Ready within a minute (%s): %w", ns, strings.Join(notReady, "; "), err)
	}
	return maxInFlight, nil
}

// createEvents creates n events with workers concurrent clients. after, when set, runs right after each
// Create succeeds.
func (h *harness) createEvents(ctx context.Context, n, workers int, mk func(i int) *webhooksv1alpha1.DocumentEvent,
	after func(ctx context.Context, i int, ev *webhooksv1alpha1.DocumentEvent) error) error {
	return forEach(ctx, n, workers, func(ctx context.Context, i int) error {
		ev := mk(i)
		if err := retry(ctx, func() error { return h.c.Create(ctx, ev) }); err != nil {
			return fmt.Errorf("create DocumentEvent %s: %w", ev.Name, err)
		}
		if after != nil {
			return after(ctx, i, ev)
		}
		return nil
	})
}

// forEach calls do for 0..n-1 from workers goroutines and stops at the first error.
func forEach(ctx context.Context, n, workers int, do func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := do(ctx, i); err != nil {
					cancel(err)
				}
			}
		})
	}
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// retry repeats an API call that failed for a transient reason (throttling, a timeout, a server error).
func retry(ctx context.Context, call func() error) error {
	var err error
	for attempt := range 6 {
		err = call()
		if err == nil || apierrors.IsAlreadyExists(err) && attempt > 0 {
			return nil
		}
		if !apierrors.IsTooManyRequests(err) && !apierrors.IsServerTimeout(err) && !apierrors.IsTimeout(err) &&
			!apierrors.IsInternalError(err) && !apierrors.IsServiceUnavailable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(50<<attempt) * time.Millisecond):
		}
	}
	return err
}

// deleteEvents removes the namespace's events so that later managers do not load them into their cache.
// Namespaces themselves are never deleted: without kube-controller-manager they would stay Terminating.
// Tens of thousands of events take the API server longer than its request timeout (60 s) to delete; it
// goes on deleting after it answered with the timeout, and the call is repeated until none is left.
func (h *harness) deleteEvents(ctx context.Context, ns string) error {
	for {
		err := h.c.DeleteAllOf(ctx, &webhooksv1alpha1.DocumentEvent{}, client.InNamespace(ns))
		switch {
		case err == nil:
			return wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
				list := &metav1.PartialObjectMetadataList{}
				list.SetGroupVersionKind(webhooksv1alpha1.GroupVersion.WithKind("DocumentEventList"))
				if err := h.c.List(ctx, list, client.InNamespace(ns), client.Limit(1)); err != nil {
					return false, nil
				}
				return len(list.Items) == 0, nil
			})
		case apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err):
			info("deleting the events of %s takes the API server longer than one request; asking again", ns)
		default:
			return fmt.Errorf("delete DocumentEvents in %s: %w", ns, err)
		}
	}
}

// deleteEndpoints removes the namespace's endpoints, so that later managers do not serve them. They have
// no finalizer: no manager needs to run.
func (h *harness) deleteEndpoints(ctx context.Context, ns string) error {
	if err := h.c.DeleteAllOf(ctx, &webhooksv1alpha1.WebhookEndpoint{}, client.InNamespace(ns)); err != nil {
		return fmt.Errorf("delete WebhookEndpoints in %s: %w", ns, err)
	}
	return nil
}

// withLog adds the tail of a manager log to an error.
func withLog(err error, logPath string) error {
	data, readErr := os.ReadFile(logPath)
	if readErr != nil || len(data) == 0 {
		return err
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return fmt.Errorf("%w\nlast lines of the manager log %s:\n%s", err, logPath, strings.Join(lines, "\n"))
}
