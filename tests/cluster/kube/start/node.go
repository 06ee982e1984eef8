package main

// The node tier: a real node beside the control plane — containerd (with runc and the
// CNI plugins, from Debian's packages), kubelet, kube-scheduler and kube-proxy from the
// pinned Kubernetes module — so pods run on this machine. It changes the host (sysctls,
// iptables, a bridge, mounts), so it runs only when asked (--node), records what it
// changes first, and puts it back when it stops.
//
// kube-controller-manager runs in every tier (--controller-manager): namespaces finish
// deleting and garbage collection runs, as in a real cluster; it changes nothing on
// the host.

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The sysctls a node changes (kubelet, kube-proxy, the bridge plugin), restored on stop.
var nodeSysctls = []string{
	"kernel.panic",
	"kernel.panic_on_oops",
	"vm.overcommit_memory",
	"net.ipv4.ip_forward",
	"net.ipv4.conf.all.route_localnet",
	"net.netfilter.nf_conntrack_tcp_timeout_established",
	"net.netfilter.nf_conntrack_tcp_timeout_close_wait",
	"net.netfilter.nf_conntrack_max",
	"net.bridge.bridge-nf-call-iptables",
	"net.bridge.bridge-nf-call-ip6tables",
}

// What the node tier needs from Debian, and where it looks for it.
var nodePackages = map[string]string{
	"containerd":           "containerd",
	"runc":                 "runc",
	"ctr":                  "containerd",
	"iptables":             "iptables",
	"conntrack":            "conntrack",
	"/usr/lib/cni/bridge":  "containernetworking-plugins",
	"/usr/lib/cni/portmap": "containernetworking-plugins",
}

// The pod network of the one node, and the name of the pause image the tests import.
const (
	podCIDR    = "10.244.0.0/24"
	pauseImage = "stowage.test/pause:1"
)

type nodeTier struct {
	hostIP      string
	nodeName    string
	runDir      string // short: sockets live here
	sysctls     map[string]string
	iptables    []byte
	ip6tables   []byte
	containerd  *process
	restoreOnly bool
}

// hostAddress is the address pods reach this machine at: the source address of its
// default route.
func hostAddress() (string, error) {
	conn, err := net.Dial("udp", "192.0.2.254:9")
	if err != nil {
		return "", fmt.Errorf("no default route to find this machine's address: %w", err)
	}
	defer conn.Close()
	return conn.LocalAddr().(*net.UDPAddr).IP.String(), nil
}

func (s *stack) checkNodePrerequisites() error {
	if os.Geteuid() != 0 {
		return errors.New("the node tier runs containerd and a kubelet: it needs root")
	}
	var missing []string
	for tool, pkg := range nodePackages {
		if strings.HasPrefix(tool, "/") {
			if _, err := os.Stat(tool); err == nil {
				continue
			}
		} else if _, err := exec.LookPath(tool); err == nil {
			continue
		}
		missing = append(missing, pkg)
	}
	if len(missing) > 0 {
		return fmt.Errorf("the node tier needs Debian's %s: apt-get install --no-install-recommends containerd runc containernetworking-plugins iptables conntrack",
			strings.Join(uniq(missing), ", "))
	}
	for _, binary := range []string{"kubelet", "kube-scheduler", "kube-proxy"} {
		if _, err := os.Stat(filepath.Join(s.opts.bin, binary)); err != nil {
			return fmt.Errorf("%s is not built: run tests/cluster/build", binary)
		}
	}
	if _, err := os.Stat(s.opts.pauseImage); err != nil {
		return fmt.Errorf("the pause image %s is not built: run tests/cluster/build", s.opts.pauseImage)
	}
	return nil
}

func uniq(items []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, item := range items {
		if !seen[item] {
			seen[item] = true
			out = append(out, item)
		}
	}
	return out
}

// recordHost keeps what the node will change, so stop can put it back.
func (n *nodeTier) recordHost() error {
	n.sysctls = map[string]string{}
	for _, name := range nodeSysctls {
		value, err := os.ReadFile(sysctlPath(name))
		if err == nil {
			n.sysctls[name] = strings.TrimSpace(string(value))
		}
	}
	var err error
	if n.iptables, err = exec.Command("iptables-save").Output(); err != nil {
		return fmt.Errorf("iptables-save: %w", err)
	}
	n.ip6tables, _ = exec.Command("ip6tables-save").Output()
	return nil
}

// The tables a node writes rules into, each as it is when nothing is in it.
var emptyTables = map[string]string{
	"filter": "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n",
	"nat":    "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n",
	"mangle": "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n",
}

