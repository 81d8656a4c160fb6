// Command bench measures webhook-operator on this machine: it starts a local control plane (kube-apiserver
// and etcd), builds the manager and runs it as a separate process with only the generated RBAC, runs
// loopback receivers, and measures speed, cost and memory: throughput, writes, cpu, latency, isolation,
// fanout and memory; at scale: history (retained finished events), restart, tenants (many namespaces and
// endpoints) and shards (two managers with complementary label selectors). The last, chaos, checks the
// delivery guarantees under faults: two replicas with leader election, the leader SIGKILLed repeatedly,
// the API server restarted, receivers that fail or hang. It prints a table and writes
// bench/results/latest.json.
//
// The targets are reported, not asserted: the program exits 0 when a target is missed and non-zero only
// when the harness itself fails (for example, events that are never delivered within a generous timeout)
// or a figure cannot be what it is named after (fewer API writes than Delivered events, hanging endpoints
// that held no request).
//
//	go run ./bench            # full sizes (make bench)
//	go run ./bench --quick    # CI smoke sizes, each scenario well under 2 minutes (make bench-quick)
//	go run ./bench --only throughput,latency
//	go run ./bench --quick --only chaos
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// managerArgs is appended to the flags of every manager the benchmark starts (and --manager-flag adds to
// it). Every manager start goes through it, so a flag the benchmark needs belongs here.
//
// The receivers listen on 127.0.0.1, which the manager's egress guard blocks by default: loopback
// receivers need the allow-list flag (--allowed-cidrs=127.0.0.0/8). localcluster.StartManager passes it
// today; if it stops doing so, add it here.
var managerArgs []string

// scenarioNames lists the scenarios in the order they run.
var scenarioNames = []string{
	scThroughput, scWrites, scCPU, scLatency, scIsolation, scFanout, scMemory, scHistory, scRestart, scTenants, scShards,
	scTracing, scChaos,
}

func main() {
	var (
		quick   bool
		only    string
		out     string
		keepLog bool
		merge   bool
	)
	flag.BoolVar(&quick, "quick", false, "Run the small CI sizes (each scenario finishes in well under 2 minutes).")
	flag.StringVar(&only, "only", "", "Comma-separated scenarios to run ("+strings.Join(scenarioNames, ", ")+"); all when empty. "+
		"writes and cpu are measured during throughput, restart during history: naming one runs that measurement.")
	flag.StringVar(&out, "out", filepath.Join("bench", "results", "latest.json"), "Where to write the JSON results.")
	flag.BoolVar(&keepLog, "keep-logs", false, "Keep the work folder with the manager logs even when every scenario succeeds.")
	flag.BoolVar(&merge, "merge", false, "Keep the results of other scenarios already in --out and replace only those measured now "+
		"(for --only runs).")
	flag.Func("manager-flag", "Add a flag to every manager the benchmark starts, for experiments (repeatable), "+
		"for example --manager-flag=--kube-api-qps=1000. Results are only comparable with the same flags.",
		func(v string) error {
			managerArgs = append(managerArgs, v)
			return nil
		})
	flag.Parse()

	selected, err := selectScenarios(only)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	code := run(quick, selected, out, keepLog, merge)
	os.Exit(code)
}

// measurement is one run of the benchmark that yields the results of one or more scenarios.
type measurement struct {
	scenarios []string
	run       func(context.Context) ([]result, error)
}

// one adapts a scenario that measures only itself.
func one(run func(context.Context) (result, error)) func(context.Context) ([]result, error) {
	return func(ctx context.Context) ([]result, error) {
		r, err := run(ctx)
		if err != nil {
			return nil, err
		}
		return []result{r}, nil
	}
}

func selectScenarios(only string) (map[string]bool, error) {
	selected := map[string]bool{}
	if strings.TrimSpace(only) == "" {
		for _, name := range scenarioNames {
			selected[name] = true
		}
		return selected, nil
	}
	known := map[string]bool{}
	for _, name := range scenarioNames {
		known[name] = true
	}
	for _, name := range strings.Split(only, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !known[name] {
			return nil, fmt.Errorf("unknown scenario %q (known: %s)", name, strings.Join(scenarioNames, ", "))
		}
		selected[name] = true
	}
	return selected, nil
}

