// Package delivery builds, signs and sends one webhook attempt and classifies its result. It holds plain
// Go values only: no Kubernetes types, no clients, no global state. The controller resolves endpoints
// and Secrets, calls Sender.Send, and records the Result.
package delivery
