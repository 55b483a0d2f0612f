//! Fault injection under virtio-blk (issue 8), in one L1 boot with the disk
//! image behind device-mapper in L1:
//! - `faults-ioerr`: sectors 8192-10239 are a dm `error` target. The guest's
//!   reads there fail, a write there fails by its flush, reads and writes
//!   elsewhere keep working before and after, the guest kernel's I/O errors
//!   name only failing sectors, and minivmm stays up (exits 0 at power off).
//! - `faults-flush`: a FLUSH answered OK means the data is on stable
//!   storage. Periodic writeback is off in L1 and L1 holds the dm device
//!   open, so what minivmm wrote without `fdatasync` stays in the device's
//!   page cache. After three flushed writes and one unflushed one, minivmm is
//!   killed with SIGKILL and the backing file read directly: every flushed
//!   region holds what the guest wrote, and the unflushed one does not (the
//!   control: the check sees what `fdatasync` put there and nothing else).

use std::collections::BTreeMap;

use minivmm_tests::NestedHost;

#[test]
#[ignore = "boots the nested host; run by tests/run.sh"]
fn failing_and_killed_disks() {
    let run = NestedHost::new("faults")
        .scenarios(["faults-ioerr", "faults-flush"])
        .run()
        .unwrap_or_else(|e| panic!("{e}"));

    let ioerr = run
        .expect_l2_pass("faults-ioerr")
        .unwrap_or_else(|e| panic!("{e}"));
    let host = run.markers("faults-ioerr", "MINIVMM-FAULTS-HOST ");
    assert_eq!(
        host.first().and_then(|h| h.get("rc")).map(String::as_str),
        Some("0"),
        "minivmm stays up through the I/O errors: {host:?}"
    );
    println!(
        "faults-ioerr: {:?}, host {:?}, {:.1}s",
        ioerr.l2.as_ref().map(|r| r.details.clone()),
        host.first(),
        ioerr.duration.unwrap_or_default().as_secs_f64()
    );

    let flush = run
        .expect_rc0("faults-flush")
        .unwrap_or_else(|e| panic!("{e}"));
    let host = run.markers("faults-flush", "MINIVMM-FAULTS-HOST ");
    assert_eq!(
        host.first()
            .and_then(|h| h.get("killed"))
            .map(String::as_str),
        Some("yes"),
        "{host:?}"
    );
    let backing: BTreeMap<String, String> = run
        .markers("faults-flush", "MINIVMM-BACKING ")
        .into_iter()
        .filter_map(|f| Some((f.get("offset")?.clone(), f.get("sha256")?.clone())))
        .collect();
    let flushed = run.markers("faults-flush", "MINIVMM-FLUSHED ");
    assert_eq!(flushed.len(), 3, "{flushed:?}");
    for f in &flushed {
        let offset = &f["offset"];
        assert_eq!(
            backing.get(offset),
            f.get("sha256"),
            "data acknowledged as flushed at {offset} is not in the image after SIGKILL"
        );
    }
    // The control: the unflushed write is not in the backing file, so the
    // check above sees what fdatasync, and only fdatasync, put there.
    let unflushed = run.markers("faults-flush", "MINIVMM-UNFLUSHED ");
    let u = unflushed.first().expect("the unflushed write was reported");
    assert_ne!(
        backing.get(&u["offset"]),
        u.get("sha256"),
        "the unflushed write reached the backing file: the check cannot see a missing fdatasync"
    );
    println!(
        "faults-flush: 3 flushed regions on the backing file after SIGKILL, the unflushed one not; {:.1}s",
        flush.duration.unwrap_or_default().as_secs_f64()
    );
}
