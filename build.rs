//! Stamps the binary with the commit it was built from (`stowage --version`,
//! `stowage_build_info`): `STOWAGE_COMMIT` when the builder sets it (a Nix build has no
//! `.git`), else what git says, else "unknown".

fn main() {
    println!("cargo:rerun-if-env-changed=STOWAGE_COMMIT");
    let commit = std::env::var("STOWAGE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=STOWAGE_COMMIT={commit}");
}

fn git_commit() -> Option<String> {
    let dir = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let head = git(&["rev-parse", "--short=12", "HEAD"])?;
    // Rebuild when HEAD moves: the files git keeps it in.
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
        if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={git_dir}/{reference}");
        }
        println!("cargo:rerun-if-changed={git_dir}/packed-refs");
    }
    Some(head)
}