// completeTables is what restores the saved rules exactly: iptables-restore replaces
// only the tables its input names, and a host with no rules saves none, so each table
// a node writes into and the save lacks is given as empty.
func completeTables(saved []byte) []byte {
	out := append([]byte{}, saved...)
	for _, table := range []string{"filter", "nat", "mangle"} {
		if !bytes.Contains(saved, []byte("*"+table+"\n")) {
			out = append(out, emptyTables[table]...)
		}
	}
	return out
}

func sysctlPath(name string) string {
	return "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
}

// restoreHost puts back what the node changed: its containers and their network
// namespaces, the bridge, the kubelet's mounts, iptables and the sysctls.
func (s *stack) restoreHost(n *nodeTier) {
	if n == nil {
		return
	}
	// Mounts under the kubelet's and containerd's folders (pods' volumes, overlays).
	for _, root := range []string{s.path("node", "kubelet"), s.path("node", "containerd"), n.runDir} {
		unmountUnder(root)
	}
	// Every network namespace the CNI plugins made, and the bridge.
	if entries, err := os.ReadDir("/run/netns"); err == nil {
		for _, entry := range entries {
			if strings.HasPrefix(entry.Name(), "cni-") {
				_ = exec.Command("ip", "netns", "delete", entry.Name()).Run()
			}
		}
	}
	_ = exec.Command("ip", "link", "delete", "cni0").Run()
	for command, saved := range map[string][]byte{"iptables-restore": n.iptables, "ip6tables-restore": n.ip6tables} {
		restore := exec.Command(command)
		restore.Stdin = bytes.NewReader(completeTables(saved))
		if out, err := restore.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "start: %s: %v: %s\n", command, err, out)
		}
	}
	for name, value := range n.sysctls {
		if err := os.WriteFile(sysctlPath(name), []byte(value), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "start: restoring %s=%s: %v\n", name, value, err)
		}
	}
	_ = os.RemoveAll(n.runDir)
}

