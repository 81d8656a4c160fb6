package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/1flow/webhook-operator/internal/metrics"
)

// metricNamePattern matches the operator's metric names in PromQL. Histograms are queried through their
// _bucket, _sum and _count series.
var metricNamePattern = regexp.MustCompile(`webhook_operator_[a-z_]+`)

var histogramSuffixes = []string{"_bucket", "_sum", "_count"}

// repoPath returns the absolute path of a file of the repository.
func repoPath(t *testing.T, rel ...string) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(append([]string{root}, rel...)...)
}

// readYAMLDocs splits multi-document YAML and returns every non-empty document as a map.
func readYAMLDocs(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs []map[string]any
	for {
		raw, err := reader.Read()
		if err == io.EOF {
			return docs
		}
		if err != nil {
			t.Fatal(err)
		}
		doc := map[string]any{}
		if err := yaml.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("parse YAML document: %v\n%s", err, raw)
		}
		if len(doc) > 0 {
			docs = append(docs, doc)
		}
	}
}

// unknownMetrics returns the webhook_operator_ names in the expressions that internal/metrics does not
// define, after stripping the histogram series suffixes. It also returns every known name it found.
func unknownMetrics(exprs []string) (unknown []string, found map[string]bool) {
	found = map[string]bool{}
	for _, expr := range exprs {
		for _, name := range metricNamePattern.FindAllString(expr, -1) {
			base := name
			if !slices.Contains(metrics.Names, name) {
				for _, suffix := range histogramSuffixes {
					if trimmed, ok := strings.CutSuffix(name, suffix); ok {
						base = trimmed
						break
					}
				}
			}
			if slices.Contains(metrics.Names, base) {
				found[base] = true
			} else {
				unknown = append(unknown, name)
			}
		}
	}
	return unknown, found
}

// alertRule is one rule of a PrometheusRule.
type alertRule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// prometheusRules returns the alert rules of every PrometheusRule in the documents.
func prometheusRules(t *testing.T, docs []map[string]any) []alertRule {
	t.Helper()
	var rules []alertRule
	for _, doc := range docs {
		if doc["kind"] != "PrometheusRule" {
			continue
		}
		var rule struct {
			Spec struct {
				Groups []struct {
					Name  string      `json:"name"`
					Rules []alertRule `json:"rules"`
				} `json:"groups"`
			} `json:"spec"`
		}
		remarshal(t, doc, &rule)
		for _, group := range rule.Spec.Groups {
			rules = append(rules, group.Rules...)
		}
	}
	return rules
}

