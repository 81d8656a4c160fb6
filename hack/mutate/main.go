// Command mutate is the mutation gate (make mutate). It applies each mutant of hack/mutate/mutants.go, one
// defect at a time, to a scratch copy of its file, handed to the compiler with go test -overlay so that
// the working tree is never touched, and runs the engine's tests, the simulation and the controller's
// in-process tests against it until one fails. A mutant no test kills is a defect the tests cannot see;
// one that does not compile proves nothing. Either fails the gate.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

type mutant struct {
	name string
	// file is relative to the module root.
	file string
	// original must occur exactly once in file, so that an entry cannot silently apply elsewhere or
	// nowhere once the code moves.
	original    string
	replacement string
	why         string
}

// step is one go test run; a mutant is killed by the first step that fails.
type step struct {
	name string
	pkg  string
	args []string
	// maxTimeout caps the -timeout flag for this step (0: no cap): the engine's tests take a second, and
	// a mutant that makes the engine spin (an attempt requeued and let out again at once) should not
	// cost the whole gate's timeout.
	maxTimeout time.Duration
}

func gateSteps(seeds, simSteps int) []step {
	return []step{
		{name: "engine", pkg: "./internal/engine/", maxTimeout: 20 * time.Second},
		{name: "simulation", pkg: "./internal/controller/", args: []string{"-run", "^TestSimulation$",
			fmt.Sprintf("-sim.seeds=%d", seeds), fmt.Sprintf("-sim.steps=%d", simSteps)}},
		// TestControllers starts a control plane (envtest), which would cost more than the rest together.
		{name: "controller", pkg: "./internal/controller/", args: []string{"-skip", "^(TestControllers|TestSimulation)$"}},
	}
}

func (s step) command(overlay string, timeout time.Duration) []string {
	if s.maxTimeout > 0 {
		timeout = min(timeout, s.maxTimeout)
	}
	args := []string{"test", "-json", "-count=1", "-timeout", timeout.String()}
	if overlay != "" {
		args = append(args, "-overlay", overlay)
	}
	return append(append(args, s.pkg), s.args...)
}

// verdict is what the steps made of one mutant (or of the unmutated code).
type verdict struct {
	// killedBy names the failing test; empty when every step passed.
	killedBy, step string
	// broken holds the compiler's (or vet's) output when the code did not build.
	broken  string
	elapsed time.Duration
}

func main() {
	only := flag.String("only", "", "run only these mutants (comma-separated names)")
	list := flag.Bool("list", false, "list the mutants and check that each snippet still occurs exactly once")
	seeds := flag.Int("seeds", 3, "simulation seeds per mutant")
	simSteps := flag.Int("steps", 150, "simulation operations per seed")
	timeout := flag.Duration("timeout", time.Minute,
		"go test -timeout of each step (the unmutated steps take seconds): a mutant that hangs a test is killed by the timeout")
	out := flag.String("out", "", "also write the table as markdown to this file")
	flag.Parse()

	if err := run(*only, *list, *seeds, *simSteps, *timeout, *out); err != nil {
		fmt.Fprintln(os.Stderr, "mutate:", err)
		os.Exit(1)
	}
}

