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
	// certDirs are the API server certificate folders that StopAPIServer created; Stop removes them.
	certDirs []string
}

// Start boots kube-apiserver and etcd and installs the CRDs. root is the repository root.
func Start(root string) (*Cluster, error) {
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: AssetsDir(),
	}
	// Without a grace period for watches, kube-apiserver never finishes a graceful shutdown while a
	// client (a manager) holds a watch open, and envtest kills it after its stop timeout (20 s). With
	// one, SIGTERM ends the watches and the process within about a second, as StopAPIServer needs.
	env.ControlPlane.GetAPIServer().Configure().Set("shutdown-watch-termination-grace-period", "2s")
	cfg, err := env.Start()
	if err != nil {
		// envtest leaves kube-apiserver and etcd running when, for example, a CRD does not install.
		_ = env.Stop()
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
func (c *Cluster) Stop() error {
	err := c.Env.Stop()
	for _, dir := range c.certDirs {
		_ = os.RemoveAll(dir)
	}
	return err
}

// StopAPIServer stops kube-apiserver (SIGTERM, as a rolling restart would) and leaves etcd running.
// StartAPIServer starts it again on the same address, with the same serving certificate and client CA,
// so that every client, the manager's kubeconfig included, reconnects without new credentials.
//
// envtest's APIServer.Stop deletes a certificate folder that envtest created itself, and a later Start
// would then make a new serving CA that no existing kubeconfig trusts. So the folder is copied first and
// the restarted server uses the copy; envtest does not delete a folder it was given.
func (c *Cluster) StopAPIServer() error {
	s := c.Env.ControlPlane.APIServer
	if s == nil || s.CertDir == "" {
		return errors.New("the API server is not running")
	}
	keep, err := os.MkdirTemp("", "localcluster-apiserver-")
	if err != nil {
		return err
	}
	c.certDirs = append(c.certDirs, keep)
	if err := copyFiles(s.CertDir, keep); err != nil {
		return fmt.Errorf("keep the API server certificates: %w", err)
	}
	err = s.Stop()
	// Also after a failed Stop: envtest has killed the process then, and a Start can still follow.
	s.CertDir = keep
	if err != nil {
		return fmt.Errorf("stop kube-apiserver: %w", err)
	}
	return nil
}

// StartAPIServer starts the API server that StopAPIServer stopped and waits until it serves requests.
// healthy, when not nil, runs as soon as the process answers /healthz, before the wait for the API.
func (c *Cluster) StartAPIServer(ctx context.Context, healthy func()) error {
	if err := c.Env.ControlPlane.APIServer.Start(); err != nil {
		return fmt.Errorf("start kube-apiserver: %w", err)
	}
	if healthy != nil {
		healthy()
	}
	// Start returns once /healthz answers; wait until the API, the CRDs included, serves requests.
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		return c.Client.List(ctx, &webhooksv1alpha1.WebhookEndpointList{}, client.Limit(1)) == nil, nil
	})
}

// copyFiles copies the regular files of one folder into another.
func copyFiles(from, to string) error {
	entries, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

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
