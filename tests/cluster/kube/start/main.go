// Command start brings up a real Kubernetes control plane for stowage's tests: etcd and
// kube-apiserver on 127.0.0.1 (as controller-runtime's envtest does), with
// certificates generated for the run, and with --controller-manager
// kube-controller-manager beside them. It installs Velero's CRDs from the real velero
// binary, creates the `velero` namespace and, with --velero, runs `velero server` out
// of cluster against an S3 emulator. With --node it also runs a node on this machine
// (node.go): containerd, kubelet, kube-scheduler and kube-proxy, so pods run.
//
// Usage: start [flags] DIR
//
// It writes DIR/kubeconfig (admin) and DIR/env (shell export lines), prints "ready" on a
// line of its own, and runs until SIGTERM or SIGINT, then stops everything it started.
// If one of its processes dies, it stops the rest and exits 1.
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

type options struct {
	dir        string
	bin        string
	pluginDir  string
	velero     bool
	s3URL      string
	s3Access   string
	s3Secret   string
	s3Bucket   string
	s3Bucket2  string
	veleroNS   string
	apiTimeout time.Duration
	// controllerManager runs kube-controller-manager; node also runs a node (see node.go).
	controllerManager bool
	node              bool
	pauseImage        string
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "", "folder holding kube-apiserver, etcd and velero (required)")
	flag.StringVar(&o.pluginDir, "plugin-dir", "", "folder holding velero-plugin-for-aws (needed with --velero; written to DIR/env)")
	flag.BoolVar(&o.velero, "velero", false, "also run `velero server` against the S3 emulator given by the --s3-* flags")
	flag.StringVar(&o.s3URL, "s3-url", "", "the S3 emulator's endpoint, as Velero's s3Url")
	flag.StringVar(&o.s3Access, "s3-access-key", "", "an access key the S3 emulator accepts")
	flag.StringVar(&o.s3Secret, "s3-secret-key", "", "its secret key")
	flag.StringVar(&o.s3Bucket, "s3-bucket", "", "an empty bucket")
	flag.StringVar(&o.s3Bucket2, "s3-bucket-2", "", "a second empty bucket")
	flag.StringVar(&o.veleroNS, "velero-namespace", "velero", "the namespace velero server watches")
	flag.DurationVar(&o.apiTimeout, "timeout", 2*time.Minute, "how long the control plane may take to become ready")
	flag.BoolVar(&o.controllerManager, "controller-manager", false, "also run kube-controller-manager (namespaces finish deleting, garbage collection runs)")
	flag.BoolVar(&o.node, "node", false, "also run a node: containerd, kubelet, kube-scheduler, kube-proxy (changes the host; restored on stop)")
	flag.StringVar(&o.pauseImage, "pause-image", "", "with --node: the pause image as a docker-archive")
	flag.Parse()
	if flag.NArg() != 1 || o.bin == "" {
		fmt.Fprintln(os.Stderr, "usage: start --bin DIR [--controller-manager] [--node --pause-image TAR] [--velero --plugin-dir DIR --s3-url URL ...] OUT_DIR")
		os.Exit(2)
	}
	o.dir = flag.Arg(0)
	if o.velero && (o.pluginDir == "" || o.s3URL == "" || o.s3Access == "" || o.s3Secret == "" || o.s3Bucket == "" || o.s3Bucket2 == "") {
		fmt.Fprintln(os.Stderr, "start: --velero needs --plugin-dir and every --s3-* flag")
		os.Exit(2)
	}

	// Children get SIGKILL when this thread dies (Pdeathsig is tied to the thread that
	// started them), so a killed starter leaves nothing behind.
	runtime.LockOSThread()

	s := &stack{opts: o}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	err := s.start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "start: %v\n", err)
		s.stop()
		os.Exit(1)
	}
	fmt.Println("ready")
	code := 0
	select {
	case <-signals:
	case p := <-s.exited:
		fmt.Fprintf(os.Stderr, "start: %s exited: %v; see %s\n", p.name, p.err, p.log)
		code = 1
	}
	s.stop()
	os.Exit(code)
}

type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

type stack struct {
	opts      options
	node      *nodeTier
	processes []*process
	exited    chan *process
	client    *http.Client
	etcdURL   string
	apiURL    string
}

func (s *stack) path(parts ...string) string {
	return filepath.Join(append([]string{s.opts.dir}, parts...)...)
}

