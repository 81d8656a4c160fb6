package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/1flow/webhook-operator/internal/localcluster"
)

// result is one scenario in bench/results/latest.json.
type result struct {
	Scenario string         `json:"scenario"`
	Value    float64        `json:"value"`
	Unit     string         `json:"unit"`
	Target   string         `json:"target"`
	Met      bool           `json:"met"`
	Details  map[string]any `json:"details"`
	// invalid, when set, says why the figure cannot be trusted (the harness, not the operator, failed): the
	// scenario is reported as a harness failure, with its details kept for the diagnosis.
	invalid error
}

func printTable(w io.Writer, results []result) {
	_, _ = fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "SCENARIO\tVALUE\tUNIT\tTARGET\tMET")
	for _, r := range results {
		met := "yes"
		switch {
		case r.Details["error"] != nil:
			met = "ERROR"
		case !r.Met:
			met = "no"
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Scenario, formatNumber(r.Value), r.Unit, r.Target, met)
	}
	_ = tw.Flush()
	for _, r := range results {
		_, _ = fmt.Fprintf(w, "\n%s:\n", r.Scenario)
		keys := make([]string, 0, len(r.Details))
		for k := range r.Details {
			if k != "machine" {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			text := fmt.Sprint(r.Details[k])
			switch v := r.Details[k].(type) {
			case float64:
				text = formatNumber(v)
			default:
				if structured(v) {
					data, _ := json.Marshal(v)
					text = string(data)
				}
			}
			_, _ = fmt.Fprintf(w, "  %-40s %s\n", k, text)
		}
	}
	_, _ = fmt.Fprintln(w)
}

// structured tells whether a detail is printed as JSON: maps, structs, and lists of them.
func structured(v any) bool {
	t := reflect.TypeOf(v)
	if t == nil {
		return false
	}
	if t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Map, reflect.Struct, reflect.Interface:
		return true
	}
	return false
}

func formatNumber(v float64) string {
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// writeJSON writes results, a []result or the []json.RawMessage of mergeResults.
func writeJSON(path string, results any) error {
	if r, ok := results.([]result); ok && r == nil {
		results = []result{}
	}
	// Targets such as ">= 0.85" stay readable: no HTML escaping of < and >.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(results); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// mergeResults returns the results in the file at path, kept as they are written, with those of the
// same scenarios replaced by fresh and fresh ones for other scenarios added, in the order the scenarios
// run. A missing file is an empty one.
func mergeResults(path string, fresh []result) ([]json.RawMessage, error) {
	var old []json.RawMessage
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(data, &old); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	byName := map[string]json.RawMessage{}
	var order []string
	add := func(name string, raw json.RawMessage) {
		if _, seen := byName[name]; !seen {
			order = append(order, name)
		}
		byName[name] = raw
	}
	for _, raw := range old {
		var r struct {
			Scenario string `json:"scenario"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		add(r.Scenario, raw)
	}
	for _, r := range fresh {
		raw, err := marshalResult(r)
		if err != nil {
			return nil, err
		}
		add(r.Scenario, raw)
	}
	rank := func(name string) int {
		if i := slices.Index(scenarioNames, name); i >= 0 {
			return i
		}
		return len(scenarioNames)
	}
	slices.SortStableFunc(order, func(a, b string) int { return rank(a) - rank(b) })
	merged := make([]json.RawMessage, 0, len(order))
	for _, name := range order {
		merged = append(merged, byName[name])
	}
	return merged, nil
}

// marshalResult encodes one result as writeJSON does.
func marshalResult(r result) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	return bytes.TrimSpace(buf.Bytes()), nil
}

// machine describes where the numbers were measured.
type machine struct {
	CPUs       int    `json:"cpus"`
	CPUModel   string `json:"cpu_model"`
	MemoryGiB  string `json:"memory_gib"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	OS         string `json:"os"`
	Kubernetes string `json:"kube_apiserver"`
	// Revision is the commit the manager was built from, with "+dirty" when the tree had changes.
	Revision string `json:"revision,omitempty"`
}

func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	if kb := procField("/proc/meminfo", "MemTotal"); kb != "" {
		if v, err := strconv.ParseFloat(strings.Fields(kb)[0], 64); err == nil {
			m.MemoryGiB = strconv.FormatFloat(v/(1<<20), 'f', 1, 64)
		}
	}
	// The envtest binaries are built from source and report no version of their own; their folder names it.
	if dir := localcluster.AssetsDir(); dir != "" {
		m.Kubernetes = "kube-apiserver " + strings.SplitN(filepath.Base(dir), "-", 2)[0]
	}
	m.Revision = revision()
	return m
}

func (m machine) summary() string {
	return fmt.Sprintf("%d CPUs (%s), %s GiB, Linux %s, %s, %s, revision %s",
		m.CPUs, m.CPUModel, m.MemoryGiB, m.Kernel, m.Go, m.Kubernetes, m.Revision)
}

// revision names the source that was measured: the commit, and whether the work tree differed from it.
func revision() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	rev := strings.TrimSpace(string(out))
	// Only the code that goes into the manager matters; bench/ itself and its results do not.
	status, err := exec.Command("git", "status", "--porcelain", "--", "api", "cmd", "internal", "pkg", "go.mod", "go.sum").Output()
	if err == nil && len(bytes.TrimSpace(status)) > 0 {
		rev += "+dirty"
	}
	return rev
}

func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(key) == name {
			return strings.TrimSpace(value)
		}
	}
	return ""
}

// percentile returns the nearest-rank percentile p (0..1) of values.
func percentile(values []float64, p float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	rank := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

func round(v float64, digits int) float64 {
	scale := math.Pow(10, float64(digits))
	return math.Round(v*scale) / scale
}

// loadAverage returns the 1, 5 and 15 minute load averages from /proc/loadavg. Every process of the
// benchmark shares the machine with whatever else runs on it, so the numbers are recorded with it.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	fields := strings.Fields(string(data))
	if len(fields) < 3 {
		return ""
	}
	return strings.Join(fields[:3], " ")
}
