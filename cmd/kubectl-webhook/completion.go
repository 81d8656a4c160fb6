package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// Shell completion. Cobra answers the hidden `__complete` command (which the scripts of `completion`
// call, and so does kubectl through a kubectl_complete-webhook executable) with the names below.

// completionTimeout bounds the API requests of one completion, so that a TAB against an unreachable
// cluster gives up in seconds.
const completionTimeout = 5 * time.Second

// completionPageSize bounds each list response of a completion.
const completionPageSize = 500

// Kinds whose names complete, as list kinds for metadata-only requests.
var (
	endpointListKind  = webhooksv1alpha1.GroupVersion.WithKind("WebhookEndpointList")
	eventListKind     = webhooksv1alpha1.GroupVersion.WithKind("DocumentEventList")
	namespaceListKind = corev1.SchemeGroupVersion.WithKind("NamespaceList")
)

// completeNames returns a ValidArgsFunction that offers the names of the objects of listKind in the
// namespace of -n/--namespace or of the kubeconfig context, read with the kubeconfig flags of the command
// line. maxArgs is how many names the command takes (0: any number); a name already given is not
// offered again. File names are never offered; when the cluster cannot be read, nothing is.
func completeNames(o *options, listKind schema.GroupVersionKind, maxArgs int) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if maxArgs > 0 && len(args) >= maxArgs {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ns, _, err := o.namespace()
		if err != nil {
			cobra.CompDebugln(fmt.Sprintf("complete %s names: %v", listKind.Kind, err), false)
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		names, err := o.listNames(cmd.Context(), listKind, ns)
		if err != nil {
			cobra.CompDebugln(fmt.Sprintf("complete %s names in namespace %s: %v", listKind.Kind, ns, err), false)
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, name := range names {
			if strings.HasPrefix(name, toComplete) && !slices.Contains(args, name) {
				out = append(out, name)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// listNames returns the names of the objects of listKind in the namespace ("" for cluster-scoped kinds),
// sorted. It reads metadata only: DocumentEvents carry their payload and deliveries, which completion
// does not need.
func (o *options) listNames(ctx context.Context, listKind schema.GroupVersionKind, namespace string) ([]string, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	defer cancel()
	c, err := o.client()
	if err != nil {
		return nil, err
	}
	var names []string
	cont := ""
	for {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(listKind)
		opts := []client.ListOption{client.Limit(completionPageSize), client.Continue(cont)}
		if namespace != "" {
			opts = append(opts, client.InNamespace(namespace))
		}
		if err := c.List(ctx, list, opts...); err != nil {
			return nil, err
		}
		for i := range list.Items {
			names = append(names, list.Items[i].Name)
		}
		if cont = list.Continue; cont == "" {
			break
		}
	}
	slices.Sort(names)
	return names, nil
}

// registerFlagCompletions completes the values of the kubeconfig flags: --namespace from the cluster,
// --context, --cluster and --user from the kubeconfig.
func registerFlagCompletions(root *cobra.Command, o *options) {
	_ = root.RegisterFlagCompletionFunc("namespace",
		func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			names, err := o.listNames(cmd.Context(), namespaceListKind, "")
			if err != nil {
				cobra.CompDebugln(fmt.Sprintf("complete namespaces: %v", err), false)
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return withPrefix(names, toComplete), cobra.ShellCompDirectiveNoFileComp
		})
	kubeconfigNames := func(names func(*clientcmdapi.Config) []string) cobra.CompletionFunc {
		return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			config, err := o.configFlags.ToRawKubeConfigLoader().RawConfig()
			if err != nil {
				cobra.CompDebugln(fmt.Sprintf("complete from the kubeconfig: %v", err), false)
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return withPrefix(names(&config), toComplete), cobra.ShellCompDirectiveNoFileComp
		}
	}
	_ = root.RegisterFlagCompletionFunc("context", kubeconfigNames(func(c *clientcmdapi.Config) []string {
		return slices.Sorted(maps.Keys(c.Contexts))
	}))
	_ = root.RegisterFlagCompletionFunc("cluster", kubeconfigNames(func(c *clientcmdapi.Config) []string {
		return slices.Sorted(maps.Keys(c.Clusters))
	}))
	_ = root.RegisterFlagCompletionFunc("user", kubeconfigNames(func(c *clientcmdapi.Config) []string {
		return slices.Sorted(maps.Keys(c.AuthInfos))
	}))
}

// withPrefix returns the names that start with prefix.
func withPrefix(names []string, prefix string) []cobra.Completion {
	var out []cobra.Completion
	for _, name := range names {
		if strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	return out
}

// Shells that completion writes scripts for.
var completionShells = []string{"bash", "zsh", "fish", "powershell"}

// completionOptions are the argument of completion.
type completionOptions struct {
	*options
	cmd            *cobra.Command
	shell          string
	noDescriptions bool
}

func newCompletionCommand(o *options) *cobra.Command {
	co := &completionOptions{options: o}
	cmd := &cobra.Command{
		Use:   "completion SHELL",
		Short: "Print the shell completion script of kubectl-webhook (bash, zsh, fish or powershell)",
		Long: `Print the shell completion script for kubectl-webhook: command and flag names, and the names of
WebhookEndpoints (test) and DocumentEvents (redeliver), read from the cluster of the kubeconfig in the
namespace of -n/--namespace.

The script completes the command kubectl-webhook. For "kubectl webhook <TAB>", kubectl (1.26 and later)
asks an executable named kubectl_complete-webhook on the PATH instead; it only has to run
kubectl-webhook __complete "$@". make install-plugin installs one next to kubectl-webhook; see the
plugin's README.`,
		Example: `  # bash, in the current shell (needs the bash-completion package)
  source <(kubectl-webhook completion bash)

  # zsh, in the current shell
  source <(kubectl-webhook completion zsh)

  # zsh, for every shell: a file named _kubectl-webhook in a directory of $fpath
  kubectl-webhook completion zsh > "${fpath[1]}/_kubectl-webhook"`,
		ValidArgs: completionShells,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError(cmd, "completion takes exactly one shell (%s), got %d arguments",
					strings.Join(completionShells, ", "), len(args))
			}
			return nil
		},
		RunE: runOptions(co),
	}
	cmd.Flags().BoolVar(&co.noDescriptions, "no-descriptions", false, "Offer the completions without their descriptions")
	return cmd
}

// Complete takes the shell.
func (co *completionOptions) Complete(cmd *cobra.Command, args []string) error {
	co.cmd = cmd
	co.shell = args[0]
	return nil
}

// Validate checks that the shell is one completion knows.
func (co *completionOptions) Validate() error {
	if !slices.Contains(completionShells, co.shell) {
		return usageError(co.cmd, "unknown shell %q: use %s", co.shell, strings.Join(completionShells, ", "))
	}
	return nil
}

// Run prints the script of the shell, for the whole command tree.
func (co *completionOptions) Run(context.Context) error {
	root, out, descriptions := co.cmd.Root(), co.streams.Out, !co.noDescriptions
	switch co.shell {
	case "bash":
		return root.GenBashCompletionV2(out, descriptions)
	case "zsh":
		if descriptions {
			return root.GenZshCompletion(out)
		}
		return root.GenZshCompletionNoDesc(out)
	case "fish":
		return root.GenFishCompletion(out, descriptions)
	default:
		if descriptions {
			return root.GenPowerShellCompletionWithDesc(out)
		}
		return root.GenPowerShellCompletion(out)
	}
}
