package controller

import (
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// DefaultStatusFlushInterval bounds how often one WebhookEndpoint's delivery summary is written.
const DefaultStatusFlushInterval = time.Second

// Shared is the state both controllers use: the Secret resolver and the endpoint delivery summary.
type Shared struct {
	resolver *endpointResolver
	stats    *endpointStats
}

// NewShared builds the shared state. metadata reads Secret metadata from the manager cache; live reads
// Secret values from the API server (the manager's API reader), so Secret values are never cached
// cluster-wide.
func NewShared(metadata, live client.Reader, statusFlushInterval time.Duration) *Shared {
	return &Shared{
		resolver: newEndpointResolver(metadata, live),
		stats:    newEndpointStats(statusFlushInterval),
	}
}
