//! The `minivmm` binary's handling of bad input: one error line naming the
//! problem and the fix, and exit status 1, never a panic.

use std::process::Command;

fn minivmm(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_minivmm"))
        .args(args)
        .output()
        .expect("run minivmm");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A file that is not a kernel, unique to the calling test.
fn garbage_kernel(test: &str) -> std::path::PathBuf {
    let name = format!("minivmm-cli-{test}-{}", std::process::id());
    let path = std::env::temp_dir().join(name);
    std::fs::write(&path, vec![0x5au8; 64 * 1024]).expect("write garbage");
    path
}

fn assert_one_error_line(args: &[&str], needle: &str) {
    let (status, stderr) = minivmm(args);
    assert_eq!(status, 1, "{args:?}: {stderr}");
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?} printed {stderr}");
    assert!(lines[0].starts_with("minivmm: error: "), "{stderr}");
    assert!(
        lines[0].contains(needle),
        "{args:?}: expected '{needle}' in {stderr}"
    );
}

#[test]
fn help_documents_every_option() {
    let out = Command::new(env!("CARGO_BIN_EXE_minivmm"))
        .arg("--help")
        .output()
        .expect("run");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--kernel",
        "--initrd",
        "--cmdline",
        "--memory",
        "--cpus",
        "Exit status",
    ] {
        assert!(help.contains(opt), "help lacks {opt}:\n{help}");
    }
}

#[test]
fn missing_files_are_named() {
    assert_one_error_line(
        &["--kernel", "/nonexistent/bzImage"],
        "cannot open kernel '/nonexistent/bzImage'",
    );
    let k = garbage_kernel("missing_files");
    let k = k.to_str().expect("utf-8 path");
    assert_one_error_line(
        &["--kernel", k, "--initrd", "/nonexistent/initrd"],
        "cannot open initrd",
    );
}

#[test]
fn corrupt_kernel_is_refused() {
    let k = garbage_kernel("corrupt");
    assert_one_error_line(
        &["--kernel", k.to_str().expect("utf-8")],
        "not a loadable x86_64 bzImage",
    );
}

#[test]
fn bad_sizes_and_counts_are_refused() {
    let k = garbage_kernel("sizes");
    let k = k.to_str().expect("utf-8");
    assert_one_error_line(&["--kernel", k, "--memory", "16M"], "too small");
    assert_one_error_line(
        &["--kernel", k, "--memory", "lots"],
        "invalid --memory 'lots'",
    );
    assert_one_error_line(&["--kernel", k, "--memory", "64T"], "more than this host's");
    assert_one_error_line(&["--kernel", k, "--cpus", "0"], "at least one vCPU");
    assert_one_error_line(&["--kernel", k, "--cpus", "255"], "too many");
}

/// Runs minivmm through a wrapper command (as another user, in another
/// mount namespace); these need root, which the test suite has.
fn minivmm_via(wrapper: &[&str], args: &[&str]) -> (i32, String) {
    let bin = env!("CARGO_BIN_EXE_minivmm");
    let out = Command::new(wrapper[0])
        .args(&wrapper[1..])
        .arg(bin)
        .args(args)
        .output()
        .expect("run wrapper");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn kvm_without_permission_says_how_to_get_it() {
    assert!(
        is_root(),
        "this test needs root (tests/run.sh runs as root)"
    );
    let k = garbage_kernel("permission");
    std::fs::set_permissions(&k, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let wrapper = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let (status, stderr) = minivmm_via(&wrapper, &["--kernel", k.to_str().expect("utf-8")]);
    assert_eq!(status, 1, "{stderr}");
    assert!(
        stderr.contains("no permission to open /dev/kvm"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn missing_kvm_says_what_to_load() {
    assert!(
        is_root(),
        "this test needs root (tests/run.sh runs as root)"
    );
    let k = garbage_kernel("no_kvm");
    let script = format!(
        "mount -t tmpfs none /dev && exec {} --kernel {}",
        env!("CARGO_BIN_EXE_minivmm"),
        k.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .expect("unshare");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/dev/kvm does not exist"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
