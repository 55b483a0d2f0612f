//! `minivmm --dry-run` / `minivmm plan`: the planned map on stdout and exit
//! 0, or one error line and exit 1, without touching KVM.

use std::path::PathBuf;
use std::process::Command;

fn minivmm(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_minivmm"))
        .args(args)
        .output()
        .expect("run minivmm");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A region file unique to the calling test.
fn region_file(test: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("minivmm-plan-{test}-{}", std::process::id()));
    std::fs::write(&path, text).expect("write region file");
    path
}

#[test]
fn dry_run_prints_the_map_with_other_hosts_regions() {
    let file = region_file(
        "ok",
        "0x0000000040000000 0x0000000040ffffff reserved\n\
         0x000000fd00000000 0x000000ffffffffff reserved\n",
    );
    let file = file.to_str().expect("utf-8");
    for first in ["--dry-run", "plan"] {
        let (status, stdout, stderr) = minivmm(&[first, "--memory", "2G", "--host-regions", file]);
        assert_eq!(status, 0, "{stderr}");
        assert!(stderr.is_empty(), "{stderr}");
        let hole = format!(
            "  0x0000000040000000  0x0000000040ffffff      16 MiB  hole: host reserved region \
             0x40000000-0x40ffffff (reserved) of {file}"
        );
        assert!(stdout.contains(&hole), "no '{hole}' in\n{stdout}");
        // RAM resumes after the region and ends 16 MiB higher.
        assert!(
            stdout.contains("  0x0000000041000000  0x0000000080ffffff       1 GiB  RAM"),
            "{stdout}"
        );
        assert!(stdout.contains("0x000000fd00000000  0x000000ffffffffff      12 GiB  RESERVED"));
        assert!(stdout.contains("0x00000000fee00000  0x00000000feefffff       1 MiB  MSI"));
    }
}

#[test]
fn impossible_plan_is_one_error_line() {
    let file = region_file("low", "0x00000000000e0000 0x00000000000effff direct\n");
    let (status, stdout, stderr) = minivmm(&[
        "--dry-run",
        "--allow-direct-regions",
        "--host-regions",
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(status, 1, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("minivmm: error: host region 0xe0000-0xeffff (direct) of "));
    assert!(stderr.contains("fixed low memory"), "{stderr}");

    let file = region_file("rmrr", "0x00000000bf000000 0x00000000bfffffff direct\n");
    let (status, _, stderr) = minivmm(&["plan", "--host-regions", file.to_str().expect("utf-8")]);
    assert_eq!(status, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("pass --allow-direct-regions"), "{stderr}");
}

#[test]
fn bad_region_files_are_named() {
    let file = region_file("bad", "0xfee00000 0xfeefffff msi\nnonsense\n");
    let name = file.to_str().expect("utf-8");
    let (status, _, stderr) = minivmm(&["--dry-run", "--host-regions", name]);
    assert_eq!(status, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("minivmm: error: {name}:2: bad reserved region")),
        "{stderr}"
    );
    let (status, _, stderr) = minivmm(&["--dry-run", "--host-regions", "/nonexistent/h.txt"]);
    assert_eq!(status, 1);
    assert!(
        stderr.contains("cannot read /nonexistent/h.txt"),
        "{stderr}"
    );
}

#[test]
fn a_kernel_is_still_required_without_dry_run() {
    let (status, _, stderr) = minivmm(&["--memory", "2G"]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("--kernel"), "{stderr}");
}