func run(only string, list bool, seeds, simSteps int, timeout time.Duration, out string) error {
	if _, err := os.Stat("go.mod"); err != nil {
		return errors.New("run from the module root (make mutate)")
	}
	chosen, err := choose(mutants, only)
	if err != nil {
		return err
	}
	mutated, err := applyAll(chosen, os.ReadFile)
	if list {
		for _, m := range chosen {
			fmt.Printf("%-45s %-50s %s\n", m.name, m.file, m.why)
		}
		return err
	}
	if err != nil {
		return err
	}
	scratch, err := os.MkdirTemp("", "mutate-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(scratch) }()

	plan := gateSteps(seeds, simSteps)
	fmt.Fprintf(os.Stderr, "baseline (unmutated): ")
	base := runSteps(plan, "", timeout)
	switch {
	case base.broken != "":
		return fmt.Errorf("the unmutated code does not build:\n%s", base.broken)
	case base.killedBy != "":
		// Every mutant would look killed.
		return fmt.Errorf("the unmutated code fails %s (%s step): fix that first", base.killedBy, base.step)
	}
	fmt.Fprintf(os.Stderr, "passes in %s\n", base.elapsed.Round(time.Second))

	verdicts := make([]verdict, len(chosen))
	for i, m := range chosen {
		overlay, err := writeOverlay(scratch, i, m.file, mutated[i])
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "[%d/%d] %s: ", i+1, len(chosen), m.name)
		verdicts[i] = runSteps(plan, overlay, timeout)
		fmt.Fprintln(os.Stderr, verdicts[i].summary())
	}

	table := markdown(chosen, verdicts, seeds, simSteps)
	printTable(os.Stdout, chosen, verdicts)
	if out != "" {
		if err := os.WriteFile(out, []byte(table), 0o644); err != nil {
			return err
		}
	}
	var failed []string
	for i, v := range verdicts {
		if v.killedBy == "" || v.broken != "" {
			failed = append(failed, chosen[i].name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d mutants survived or do not build: %s", len(failed), len(chosen), strings.Join(failed, ", "))
	}
	return nil
}

// choose returns the mutants named in only (all when empty), refusing unknown names.
func choose(all []mutant, only string) ([]mutant, error) {
	if only == "" {
		return all, nil
	}
	var chosen []mutant
	for name := range strings.SplitSeq(only, ",") {
		i := slices.IndexFunc(all, func(m mutant) bool { return m.name == strings.TrimSpace(name) })
		if i < 0 {
			return nil, fmt.Errorf("no mutant named %q (make mutate MUTATE_ARGS=-list)", name)
		}
		chosen = append(chosen, all[i])
	}
	return chosen, nil
}

// applyAll mutates each mutant's file, reporting every stale entry at once rather than one per run.
func applyAll(ms []mutant, read func(string) ([]byte, error)) ([][]byte, error) {
	mutated := make([][]byte, len(ms))
	var errs []error
	for i, m := range ms {
		src, err := read(m.file)
		if err != nil {
			errs = append(errs, fmt.Errorf("mutant %s: %w", m.name, err))
			continue
		}
		if mutated[i], err = apply(src, m); err != nil {
			errs = append(errs, err)
		}
	}
	return mutated, errors.Join(errs...)
}

// apply replaces the mutant's original snippet, which must occur exactly once in src.
func apply(src []byte, m mutant) ([]byte, error) {
	switch n := bytes.Count(src, []byte(m.original)); {
	case m.original == m.replacement:
		return nil, fmt.Errorf("mutant %s: its replacement is its original snippet", m.name)
	case n == 0:
		return nil, fmt.Errorf("mutant %s: its original snippet is no longer in %s: copy the current code into its entry in hack/mutate/mutants.go",
			m.name, m.file)
	case n > 1:
		return nil, fmt.Errorf("mutant %s: its original snippet occurs %d times in %s: widen it until it names one place",
			m.name, n, m.file)
	}
	return bytes.Replace(src, []byte(m.original), []byte(m.replacement), 1), nil
}

// writeOverlay writes the mutated file under the original's base name, so that compiler messages name
// it, and the overlay that substitutes it for the real one.
func writeOverlay(scratch string, index int, file string, mutated []byte) (string, error) {
	dir := filepath.Join(scratch, fmt.Sprint(index))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	real, err := filepath.Abs(file)
	if err != nil {
		return "", err
	}
	copied := filepath.Join(dir, filepath.Base(file))
	if err := os.WriteFile(copied, mutated, 0o644); err != nil {
		return "", err
	}
	overlay := filepath.Join(dir, "overlay.json")
	return overlay, os.WriteFile(overlay, overlayJSON(real, copied), 0o644)
}

// overlayJSON is the go build -overlay file that reads replacement in place of real.
func overlayJSON(real, replacement string) []byte {
	b, err := json.Marshal(struct{ Replace map[string]string }{map[string]string{real: replacement}})
	if err != nil {
		panic(err) // a map of strings always encodes
	}
	return b
}

// runSteps runs the steps in order and stops at the first that fails.
func runSteps(plan []step, overlay string, timeout time.Duration) verdict {
	start := time.Now()
	for _, s := range plan {
		cmd := exec.Command("go", s.command(overlay, timeout)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		output, runErr := cmd.Output()
		r, err := parseTestJSON(bytes.NewReader(output))
		v := verdict{step: s.name}
		switch {
		case err != nil:
			v.broken = fmt.Sprintf("cannot read go test -json: %v\n%s", err, stderr.String())
		case r.buildFailed:
			v.broken = r.buildOutput
		case runErr != nil:
			if v.killedBy = r.killer(); v.killedBy == "" {
				// go test itself failed (bad flag, missing package): nothing was tested.
				v.broken = fmt.Sprintf("%v\n%s", runErr, stderr.String())
			}
		default:
			continue
		}
		v.elapsed = time.Since(start)
		return v
	}
	return verdict{elapsed: time.Since(start)}
}

func (v verdict) summary() string {
	switch {
	case v.broken != "":
		return fmt.Sprintf("DOES NOT BUILD (%s step, %s)\n%s", v.step, v.elapsed.Round(time.Second), strings.TrimSpace(v.broken))
	case v.killedBy == "":
		return fmt.Sprintf("SURVIVED (%s)", v.elapsed.Round(time.Second))
	}
	return fmt.Sprintf("killed by %s (%s step, %s)", v.killedBy, v.step, v.elapsed.Round(time.Second))
}

// testEvent is one line of go test -json (cmd/test2json), build events included.
type testEvent struct {
	Action      string
	Package     string
	Test        string
	Output      string
	FailedBuild string
}

// testReport is what one go test -json run tells about its failures.
type testReport struct {
	buildFailed bool
	buildOutput string
	// failed are the tests that failed, in the order they ended; running are those that started and
	// never ended, which is how a panic or a -timeout shows.
	failed, running []string
	timedOut        bool
	failedPackages  []string
}

func parseTestJSON(r io.Reader) (testReport, error) {
	var rep testReport
	var build strings.Builder
	var running []string
	scanner := bufio.NewScanner(r)
	scanner.Buffer(nil, 16<<20)
	for scanner.Scan() {
		line := scanner.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e testEvent
		if err := json.Unmarshal(line, &e); err != nil {
			return rep, fmt.Errorf("%w: %q", err, line)
		}
		switch e.Action {
		case "build-output":
			build.WriteString(e.Output)
		case "build-fail":
			rep.buildFailed = true
		case "run":
			running = append(running, e.Test)
		case "pass", "skip":
			running = slices.DeleteFunc(running, func(t string) bool { return t == e.Test })
		case "fail":
			if e.Test == "" {
				rep.buildFailed = rep.buildFailed || e.FailedBuild != ""
				rep.failedPackages = append(rep.failedPackages, e.Package)
				continue
			}
			running = slices.DeleteFunc(running, func(t string) bool { return t == e.Test })
			rep.failed = append(rep.failed, e.Test)
		case "output":
			if strings.HasPrefix(e.Output, "panic: test timed out") {
				rep.timedOut = true
			}
		}
	}
	rep.buildOutput, rep.running = build.String(), running
	return rep, scanner.Err()
}

// killer names the deepest failing test, or the test that was running when the binary died. It is
// empty when no test failed.
func (r testReport) killer() string {
	if name := deepest(r.failed); name != "" {
		if more := len(leaves(r.failed)) - 1; more > 0 {
			return fmt.Sprintf("%s (+%d more)", name, more)
		}
		return name
	}
	if name := deepest(r.running); name != "" {
		if r.timedOut {
			return name + " (timed out)"
		}
		return name + " (panicked)"
	}
	if len(r.failedPackages) > 0 {
		// Failed outside any test: TestMain, or an init.
		return r.failedPackages[0]
	}
	return ""
}

// leaves drops the tests whose subtests are in the list too: a parent fails because its subtest did.
func leaves(tests []string) []string {
	return slices.DeleteFunc(slices.Clone(tests), func(t string) bool {
		return slices.ContainsFunc(tests, func(other string) bool { return strings.HasPrefix(other, t+"/") })
	})
}

// deepest is the first of the most nested tests.
func deepest(tests []string) string {
	best := ""
	for _, t := range leaves(tests) {
		if best == "" || strings.Count(t, "/") > strings.Count(best, "/") {
			best = t
		}
	}
	return best
}

func (v verdict) killedCell() string {
	switch {
	case v.broken != "":
		return "DOES NOT BUILD"
	case v.killedBy == "":
		return "SURVIVED"
	}
	return v.killedBy
}

func printTable(w io.Writer, ms []mutant, vs []verdict) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MUTANT\tKILLED BY\tSTEP\tTIME")
	var total time.Duration
	for i, m := range ms {
		total += vs[i].elapsed
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.name, vs[i].killedCell(), stepCell(vs[i]), vs[i].elapsed.Round(time.Second))
	}
	fmt.Fprintf(tw, "total\t\t\t%s\n", total.Round(time.Second))
	_ = tw.Flush()
}

func stepCell(v verdict) string {
	if v.killedBy == "" && v.broken == "" {
		return "-"
	}
	return v.step
}

func markdown(ms []mutant, vs []verdict, seeds, simSteps int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Simulation: %d seeds of %d steps per mutant.\n\n", seeds, simSteps)
	b.WriteString("| Mutant | Killed by | Step | Time |\n|---|---|---|---|\n")
	var total time.Duration
	for i, m := range ms {
		total += vs[i].elapsed
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", m.name, vs[i].killedCell(), stepCell(vs[i]), vs[i].elapsed.Round(time.Second))
	}
	fmt.Fprintf(&b, "| total | | | %s |\n", total.Round(time.Second))
	return b.String()
}
