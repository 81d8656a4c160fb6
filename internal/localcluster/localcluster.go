// Package localcluster runs the operator the way a cluster would, on this machine: a real kube-apiserver
// and etcd (the envtest binaries that hack/setup-envtest.sh builds), the CRDs from config/crd, and the
// built manager binary as a separate process that authenticates as its own user, bound to the generated
// RBAC only. The end-to-end tests and the demo use it.
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	webhooksv1alpha1 "github.com/1flow/webhook-operator/api/v1alpha1"
)

// ManagerUser is the name the manager process authenticates as.
const ManagerUser = "system:serviceaccount:webhook-operator-system:webhook-operator-controller-manager"

// LeaderElectionNamespace holds the manager's leader election Lease.
const LeaderElectionNamespace = "webhook-operator-system"

// Scheme knows the core types and the operator's API.
var Scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(Scheme))
	utilruntime.Must(webhooksv1alpha1.AddToScheme(Scheme))
}

// Cluster is a running control plane with the CRDs installed.
type Cluster struct {
	Env    *envtest.Environment
	Config *rest.Config
	// Client acts as the cluster administrator.
	Client client.Client
	root   string
}

// Start boots kube-apiserver and etcd and installs the CRDs. root is the repository root.
func Start(root string) (*Cluster, error) {
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: AssetsDir(),
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start control plane (run hack/setup-envtest.sh first): %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: Scheme})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	return &Cluster{Env: env, Config: cfg, Client: c, root: root}, nil
}

// Stop shuts the control plane down.
func (c *Cluster) Stop() error { return c.Env.Stop() }

// AssetsDir returns KUBEBUILDER_ASSETS, or else the folder hack/setup-envtest.sh fills.
func AssetsDir() string {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	matches, _ := filepath.Glob(filepath.Join(home, ".local", "share", "kubebuilder-envtest", "k8s", "*"))
	for _, dir := range matches {
		if _, err := os.Stat(filepath.Join(dir, "kube-apiserver")); err == nil {
			return dir
		}
	}
	return ""
}

// BuildManager compiles cmd/manager into dir and returns the binary's path.
func BuildManager(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "manager")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/manager")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/manager: %w\n%s", err, out)
	}
	return bin, nil
}

// ManagerKubeconfig creates the manager's user, grants it exactly the generated ClusterRole
// (config/rbac/role.yaml) and the leader election Role, and writes its kubeconfig into dir.
func (c *Cluster) ManagerKubeconfig(ctx context.Context, dir string) (string, error) {
	user, err := c.Env.AddUser(envtest.User{Name: ManagerUser}, nil)
	if err != nil {
		return "", fmt.Errorf("add manager user: %w", err)
	}
	if err := c.grantRBAC(ctx); err != nil {
		return "", err
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "manager.kubeconfig")
	return path, os.WriteFile(path, kubeconfig, 0o600)
}

func (c *Cluster) grantRBAC(ctx context.Context) error {
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: ManagerUser}}

	clusterRole := &rbacv1.ClusterRole{}
	if err := readYAML(filepath.Join(c.root, "config", "rbac", "role.yaml"), clusterRole); err != nil {
		return err
	}
	role := &rbacv1.Role{}
	if err := readYAML(filepath.Join(c.root, "config", "rbac", "leader_election_role.yaml"), role); err != nil {
		return err
	}
	role.Namespace = LeaderElectionNamespace

	objects := []client.Object{
		clusterRole,
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "webhook-operator-manager"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole.Name},
			Subjects:   subject,
		},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: LeaderElectionNamespace}},
		role,
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "webhook-operator-leader-election", Namespace: LeaderElectionNamespace},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
			Subjects:   subject,
		},
	}
	for _, obj := range objects {
		if err := c.Client.Create(ctx, obj); err != nil {
			return fmt.Errorf("create %T %s: %w", obj, obj.GetName(), err)
		}
	}
	return nil
}

func readYAML(path string, into any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	return nil
}

// Manager is a running manager process.
type Manager struct {
	cmd    *exec.Cmd
	done   chan error
	Probes string
}

// StartManager runs the binary with the kubeconfig and extra flags, writing its log to logFile, and
// waits until it reports ready.
func StartManager(ctx context.Context, binary, kubeconfig string, logFile *os.File, args ...string) (*Manager, error) {
	probes, err := FreeAddress()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, append([]string{
		"--kubeconfig=" + kubeconfig,
		"--metrics-bind-address=0",
		"--health-probe-bind-address=" + probes,
		"--leader-election-namespace=" + LeaderElectionNamespace,
		// The receivers of tests and the demo listen on loopback, which the egress policy blocks by default.
		"--allowed-cidrs=127.0.0.0/8",
	}, args...)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start manager: %w", err)
	}
	m := &Manager{cmd: cmd, done: make(chan error, 1), Probes: probes}
	go func() { m.done <- cmd.Wait() }()

	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-m.done:
			return false, fmt.Errorf("manager exited before it was ready: %v", err)
		default:
		}
		resp, err := http.Get("http://" + probes + "/readyz")
		if err != nil {
			return false, nil
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		_ = m.Kill()
		return nil, err
	}
	return m, nil
}

// PID returns the manager's process id, for example to read its memory use from /proc.
func (m *Manager) PID() int { return m.cmd.Process.Pid }

// Stop sends SIGTERM and waits for a clean exit.
func (m *Manager) Stop(timeout time.Duration) error {
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case err := <-m.done:
		return err
	case <-time.After(timeout):
		_ = m.cmd.Process.Kill()
		return errors.New("manager did not exit after SIGTERM")
	}
}

// Kill ends the process at once, as a crash would.
func (m *Manager) Kill() error {
	if err := m.cmd.Process.Kill(); err != nil {
		return err
	}
	// An exit error only says the process died of SIGKILL, which is what was asked for.
	var exitErr *exec.ExitError
	if err := <-m.done; err != nil && !errors.As(err, &exitErr) {
		return err
	}
	return nil
}

// FreeAddress returns a loopback address with a port that was free a moment ago.
func FreeAddress() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String(), nil
}