func (s *stack) start() error {
	s.exited = make(chan *process, 8)
	dir, err := filepath.Abs(s.opts.dir)
	if err != nil {
		return err
	}
	s.opts.dir = dir
	for _, sub := range []string{"etcd", "pki", "velero"} {
		if err := os.RemoveAll(s.path(sub)); err != nil {
			return err
		}
	}
	for _, sub := range []string{"pki", "logs", "velero"} {
		if err := os.MkdirAll(s.path(sub), 0o700); err != nil {
			return err
		}
	}
	if s.opts.node {
		if err := s.checkNodePrerequisites(); err != nil {
			return err
		}
		host, err := hostAddress()
		if err != nil {
			return err
		}
		name, err := os.Hostname()
		if err != nil {
			return err
		}
		s.node = &nodeTier{
			hostIP:   host,
			nodeName: strings.ToLower(name),
			runDir:   fmt.Sprintf("/run/stowage-node-%d", os.Getpid()),
		}
		for _, sub := range []string{"node"} {
			if err := os.RemoveAll(s.path(sub)); err != nil {
				return err
			}
		}
	}
	pki, err := makePKI(s.path("pki"))
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	if err := s.startEtcd(); err != nil {
		return err
	}
	if err := s.startAPIServer(pki); err != nil {
		return err
	}
	if err := s.writeKubeconfig(pki); err != nil {
		return err
	}
	if err := s.installCRDs(); err != nil {
		return fmt.Errorf("Velero's CRDs: %w", err)
	}
	if err := s.createNamespace(s.opts.veleroNS); err != nil {
		return err
	}
	if s.opts.controllerManager || s.opts.node {
		if err := s.startControllerManager(pki); err != nil {
			return err
		}
	}
	if s.opts.node {
		if err := s.startNode(s.node); err != nil {
			return fmt.Errorf("the node: %w", err)
		}
	}
	if s.opts.velero {
		if err := s.startVelero(); err != nil {
			return err
		}
	}
	return s.writeEnv()
}

func (s *stack) spawn(name string, env []string, args ...string) (*process, error) {
	logPath := s.path("logs", name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	s.processes = append(s.processes, p)
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
		s.exited <- p
	}()
	return p, nil
}

// stop ends the processes in reverse order of start: Velero, then the API server, then
// etcd, each with SIGTERM and, after ten seconds, SIGKILL.
func (s *stack) stop() {
	for i := len(s.processes) - 1; i >= 0; i-- {
		p := s.processes[i]
		if s.node != nil && p == s.node.containerd {
			// The pods' containers end before containerd does.
			s.stopNode(s.node)
		}
		select {
		case <-p.done:
			continue
		default:
		}
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	_ = os.RemoveAll(s.path("etcd"))
	if s.node != nil {
		s.restoreHost(s.node)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitFor polls check until it succeeds, the process exits, or the deadline passes.
func (s *stack) waitFor(p *process, what string, check func() error) error {
	deadline := time.Now().Add(s.opts.apiTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited while starting (%v); see %s", p.name, p.err, p.log)
		default:
		}
		if last = check(); last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s was not %s within %s (last: %v); see %s", p.name, what, s.opts.apiTimeout, last, p.log)
}

func (s *stack) startEtcd() error {
	clientPort, err := freePort()
	if err != nil {
		return err
	}
	peerPort, err := freePort()
	if err != nil {
		return err
	}
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	p, err := s.spawn("etcd", nil,
		filepath.Join(s.opts.bin, "etcd"),
		"--name", "stack",
		"--data-dir", s.path("etcd"),
		"--listen-client-urls", clientURL,
		"--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "stack="+peerURL,
		// Test data: durability does not matter, speed does.
		"--unsafe-no-fsync",
		"--log-level", "warn",
	)
	if err != nil {
		return err
	}
	err = s.waitFor(p, "healthy", func() error {
		resp, err := http.Get(clientURL + "/health")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.etcdURL = clientURL
	return nil
}

func (s *stack) startAPIServer(pki *pkiFiles) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	s.apiURL = fmt.Sprintf("https://127.0.0.1:%d", port)
	if err := os.WriteFile(s.path("audit-policy.yaml"), []byte(auditPolicy), 0o644); err != nil {
		return err
	}
	// With a node, pods reach the API server through the `kubernetes` Service: it
	// listens on this machine's address too, and keeps the Service's endpoints there.
	bind, advertise, reconciler := "127.0.0.1", "127.0.0.1", "none"
	if s.node != nil {
		bind, advertise, reconciler = "0.0.0.0", s.node.hostIP, "lease"
	}
	p, err := s.spawn("kube-apiserver", nil,
		filepath.Join(s.opts.bin, "kube-apiserver"),
		"--etcd-servers", s.etcdURL,
		"--bind-address", bind,
		"--advertise-address", advertise,
		"--kubelet-preferred-address-types", "InternalIP",
		"--secure-port", fmt.Sprint(port),
		"--cert-dir", s.path("pki"),
		"--tls-cert-file", pki.serverCert,
		"--tls-private-key-file", pki.serverKey,
		"--client-ca-file", pki.caCert,
		"--service-cluster-ip-range", "10.0.0.0/24",
		"--service-account-issuer", s.apiURL,
		"--service-account-key-file", pki.saPublic,
		"--service-account-signing-key-file", pki.saPrivate,
		"--authorization-mode", "RBAC",
		"--endpoint-reconciler-type", reconciler,
		"--profiling=false",
		// Who wrote what, when, in the server's own order: the tests read it to prove
		// that only the Lease holder writes.
		"--audit-policy-file", s.path("audit-policy.yaml"),
		"--audit-log-path", s.path("audit.log"),
		"--audit-log-format", "json",
		"--audit-log-maxsize", "0",
	)
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(pki.adminCert, pki.adminKey)
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(pki.caCert)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	s.client = &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs:      roots,
			Certificates: []tls.Certificate{cert},
		}},
	}
	return s.waitFor(p, "ready", func() error {
		_, err := s.request("GET", "/readyz", "", nil)
		return err
	})
}

// auditPolicy records writes to what stowage manages (Velero's kinds, Secrets) with
// their metadata, and Lease writes with their bodies (the holder named in each);
// nothing else.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: RequestResponse
  verbs: ["create", "update", "patch", "delete"]
  resources:
  - group: coordination.k8s.io
    resources: ["leases"]
- level: Metadata
  verbs: ["create", "update", "patch", "delete"]
  resources:
  - group: velero.io
  - group: ""
    resources: ["secrets"]
- level: None
`

// request sends one request to the API server as the admin and returns the body of a
// 2xx answer.
func (s *stack) request(method, path, contentType string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(context.Background(), method, s.apiURL+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return answer, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(answer)))
	}
	return answer, nil
}

func (s *stack) writeKubeconfig(pki *pkiFiles) error {
	read := func(path string) (string, error) {
		data, err := os.ReadFile(path)
		return base64.StdEncoding.EncodeToString(data), err
	}
	ca, err := read(pki.caCert)
	if err != nil {
		return err
	}
	cert, err := read(pki.adminCert)
	if err != nil {
		return err
	}
	key, err := read(pki.adminKey)
	if err != nil {
		return err
	}
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: stack
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: stack
  context:
    cluster: stack
    user: admin
current-context: stack
`, s.apiURL, ca, cert, key)
	return os.WriteFile(s.path("kubeconfig"), []byte(kubeconfig), 0o600)
}

