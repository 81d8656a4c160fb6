// Package webhookops holds what the kubectl plugin's commands and its web console (`kubectl webhook
// ui`) both do with the operator's objects: list them in pages, count the deliveries per endpoint the
// way the operator attributes them, and build the annotation patches that request a test webhook or a
// redelivery. Both front ends use it, so that a count or a request means the same in either.
package webhookops