// unmountUnder unmounts everything mounted at or below root, deepest first.
func unmountUnder(root string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 4 && (fields[4] == root || strings.HasPrefix(fields[4], root+"/")) {
			points = append(points, fields[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		_ = syscall.Unmount(points[i], syscall.MNT_DETACH)
	}
}

// startContainerd runs containerd with a configuration of its own: its state under
// DIR/node, restrict_oom_score_adj (this machine's root cannot lower oom_score_adj),
// runc with cgroupfs, the CNI plugins from Debian, the locally imported pause image.
func (s *stack) startContainerd(n *nodeTier) error {
	root := s.path("node", "containerd")
	for _, dir := range []string{root, s.path("node", "cni", "net.d"), s.path("node", "cni", "data"), n.runDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
`, root, filepath.Join(n.runDir, "state"), n.socket(), pauseImage, s.path("node", "cni", "net.d"))
	if err := os.WriteFile(s.path("node", "containerd.toml"), []byte(config), 0o644); err != nil {
		return err
	}
	cni := fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "stowage-test",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}],
              "dataDir": %q}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, podCIDR, s.path("node", "cni", "data"))
	if err := os.WriteFile(s.path("node", "cni", "net.d", "10-stowage.conflist"), []byte(cni), 0o644); err != nil {
		return err
	}
	p, err := s.spawn("containerd", nil, "containerd", "--config", s.path("node", "containerd.toml"))
	if err != nil {
		return err
	}
	n.containerd = p
	if err := s.waitFor(p, "serving", func() error {
		return exec.Command("ctr", "--address", n.socket(), "version").Run()
	}); err != nil {
		return err
	}
	out, err := exec.Command("ctr", "--address", n.socket(), "-n", "k8s.io", "images", "import", s.opts.pauseImage).CombinedOutput()
	if err != nil {
		return fmt.Errorf("importing the pause image: %v: %s", err, out)
	}
	return nil
}

func (n *nodeTier) socket() string {
	return filepath.Join(n.runDir, "containerd.sock")
}

// startKubelet runs the kubelet as the admin, on containerd, with its folders under
// DIR/node, named after this machine (so the API server reaches it for logs and exec).
func (s *stack) startKubelet(n *nodeTier) error {
	config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failSwapOn: false
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://%s
address: 0.0.0.0
port: 10250
readOnlyPort: 0
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  imagefs.available: "1%%"
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
podLogsDir: %q
clusterDNS: []
syncFrequency: 10s
`, n.socket(), s.path("node", "pod-logs"))
	if err := os.WriteFile(s.path("node", "kubelet.yaml"), []byte(config), 0o644); err != nil {
		return err
	}
	_, err := s.spawn("kubelet", nil,
		filepath.Join(s.opts.bin, "kubelet"),
		"--config", s.path("node", "kubelet.yaml"),
		"--kubeconfig", s.path("kubeconfig"),
		"--root-dir", s.path("node", "kubelet"),
		"--node-ip", n.hostIP,
		"--hostname-override", n.nodeName,
	)
	return err
}

func (s *stack) startScheduler() error {
	_, err := s.spawn("kube-scheduler", nil,
		filepath.Join(s.opts.bin, "kube-scheduler"),
		"--kubeconfig", s.path("kubeconfig"),
		"--leader-elect=false",
		"--secure-port=0",
	)
	return err
}

func (s *stack) startKubeProxy(n *nodeTier) error {
	config := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %q
mode: iptables
clusterCIDR: %q
hostnameOverride: %q
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
conntrack:
  maxPerCore: 0
`, s.path("kubeconfig"), podCIDR, n.nodeName)
	if err := os.WriteFile(s.path("node", "kube-proxy.yaml"), []byte(config), 0o644); err != nil {
		return err
	}
	_, err := s.spawn("kube-proxy", nil,
		filepath.Join(s.opts.bin, "kube-proxy"),
		"--config", s.path("node", "kube-proxy.yaml"),
	)
	return err
}

// startControllerManager runs kube-controller-manager as the admin: namespaces finish
// deleting, garbage collection runs, ServiceAccounts and Deployments' pods appear.
func (s *stack) startControllerManager(pki *pkiFiles) error {
	_, err := s.spawn("kube-controller-manager", nil,
		filepath.Join(s.opts.bin, "kube-controller-manager"),
		"--kubeconfig", s.path("kubeconfig"),
		"--root-ca-file", pki.caCert,
		"--service-account-private-key-file", pki.saPrivate,
		"--leader-elect=false",
		"--secure-port=0",
		"--controllers=*",
		"--cluster-cidr", "10.244.0.0/16",
		"--allocate-node-cidrs=false",
	)
	return err
}

// startNode brings up the node and waits for it to be Ready.
func (s *stack) startNode(n *nodeTier) error {
	if err := n.recordHost(); err != nil {
		return err
	}
	// The kubelet and kube-proxy expect these; set here so stop restores them too.
	for name, value := range map[string]string{"net.ipv4.ip_forward": "1"} {
		_ = os.WriteFile(sysctlPath(name), []byte(value), 0o644)
	}
	_ = exec.Command("modprobe", "br_netfilter").Run()
	if err := s.startContainerd(n); err != nil {
		return err
	}
	if err := s.startKubelet(n); err != nil {
		return err
	}
	if err := s.startScheduler(); err != nil {
		return err
	}
	if err := s.startKubeProxy(n); err != nil {
		return err
	}
	kubelet := s.processes[len(s.processes)-3]
	return s.waitFor(kubelet, "Ready", func() error {
		body, err := s.request("GET", "/api/v1/nodes/"+n.nodeName, "", nil)
		if err != nil {
			return err
		}
		if !bytes.Contains(body, []byte(`"type":"Ready","status":"True"`)) {
			return errors.New("the node is not Ready")
		}
		return nil
	})
}

// stopNode ends the pods' containers before containerd, so no shim outlives it.
func (s *stack) stopNode(n *nodeTier) {
	if n == nil || n.containerd == nil {
		return
	}
	ctr := func(args ...string) *exec.Cmd {
		return exec.Command("ctr", append([]string{"--address", n.socket(), "-n", "k8s.io"}, args...)...)
	}
	if out, err := ctr("tasks", "ls", "-q").Output(); err == nil {
		for _, id := range strings.Fields(string(out)) {
			_ = ctr("tasks", "kill", "-s", "SIGKILL", id).Run()
		}
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			out, err := ctr("tasks", "ls", "-q").Output()
			if err != nil || len(bytes.TrimSpace(out)) == 0 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// Shims are started by containerd in groups of their own: find ours by socket.
	if out, err := exec.Command("pgrep", "-f", "containerd-shim.*"+n.runDir).Output(); err == nil {
		for _, pid := range strings.Fields(string(out)) {
			_ = exec.Command("kill", "-9", pid).Run()
		}
	}
	if out, err := exec.Command("pgrep", "-f", "containerd-shim-runc-v2.*-address "+n.socket()).Output(); err == nil {
		for _, pid := range strings.Fields(string(out)) {
			_ = exec.Command("kill", "-9", pid).Run()
		}
	}
}