// dashboardExprs returns the PromQL of every target and query variable of a Grafana dashboard,
// including the panels nested in rows.
func dashboardExprs(t *testing.T, data []byte) (exprs []string, panels int) {
	t.Helper()
	type panel struct {
		Title   string  `json:"title"`
		Panels  []panel `json:"panels"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	}
	var dashboard struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	decoder := json.NewDecoder(bytes.NewReader(data))
	if err := decoder.Decode(&dashboard); err != nil {
		t.Fatalf("parse dashboard.json: %v", err)
	}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if len(p.Panels) > 0 {
				continue // a row
			}
			panels++
			if len(p.Targets) == 0 {
				t.Errorf("dashboard panel %q has no query", p.Title)
			}
			for _, target := range p.Targets {
				if strings.TrimSpace(target.Expr) == "" {
					t.Errorf("dashboard panel %q has an empty query", p.Title)
				}
				exprs = append(exprs, target.Expr)
			}
		}
	}
	walk(dashboard.Panels)
	for _, variable := range dashboard.Templating.List {
		if variable.Type != "query" {
			continue
		}
		// Grafana stores a query variable's PromQL as a string or as {"query": "..."}.
		var query string
		if json.Unmarshal(variable.Query, &query) != nil {
			var object struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(variable.Query, &object); err != nil {
				t.Fatalf("dashboard variable query: %v", err)
			}
			query = object.Query
		}
		exprs = append(exprs, query)
	}
	return exprs, panels
}

// TestPrometheusConfigUsesOnlyDefinedMetrics parses every YAML document of config/prometheus and its
// Grafana dashboard, and checks that every metric name in the alerts and dashboard queries is one that
// internal/metrics defines.
func TestPrometheusConfigUsesOnlyDefinedMetrics(t *testing.T) {
	g := NewWithT(t)
	dir := repoPath(t, "config", "prometheus")
	entries, err := os.ReadDir(dir)
	g.Expect(err).NotTo(HaveOccurred())

	var docs []map[string]any
	rawText := make([]string, 0, len(entries))
	var dashboard []byte
	for _, entry := range entries {
		data, err := os.ReadFile(filepath.Join(dir, entry.Name()))
		g.Expect(err).NotTo(HaveOccurred())
		rawText = append(rawText, string(data))
		switch filepath.Ext(entry.Name()) {
		case ".yaml", ".yml":
			docs = append(docs, readYAMLDocs(t, data)...)
		case ".json":
			g.Expect(entry.Name()).To(Equal("dashboard.json"))
			dashboard = data
		}
	}
	kinds := map[string]int{}
	for _, doc := range docs {
		kinds[doc["kind"].(string)]++
	}
	g.Expect(kinds).To(Equal(map[string]int{"Kustomization": 1, "ServiceMonitor": 1, "PrometheusRule": 1}))

	// Alerts.
	rules := prometheusRules(t, docs)
	byName := map[string]alertRule{}
	exprs := make([]string, 0, len(rules))
	for _, rule := range rules {
		g.Expect(rule.Alert).NotTo(BeEmpty(), "every rule is an alert")
		g.Expect(byName).NotTo(HaveKey(rule.Alert), "alert names are unique")
		byName[rule.Alert] = rule
		exprs = append(exprs, rule.Expr)
		g.Expect(strings.Count(rule.Expr, "(")).To(Equal(strings.Count(rule.Expr, ")")), "%s: balanced parentheses", rule.Alert)
		g.Expect(rule.Labels).To(HaveKey("severity"), rule.Alert)
		g.Expect(rule.Annotations).To(HaveKeyWithValue("summary", Not(BeEmpty())), rule.Alert)
		g.Expect(rule.Annotations).To(HaveKeyWithValue("description", Not(BeEmpty())), rule.Alert)
		g.Expect(rule.Annotations).To(HaveKeyWithValue("runbook_url",
			HaveSuffix("docs/operations.md#"+strings.ToLower(rule.Alert))), rule.Alert)
	}
	want := map[string]struct{ metric, duration string }{
		"WebhookBacklogTooOld":            {metrics.OldestPendingAgeSeconds, "5m"},
		"WebhookCircuitOpen":              {metrics.OpenCircuits, "15m"},
		"WebhookDeliveryFailureRatioHigh": {metrics.DeliveriesTotal, "10m"},
	}
	for name, w := range want {
		g.Expect(byName).To(HaveKey(name))
		g.Expect(byName[name].Expr).To(ContainSubstring(w.metric), name)
		g.Expect(byName[name].For).To(Equal(w.duration), name)
	}
	g.Expect(byName["WebhookBacklogTooOld"].Expr).To(MatchRegexp(`>\s*600\s*$`))
	g.Expect(byName["WebhookCircuitOpen"].Expr).To(MatchRegexp(`>\s*0\s*$`))
	ratio := byName["WebhookDeliveryFailureRatioHigh"].Expr
	g.Expect(ratio).To(ContainSubstring(`result!="success"`))
	g.Expect(ratio).To(MatchRegexp(`>\s*0\.2\s*$`))
	g.Expect(ratio).To(MatchRegexp(`/\s*\(\s*sum by \(namespace, job\) \(rate\(webhook_operator_deliveries_total\[10m\]\)\)\s*>\s*0\s*\)`),
		"the denominator only keeps series with traffic, so an idle operator divides by nothing")

	// ServiceMonitor: the HTTPS metrics port, authenticated with the service account token.
	for _, doc := range docs {
		if doc["kind"] != "ServiceMonitor" {
			continue
		}
		var monitor struct {
			Spec struct {
				Endpoints []map[string]any `json:"endpoints"`
				Selector  struct {
					MatchLabels map[string]string `json:"matchLabels"`
				} `json:"selector"`
			} `json:"spec"`
		}
		remarshal(t, doc, &monitor)
		g.Expect(monitor.Spec.Endpoints).To(HaveLen(1))
		endpoint := monitor.Spec.Endpoints[0]
		g.Expect(endpoint).To(HaveKeyWithValue("port", "https"))
		g.Expect(endpoint).To(HaveKeyWithValue("scheme", "https"))
		g.Expect(endpoint).To(HaveKeyWithValue("path", "/metrics"))
		g.Expect(endpoint).To(HaveKeyWithValue("bearerTokenFile", "/var/run/secrets/kubernetes.io/serviceaccount/token"))
		g.Expect(endpoint).To(HaveKeyWithValue("tlsConfig", HaveKeyWithValue("insecureSkipVerify", true)))
		service := readYAMLDocs(t, mustRead(t, repoPath(t, "config", "default", "metrics_service.yaml")))[0]
		var svc struct {
			Metadata struct {
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
			Spec struct {
				Ports []struct {
					Name string `json:"name"`
					Port int    `json:"port"`
				} `json:"ports"`
			} `json:"spec"`
		}
		remarshal(t, service, &svc)
		for k, v := range monitor.Spec.Selector.MatchLabels {
			g.Expect(svc.Metadata.Labels).To(HaveKeyWithValue(k, v), "the ServiceMonitor selects the metrics Service")
		}
		g.Expect(svc.Spec.Ports).To(ContainElement(And(
			HaveField("Name", "https"), HaveField("Port", 8443))))
	}

	// Dashboard.
	g.Expect(dashboard).NotTo(BeNil(), "config/prometheus/dashboard.json exists")
	dashboardQueries, panels := dashboardExprs(t, dashboard)
	g.Expect(panels).To(BeNumerically(">=", 7))
	exprs = append(exprs, dashboardQueries...)

	unknown, found := unknownMetrics(exprs)
	g.Expect(unknown).To(BeEmpty(), "metric names not defined in internal/metrics (metrics.Names)")
	_, onDashboard := unknownMetrics(dashboardQueries)
	for _, name := range metrics.Names {
		g.Expect(onDashboard).To(HaveKey(name), "the dashboard shows every metric")
	}
	g.Expect(found).To(HaveLen(len(metrics.Names)))

	// Every other mention (comments, descriptions) must name a real metric too.
	unknown, _ = unknownMetrics(rawText)
	g.Expect(unknown).To(BeEmpty(), "metric names mentioned in config/prometheus")

	// The check itself must be able to fail: a misspelled name in a real expression is reported.
	misspelled := strings.Replace(byName["WebhookCircuitOpen"].Expr, metrics.OpenCircuits, "webhook_operator_open_circuit", 1)
	unknown, _ = unknownMetrics([]string{misspelled})
	g.Expect(unknown).To(Equal([]string{"webhook_operator_open_circuit"}))
	unknown, _ = unknownMetrics([]string{"rate(webhook_operator_delivery_duration_second_bucket[5m])"})
	g.Expect(unknown).To(HaveLen(1), "a misspelled histogram name stays misspelled after its suffix is stripped")

	names := make([]string, 0, len(byName))
	for name := range byName {
		names = append(names, name)
	}
	sort.Strings(names)
	t.Logf("alerts %v; %d dashboard panels; metrics used: %d of %d", names, panels, len(found), len(metrics.Names))
}

// remarshal converts a generic document into a typed struct through JSON.
func remarshal(t *testing.T, in, out any) {
	t.Helper()
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
