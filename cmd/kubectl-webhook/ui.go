package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/1flow/webhook-operator/internal/console"
)

// exposeFlag must accompany a non-loopback --address: its name says what it does.
const exposeFlag = "expose-to-network"

// uiOptions are the flags of ui.
type uiOptions struct {
	*options
	cmd           *cobra.Command
	allNamespaces bool
	address       string
	port          int
	noBrowser     bool
	expose        bool
	// openBrowser opens the URL in the user's browser; tests replace it.
	openBrowser func(url string) error
}

func newUICommand(o *options) *cobra.Command {
	uo := &uiOptions{options: o, openBrowser: openInBrowser}
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Open a web console of the endpoints and events of a namespace",
		Long: `Start a local web console: the webhook settings page of the contract (callback URL, signing Secret,
Send test webhook) and the state of every WebhookEndpoint and DocumentEvent, with Redeliver buttons.

The console runs on this machine, on 127.0.0.1 and a random port unless --address and --port say
otherwise, and acts with your kubeconfig's credentials: it can do what your RBAC allows and nothing
more, and it never reads Secrets. Nothing is installed in the cluster.

It prints a URL with a random token and opens it in your browser (--no-browser only prints it). The
token is exchanged for a cookie on the first visit; requests without it are refused, and so is every
change without the CSRF token of the console's own pages. Press Ctrl-C to stop it.

--address accepts only a loopback address unless --` + exposeFlag + ` is also given: anyone who can
reach a non-loopback address and learns the URL acts with your credentials.`,
		Example: `  # The console of namespace acme, opened in the browser
  kubectl webhook ui -n acme

  # All namespaces, on a fixed port, without opening a browser
  kubectl webhook ui -A --port 8089 --no-browser`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError(cmd, "ui takes no arguments")
			}
			return nil
		},
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE:              runOptions(uo),
	}
	cmd.Flags().BoolVarP(&uo.allNamespaces, "all-namespaces", "A", false, "Show the endpoints and events of all namespaces")
	cmd.Flags().StringVar(&uo.address, "address", "127.0.0.1", "IP address to listen on; loopback only, unless --"+exposeFlag)
	cmd.Flags().IntVar(&uo.port, "port", 0, "Port to listen on; 0 picks a free one")
	cmd.Flags().BoolVar(&uo.noBrowser, "no-browser", false, "Print the URL without opening a browser")
	cmd.Flags().BoolVar(&uo.expose, exposeFlag, false,
		"Allow a non-loopback --address: whoever reaches it with the URL's token acts with your Kubernetes credentials")
	return cmd
}

// Complete keeps the command for usage errors; ui takes no arguments (Args made sure of it).
func (uo *uiOptions) Complete(cmd *cobra.Command, _ []string) error {
	uo.cmd = cmd
	return nil
}

// Validate checks the port and refuses a non-loopback address that the user did not expose on purpose.
func (uo *uiOptions) Validate() error {
	if uo.port < 0 || uo.port > 65535 {
		return usageError(uo.cmd, "--port must be between 0 and 65535, not %d", uo.port)
	}
	ip := net.ParseIP(uo.address)
	if ip == nil {
		return usageError(uo.cmd, "--address must be an IP address such as 127.0.0.1 or ::1, not %q", uo.address)
	}
	if !ip.IsLoopback() && !uo.expose {
		return usageError(uo.cmd, "--address %s is not a loopback address: the console acts with your Kubernetes "+
			"credentials, so anyone who reaches it with the URL could too. Pass --%s as well if you mean it", uo.address, exposeFlag)
	}
	return nil
}

// Run serves the console until the context ends (Ctrl-C).
func (uo *uiOptions) Run(ctx context.Context) error {
	ns, _, err := uo.namespace()
	if err != nil {
		return err
	}
	if uo.allNamespaces {
		ns = ""
	}
	c, err := uo.client()
	if err != nil {
		return err
	}
	listener, err := net.Listen("tcp", net.JoinHostPort(uo.address, strconv.Itoa(uo.port)))
	if err != nil {
		return fmt.Errorf("listen on %s port %d (choose another with --port): %w", uo.address, uo.port, err)
	}
	server, err := console.New(console.Options{Client: c, Namespace: ns}, listener.Addr())
	if err != nil {
		_ = listener.Close()
		return err
	}
	scope := "namespace " + ns
	if ns == "" {
		scope = "all namespaces"
	}
	out := uo.streams.Out
	if _, err := fmt.Fprintf(out, "Web console of %s: %s\nThe URL carries the access token: do not share it. Press Ctrl-C to stop.\n",
		scope, server.URL()); err != nil {
		return err
	}
	if !uo.noBrowser {
		if err := uo.openBrowser(server.URL()); err != nil {
			_, _ = fmt.Fprintf(uo.streams.ErrOut, "Could not open a browser (%v); open the URL above yourself.\n", err)
		}
	}
	return server.Serve(ctx, listener)
}

// openInBrowser asks the desktop to open the URL, without waiting for the browser to exit.
func openInBrowser(url string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", url)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
	default:
		cmd = exec.Command("xdg-open", url)
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }() // reap the opener; the browser outlives it
	return nil
}