// run returns the exit code: 0 when every selected scenario was measured, whatever its target.
func run(quick bool, selected map[string]bool, out string, keepLog, merge bool) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	started := time.Now()

	sizes := fullSizes
	mode := "full"
	if quick {
		sizes, mode = quickSizes, "quick"
	}
	machine := describeMachine()
	step("Mode %s on %s", mode, machine.summary())
	if load := loadAverage(); load != "" {
		step("Load average before start: %s", load)
		var one float64
		if _, err := fmt.Sscan(load, &one); err == nil && one > float64(machine.CPUs)/2 {
			info("warning: the machine is busy; the control plane, the manager and the clients share %d CPUs with it, "+
				"so the numbers will be lower and noisier than on an idle machine", machine.CPUs)
		}
	}
	if len(managerArgs) > 0 {
		step("Extra manager flags: %s", strings.Join(managerArgs, " "))
	}

	h, err := newHarness(ctx, sizes)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: setup failed:", err)
		return 1
	}
	failed := false
	defer func() {
		h.close(failed || keepLog)
	}()

	var results []result
	record := func(r result) {
		r.Details["mode"] = mode
		if len(managerArgs) > 0 {
			r.Details["manager_flags"] = strings.Join(managerArgs, " ")
		}
		r.Details["machine"] = machine
		results = append(results, r)
	}
	reportFailure := func(name string, err error) {
		failed = true
		fmt.Fprintf(os.Stderr, "bench: scenario %s failed: %v\n", name, err)
	}
	fail := func(name string, err error) {
		reportFailure(name, err)
		record(result{Scenario: name, Unit: "", Target: targets[name], Met: false,
			Details: map[string]any{"error": err.Error()}})
	}

	for _, ms := range []measurement{
		{[]string{scThroughput, scWrites, scCPU}, h.throughputResults},
		{[]string{scLatency}, one(h.latency)},
		{[]string{scIsolation}, one(h.isolation)},
		{[]string{scFanout}, one(h.fanout)},
		{[]string{scMemory}, one(h.memory)},
		{[]string{scHistory, scRestart}, h.historyResults},
		{[]string{scTenants}, one(h.tenants)},
		{[]string{scShards}, one(h.shards)},
		{[]string{scTracing}, one(h.tracingCost)},
		// Last: it restarts the API server and leaves a leader election Lease behind.
		{[]string{scChaos}, one(h.chaos)},
	} {
		wanted := slices.ContainsFunc(ms.scenarios, func(name string) bool { return selected[name] })
		if !wanted || ctx.Err() != nil {
			continue
		}
		begin := time.Now()
		load := loadAverage()
		rs, err := ms.run(ctx)
		for _, name := range ms.scenarios {
			if !selected[name] {
				continue
			}
			if err != nil {
				reason := err
				if name != ms.scenarios[0] {
					reason = fmt.Errorf("measured during %s, which failed: %w", ms.scenarios[0], err)
				}
				fail(name, reason)
				continue
			}
			for _, r := range rs {
				if r.Scenario == name {
					if r.invalid != nil {
						reportFailure(name, r.invalid)
						r.Met = false
						r.Details["error"] = r.invalid.Error()
					}
					r.Details["wall_seconds"] = round(time.Since(begin).Seconds(), 1)
					r.Details["load_average_before"] = load
					record(r)
				}
			}
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "bench: interrupted")
		failed = true
	}

	printTable(os.Stdout, results)
	var written any = results
	if merge {
		if written, err = mergeResults(out, results); err != nil {
			fmt.Fprintln(os.Stderr, "bench: merge results:", err)
			failed = true
			written = results
		}
	}
	if err := writeJSON(out, written); err != nil {
		fmt.Fprintln(os.Stderr, "bench: write results:", err)
		failed = true
	} else {
		step("Wrote %s", out)
	}
	step("Total wall time %s", time.Since(started).Round(time.Second))
	if failed {
		return 1
	}
	return 0
}

func step(format string, args ...any) {
	fmt.Printf("==> "+format+"\n", args...)
}

func info(format string, args ...any) {
	fmt.Printf("    "+format+"\n", args...)
}