// installCRDs applies what `velero install --crds-only --dry-run -o json` prints, with
// server-side apply, and waits until velero.io/v1 serves the kinds stowage uses.
func (s *stack) installCRDs() error {
	cmd := exec.Command(filepath.Join(s.opts.bin, "velero"), "install", "--crds-only", "--dry-run", "-o", "json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("velero install --crds-only: %v: %s", err, stderr.String())
	}
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		return fmt.Errorf("velero install --crds-only printed no JSON list: %w", err)
	}
	if len(list.Items) == 0 {
		return errors.New("velero install --crds-only printed no CRDs")
	}
	for _, item := range list.Items {
		var meta struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(item, &meta); err != nil {
			return err
		}
		path := "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/" + meta.Metadata.Name + "?fieldManager=velero-install&force=true"
		if _, err := s.request("PATCH", path, "application/apply-patch+yaml", item); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(s.opts.apiTimeout)
	for {
		body, err := s.request("GET", "/apis/velero.io/v1", "", nil)
		if err == nil {
			served := string(body)
			ok := true
			for _, plural := range []string{"backupstoragelocations", "volumesnapshotlocations", "schedules", "backups"} {
				ok = ok && strings.Contains(served, `"name":"`+plural+`"`)
			}
			if ok {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("velero.io/v1 not served within %s", s.opts.apiTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *stack) createNamespace(name string) error {
	body := fmt.Sprintf(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":%q}}`, name)
	_, err := s.request("PATCH", "/api/v1/namespaces/"+name+"?fieldManager=start", "application/apply-patch+yaml", []byte(body))
	return err
}

// startVelero runs `velero server` out of cluster, Velero's own "run locally" mode. The
// process's default AWS credentials are the emulator's, for locations without a
// credential of their own; a location's own Secret is read by the server itself.
func (s *stack) startVelero() error {
	credentials := s.path("velero", "credentials")
	ini := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", s.opts.s3Access, s.opts.s3Secret)
	if err := os.WriteFile(credentials, []byte(ini), 0o600); err != nil {
		return err
	}
	metricsPort, err := freePort()
	if err != nil {
		return err
	}
	profilerPort, err := freePort()
	if err != nil {
		return err
	}
	p, err := s.spawn("velero", []string{
		"AWS_SHARED_CREDENTIALS_FILE=" + credentials,
		// Never ask a cloud metadata address for credentials.
		"AWS_EC2_METADATA_DISABLED=true",
	},
		filepath.Join(s.opts.bin, "velero"), "server",
		"--kubeconfig", s.path("kubeconfig"),
		"--namespace", s.opts.veleroNS,
		"--plugin-dir", s.opts.pluginDir,
		"--metrics-address", fmt.Sprintf("127.0.0.1:%d", metricsPort),
		"--profiler-address", fmt.Sprintf("127.0.0.1:%d", profilerPort),
	)
	if err != nil {
		return err
	}
	// Its controllers' workers start only once the manager did (which fails, for one,
	// when another Velero holds controller-runtime's metrics port, :8080).
	return s.waitFor(p, "running its controllers", func() error {
		logged, err := os.ReadFile(p.log)
		if err != nil {
			return err
		}
		if !bytes.Contains(logged, []byte(`msg="Starting workers" controller=backup-storage-location`)) {
			return errors.New("the location controller has not started")
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

func (s *stack) writeEnv() error {
	var env strings.Builder
	line := func(name, value string) {
		fmt.Fprintf(&env, "export %s='%s'\n", name, strings.ReplaceAll(value, "'", `'\''`))
	}
	line("KUBECONFIG", s.path("kubeconfig"))
	if s.node != nil {
		line("NODE_NAME", s.node.nodeName)
		line("NODE_IP", s.node.hostIP)
		line("CONTAINERD_ADDRESS", s.node.socket())
	}
	line("VELERO", filepath.Join(s.opts.bin, "velero"))
	line("VELERO_NAMESPACE", s.opts.veleroNS)
	if s.opts.pluginDir != "" {
		line("VELERO_PLUGIN_DIR", s.opts.pluginDir)
	}
	if s.opts.velero {
		line("S3_URL", s.opts.s3URL)
		line("S3_ACCESS_KEY", s.opts.s3Access)
		line("S3_SECRET_KEY", s.opts.s3Secret)
		line("S3_BUCKET", s.opts.s3Bucket)
		line("S3_BUCKET_2", s.opts.s3Bucket2)
	}
	tmp := s.path("env.tmp")
	if err := os.WriteFile(tmp, []byte(env.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.path("env"))
}

// --- certificates ------------------------------------------------------------------

type pkiFiles struct {
	caCert, serverCert, serverKey, adminCert, adminKey, saPublic, saPrivate string
}

func makePKI(dir string) (*pkiFiles, error) {
	files := &pkiFiles{
		caCert:     filepath.Join(dir, "ca.crt"),
		serverCert: filepath.Join(dir, "apiserver.crt"),
		serverKey:  filepath.Join(dir, "apiserver.key"),
		adminCert:  filepath.Join(dir, "admin.crt"),
		adminKey:   filepath.Join(dir, "admin.key"),
		saPublic:   filepath.Join(dir, "sa.pub"),
		saPrivate:  filepath.Join(dir, "sa.key"),
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "stowage-test-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	if err := writePEM(files.caCert, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	leaf := func(serial int64, subject pkix.Name, usage x509.ExtKeyUsage, certPath, keyPath string, ips []net.IP, names []string) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		template := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      subject,
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(7 * 24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  ips,
			DNSNames:     names,
		}
		der, err := x509.CreateCertificate(rand.Reader, template, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		if err := writePEM(certPath, "CERTIFICATE", der); err != nil {
			return err
		}
		return writePEM(keyPath, "EC PRIVATE KEY", keyDER)
	}
	if err := leaf(2, pkix.Name{CommonName: "kube-apiserver"}, x509.ExtKeyUsageServerAuth, files.serverCert, files.serverKey,
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"}); err != nil {
		return nil, err
	}
	// Organisation system:masters: the group RBAC lets do everything.
	if err := leaf(3, pkix.Name{CommonName: "stowage-test-admin", Organization: []string{"system:masters"}}, x509.ExtKeyUsageClientAuth,
		files.adminCert, files.adminKey, nil, nil); err != nil {
		return nil, err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	if err := writePEM(files.saPrivate, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey)); err != nil {
		return nil, err
	}
	publicDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	if err := writePEM(files.saPublic, "PUBLIC KEY", publicDER); err != nil {
		return nil, err
	}
	return files, nil
}

func writePEM(path, kind string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600)
}
