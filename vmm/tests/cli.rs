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

fn garbage_kernel() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("minivmm-cli-garbage-{}", std::process::id()));
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
    let k = garbage_kernel();
    let k = k.to_str().expect("utf-8 path");
    assert_one_error_line(
        &["--kernel", k, "--initrd", "/nonexistent/initrd"],
        "cannot open initrd",
    );
}

#[test]
fn corrupt_kernel_is_refused() {
    let k = garbage_kernel();
    assert_one_error_line(
        &["--kernel", k.to_str().expect("utf-8")],
        "not a loadable x86_64 bzImage",
    );
}

#[test]
fn bad_sizes_and_counts_are_refused() {
    let k = garbage_kernel();
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
