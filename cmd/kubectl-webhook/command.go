package main

import (
	"context"

	"github.com/spf13/cobra"
)

// commandOptions is the shape every command follows, as kubectl's own commands do: one options struct
// per command holds its flags and arguments, and its RunE (runOptions) calls, in this order,
//
//   - Complete, which takes the arguments and what the command line says about the flags (whether one
//     was given). It reads nothing from the cluster, and nothing else that could fail.
//   - Validate, which rejects wrong arguments and flag combinations before anything is read or written.
//   - Run, which does the work: resolves the namespace, talks to the API server, prints the result.
//
// The namespace and the client are resolved in Run rather than in Complete, unlike in kubectl, so that a
// usage error is reported as one even when the kubeconfig cannot be loaded, and so that send --dry-run
// can fall back to local checks when it cannot be.
type commandOptions interface {
	Complete(cmd *cobra.Command, args []string) error
	Validate() error
	Run(ctx context.Context) error
}

// wrapOptions, when set, wraps the options of every command as the command is built. Tests use it to
// observe that each command delegates to its options.
var wrapOptions func(commandOptions) commandOptions

// runOptions returns the RunE of a command: Complete, Validate and Run of its options, stopping at the
// first error.
func runOptions(co commandOptions) func(*cobra.Command, []string) error {
	if wrapOptions != nil {
		co = wrapOptions(co)
	}
	return func(cmd *cobra.Command, args []string) error {
		if err := co.Complete(cmd, args); err != nil {
			return err
		}
		if err := co.Validate(); err != nil {
			return err
		}
		return co.Run(cmd.Context())
	}
}
