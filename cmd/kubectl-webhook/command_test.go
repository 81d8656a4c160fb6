package main

import (
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// optionsRecorder stands in for the options of a command: it records which of their methods the
// command's RunE calls, in which order, and does nothing else.
type optionsRecorder struct {
	options commandOptions
	calls   []string
}

func (r *optionsRecorder) Complete(*cobra.Command, []string) error {
	r.calls = append(r.calls, "Complete")
	return nil
}

func (r *optionsRecorder) Validate() error {
	r.calls = append(r.calls, "Validate")
	return nil
}

func (r *optionsRecorder) Run(context.Context) error {
	r.calls = append(r.calls, "Run")
	return nil
}

// runnableCommands returns the command paths (without the root) of every command that does something.
func runnableCommands(cmd *cobra.Command, path []string) [][]string {
	var paths [][]string
	for _, sub := range cmd.Commands() {
		subPath := append(slices.Clone(path), sub.Name())
		if sub.Runnable() {
			paths = append(paths, subPath)
		}
		paths = append(paths, runnableCommands(sub, subPath)...)
	}
	return paths
}

// argsToRun returns arguments and flags that get the command past cobra's own checks (its Args and
// required flags) to its RunE.
func argsToRun(t *testing.T, cmd *cobra.Command) []string {
	t.Helper()
	candidates := [][]string{nil, {"x"}, {"x", "y"}}
	i := slices.IndexFunc(candidates, func(args []string) bool { return cmd.ValidateArgs(args) == nil })
	if i < 0 {
		t.Fatalf("%s accepts neither zero, one nor two arguments; extend argsToRun", cmd.CommandPath())
	}
	args := slices.Clone(candidates[i])
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if slices.Contains(f.Annotations[cobra.BashCompOneRequiredFlag], "true") {
			args = append(args, "--"+f.Name+"=x")
		}
	})
	return args
}

// TestCommandsRunThroughOptions checks that every command's RunE calls Complete, Validate and Run, in
// this order, of an options struct of its own.
func TestCommandsRunThroughOptions(t *testing.T) {
	var built []*optionsRecorder
	wrapOptions = func(co commandOptions) commandOptions {
		r := &optionsRecorder{options: co}
		built = append(built, r)
		return r
	}
	defer func() { wrapOptions = nil }()

	ns := newNamespace(t)
	streams, _, _, errOut := genericiooptions.NewTestIOStreams()
	paths := runnableCommands(newRootCommand(streams), nil)
	if len(paths) < 6 {
		t.Fatalf("found only the commands %v", paths)
	}
	owner := map[reflect.Type]string{} // options type -> command
	for _, path := range paths {
		name := strings.Join(path, " ")
		built = nil
		errOut.Reset()
		root := newRootCommand(streams)
		cmd, _, err := root.Find(path)
		if err != nil {
			t.Fatal(err)
		}
		// A command that does not delegate runs for real: against the test cluster, in an empty namespace.
		args := append(slices.Clone(path), argsToRun(t, cmd)...)
		args = append(args, "--kubeconfig", kubeconfig, "-n", ns)
		if code := run(context.Background(), streams, args); code != 0 {
			t.Errorf("%s: exit code %d, so its RunE did not run the recorded options: %s", name, code, errOut)
			continue
		}
		var ran []*optionsRecorder
		for _, r := range built {
			if len(r.calls) > 0 {
				ran = append(ran, r)
			}
		}
		if len(ran) != 1 {
			t.Errorf("%s: RunE ran %d options structs, want 1: its RunE must be runOptions(<its options>)", name, len(ran))
			continue
		}
		r := ran[0]
		if got := strings.Join(r.calls, ","); got != "Complete,Validate,Run" {
			t.Errorf("%s: RunE called %s, want Complete,Validate,Run", name, got)
		}
		typ := reflect.TypeOf(r.options)
		if other, ok := owner[typ]; ok {
			t.Errorf("%s and %s share the options type %s; each command has its own", other, name, typ)
		}
		owner[typ] = name
		t.Logf("%s: %s", name, typ)
	}
}
