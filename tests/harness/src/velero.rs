//! Real Velero for one test: `velero server` run out of cluster (Velero's "run locally"
//! mode) against the stack, watching only that test's namespace, with the AWS plugin.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::stack::Namespace;

/// `velero server` binds controller-runtime's metrics listener to :8080 and has no
/// flag to move it, so two cannot run on one machine at once: whoever runs Velero holds
/// this for as long as it runs.
static PORT_8080: Mutex<()> = Mutex::new(());

/// Waits until no other Velero of this test process runs, and keeps others waiting
/// while the guard lives (for a test that starts Velero some other way).
pub fn exclusive() -> MutexGuard<'static, ()> {
    PORT_8080
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub struct VeleroServer {
    child: Child,
    pub log: PathBuf,
    pub namespace: String,
    _exclusive: MutexGuard<'static, ()>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl VeleroServer {
    /// Starts `velero server` for `namespace` and waits until its controllers run.
    /// Locations need a credential
    /// of their own: the process has no default AWS credentials, and never asks a cloud
    /// metadata address for any.
    pub fn start(namespace: &Namespace) -> VeleroServer {
        VeleroServer::start_with(namespace, &[])
    }

    /// The same with more server flags (`--concurrent-backups=2`).
    pub fn start_with(namespace: &Namespace, flags: &[&str]) -> VeleroServer {
        let exclusive = exclusive();
        let stack = namespace.stack;
        install_deployment(namespace, flags);
        let logs = stack.dir.join("logs");
        std::fs::create_dir_all(&logs).expect("the stack's log folder");
        let log = logs.join(format!("velero-{}.log", namespace.name));
        let log_file = std::fs::File::create(&log).expect("Velero's log file");
        let metrics = free_port();
        let mut command = Command::new(&stack.velero);
        command
            .args(["server", "--namespace", &namespace.name])
            .arg("--kubeconfig")
            .arg(&stack.kubeconfig)
            .arg("--plugin-dir")
            .arg(&stack.plugin_dir)
            .args(["--metrics-address", &format!("127.0.0.1:{metrics}")])
            .args(["--profiler-address", &format!("127.0.0.1:{}", free_port())])
            .args(["--log-level", "debug"])
            .args(flags)
            .env_remove("AWS_SHARED_CREDENTIALS_FILE")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file);
        // SAFETY: prctl is async-signal-safe; the child dies with the thread that
        // started it, so a test that is killed leaves no Velero behind.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; run the tests with `bash tests/run`, which builds it",
                stack.velero.display()
            )
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("velero's status") {
                panic!(
                    "velero server exited ({status}) while starting: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            // The location controller's workers start only once the manager did.
            let started = std::fs::read_to_string(&log).is_ok_and(|text| {
                text.contains("msg=\"Starting workers\" controller=backup-storage-location")
            });
            if started && TcpStream::connect(("127.0.0.1", metrics)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "velero server did not start within 60 s; see {}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        VeleroServer {
            child,
            log,
            namespace: namespace.name.clone(),
            _exclusive: exclusive,
        }
    }

    /// What Velero logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// What `velero install` leaves in the namespace besides the server itself: its
/// Deployment (with the AWS plugin's init container), scaled to zero here since the
/// server runs out of cluster. Velero's restore reads it for the restore helper's
/// image, and stowage reads its plugins and flags, as on a real install: `flags` are
/// the server flags the process runs with, so the object says what runs.
pub fn install_deployment(namespace: &Namespace, flags: &[&str]) {
    let stack = namespace.stack;
    let out = Command::new(&stack.velero)
        .args([
            "install",
            "--provider",
            "aws",
            "--plugins",
            "velero/velero-plugin-for-aws:v1.14.3",
            "--bucket",
            "velero-live",
            "--no-secret",
            "--use-volume-snapshots=false",
            "--dry-run",
            "-o",
            "json",
            "--namespace",
            &namespace.name,
        ])
        .arg("--kubeconfig")
        .arg(&stack.kubeconfig)
        .output()
        .expect("velero install --dry-run");
    assert!(
        out.status.success(),
        "velero install --dry-run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("velero install prints JSON");
    let mut deployment = list["items"]
        .as_array()
        .and_then(|items| items.iter().find(|o| o["kind"] == "Deployment"))
        .cloned()
        .expect("velero install prints a Deployment");
    deployment["spec"]["replicas"] = serde_json::json!(0);
    if let Some(args) = deployment
        .pointer_mut("/spec/template/spec/containers/0/args")
        .and_then(serde_json::Value::as_array_mut)
    {
        args.extend(flags.iter().map(|flag| serde_json::json!(flag)));
    }
    deployment["metadata"]["namespace"] = serde_json::json!(namespace.name);
    if let Err(error) = stack.create(deployment, "velero-install")
        && !error.to_string().contains("already exists")
    {
        panic!("the velero Deployment: {error}");
    }
}

impl Drop for VeleroServer {
    fn drop(&mut self) {
        // SAFETY: a plain signal to our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
