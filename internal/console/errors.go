package console

import (
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// apiProblem is an API error as the user should read it, with the HTTP status the console answers with.
type apiProblem struct {
	status  int
	message string
}

// describeAPIError explains what the user's request to the API server could not do: verb and resource
// say what was attempted, namespace where ("" for all namespaces). A refusal by RBAC reads "you may not
// patch documentevents in namespace acme", since that is what the user needs to ask an administrator for.
func describeAPIError(err error, verb, resource, namespace string) apiProblem {
	where := "in namespace " + namespace
	if namespace == "" {
		where = "in all namespaces"
	}
	switch {
	case apierrors.IsForbidden(err):
		return apiProblem{http.StatusForbidden, fmt.Sprintf(
			"you may not %s %s %s: your Kubernetes user lacks the RBAC permission (the console acts with your kubeconfig's credentials)",
			verb, resource, where)}
	case apierrors.IsUnauthorized(err):
		return apiProblem{http.StatusUnauthorized,
			"the API server did not accept your credentials: log in again (check your kubeconfig) and restart the console"}
	case apierrors.IsNotFound(err):
		return apiProblem{http.StatusNotFound, fmt.Sprintf("not found: %v", err)}
	}
	return apiProblem{http.StatusBadGateway, fmt.Sprintf("could not %s %s %s: %v", verb, resource, where, err)}
}
