package main

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/tools/clientcmd"
)

// complete runs `kubectl-webhook __complete args...`, as the completion scripts and kubectl's
// kubectl_complete-webhook do, and returns the completions and the directive line.
func complete(t *testing.T, args ...string) (completions []string, directive string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	if code := run(ctx, streams, append([]string{"__complete"}, args...)); code != 0 {
		t.Fatalf("__complete %s: exit code %d\n%s", strings.Join(args, " "), code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	t.Logf("__complete %s\n%s", strings.Join(args, " "), out)
	return lines[:len(lines)-1], lines[len(lines)-1]
}

// noFileComp is the directive line of cobra.ShellCompDirectiveNoFileComp.
const noFileComp = ":4"

func expectCompletions(t *testing.T, got []string, directive string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("completions %q, want %q", got, want)
	}
	if directive != noFileComp {
		t.Errorf("directive %q, want %q (no file completion)", directive, noFileComp)
	}
}

func TestCompleteEndpointNames(t *testing.T) {
	ns, other := newNamespace(t), newNamespace(t)
	newEndpoint(t, ns, "orders-receiver")
	newEndpoint(t, ns, "billing")
	newEndpoint(t, other, "elsewhere")
	newEvent(t, ns, "doc-not-an-endpoint", nil)

	got, directive := complete(t, "test", "--kubeconfig", kubeconfig, "-n", ns, "")
	expectCompletions(t, got, directive, "billing", "orders-receiver")

	got, directive = complete(t, "test", "--kubeconfig", kubeconfig, "--namespace="+ns, "ord")
	expectCompletions(t, got, directive, "orders-receiver")

	// test takes one endpoint: nothing after it.
	got, directive = complete(t, "test", "--kubeconfig", kubeconfig, "-n", ns, "billing", "")
	expectCompletions(t, got, directive)

	got, directive = complete(t, "test", "--kubeconfig", kubeconfig, "-n", other, "")
	expectCompletions(t, got, directive, "elsewhere")
}

func TestCompleteEventNames(t *testing.T) {
	ns := newNamespace(t)
	newEvent(t, ns, "doc-invoice-1042", nil)
	newEvent(t, ns, "doc-receipt-7", nil)
	newEndpoint(t, ns, "not-an-event")

	got, directive := complete(t, "redeliver", "--kubeconfig", kubeconfig, "-n", ns, "")
	expectCompletions(t, got, directive, "doc-invoice-1042", "doc-receipt-7")

	// redeliver takes several events, each once.
	got, directive = complete(t, "redeliver", "--kubeconfig", kubeconfig, "-n", ns, "doc-receipt-7", "")
	expectCompletions(t, got, directive, "doc-invoice-1042")

	// --failed picks the events itself.
	got, directive = complete(t, "redeliver", "--kubeconfig", kubeconfig, "-n", ns, "--failed", "")
	expectCompletions(t, got, directive)
}

func TestCompleteWithoutCluster(t *testing.T) {
	// An unreachable API server: no names, no file names, no error.
	got, directive := complete(t, "test", "--server", "https://127.0.0.1:1", "-n", "acme", "")
	expectCompletions(t, got, directive)
}

func TestCompleteNoArguments(t *testing.T) {
	// No names and no file names; cobra offers the required flags.
	for command, want := range map[string][]string{
		"status": nil,
		"send":   {"--filename", "-f"},
		"verify": {"--secret-file", "--signature", "--timestamp"},
	} {
		got, directive := complete(t, command, "--kubeconfig", kubeconfig, "")
		for i := range got {
			got[i], _, _ = strings.Cut(got[i], "\t") // the flag's description
		}
		expectCompletions(t, got, directive, want...)
	}
}

func TestCompleteFlagValues(t *testing.T) {
	ns := newNamespace(t)
	got, directive := complete(t, "status", "--kubeconfig", kubeconfig, "-n", ns)
	expectCompletions(t, got, directive, ns)

	config, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	got, directive = complete(t, "status", "--kubeconfig", kubeconfig, "--context", "")
	expectCompletions(t, got, directive, config.CurrentContext)
}

func TestCompletionScripts(t *testing.T) {
	for shell, header := range map[string]string{
		"bash":       "# bash completion V2 for kubectl-webhook",
		"zsh":        "#compdef kubectl-webhook",
		"fish":       "# fish completion for kubectl-webhook",
		"powershell": "# powershell completion for kubectl-webhook",
	} {
		r := kubectlWebhook(t, "", "completion", shell)
		mustSucceed(t, r)
		if !strings.HasPrefix(r.stdout, header) {
			t.Errorf("completion %s starts with %.80q, want %q", shell, r.stdout, header)
		}
		if !strings.Contains(r.stdout, "__complete") {
			t.Errorf("completion %s does not call __complete", shell)
		}
	}
	r := kubectlWebhook(t, "", "completion", "zsh", "--no-descriptions")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "__completeNoDesc") {
		t.Error("completion zsh --no-descriptions does not call __completeNoDesc")
	}
	mustFail(t, kubectlWebhook(t, "", "completion"), "completion takes exactly one shell")
	mustFail(t, kubectlWebhook(t, "", "completion", "tcsh"), `unknown shell "tcsh"`)

	got, directive := complete(t, "completion", "")
	if want := completionShells; !slices.Equal(got, want) || directive != noFileComp {
		t.Errorf("completion <TAB>: %q %s, want %q %s", got, directive, want, noFileComp)
	}
}

// TestCompletionExecutable checks the kubectl_complete-webhook that make install-plugin installs: an
// executable that hands kubectl's words to __complete.
func TestCompletionExecutable(t *testing.T) {
	info, err := os.Stat("kubectl_complete-webhook")
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm()&0o111 == 0 {
		t.Errorf("kubectl_complete-webhook is not executable: %s", info.Mode())
	}
	script, err := os.ReadFile("kubectl_complete-webhook")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(script), "#!/bin/sh\n") || !strings.Contains(string(script), "\nexec kubectl-webhook __complete \"$@\"\n") {
		t.Errorf("kubectl_complete-webhook does not run kubectl-webhook __complete \"$@\":\n%s", script)
	}
}
