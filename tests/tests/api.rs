//! The control API, driven by curl inside the nested host (one L1 boot):
//! minivmm started with only `--api-socket` is created and booted through
//! the socket, describes the running VM in `vm.info`, `vm.plan` and
//! `vm.counters`, answers malformed, unknown, wrong-method and oversize
//! requests with 4xx while the guest keeps running, refuses a second
//! minivmm on its socket, reboots, shuts the VM down and exits on
//! `vmm.shutdown`. The socket is owner-only.

mod common;

use common::{calls, nth};
use minivmm_tests::NestedHost;

#[test]
#[ignore = "boots the nested host; run by tests/run.sh"]
fn curl_drives_the_vm_lifecycle() {
    let run = NestedHost::new("api")
        .scenario("api-lifecycle")
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    run.expect_rc0("api-lifecycle")
        .unwrap_or_else(|e| panic!("{e}"));
    let calls = calls(&run, "api-lifecycle");

    let socket = &run.markers("api-lifecycle", "MINIVMM-API-SOCKET ")[0];
    assert_eq!(
        socket.get("mode").map(String::as_str),
        Some("600"),
        "{socket:?}"
    );

    let ping = nth(&calls, "GET", "vmm.ping", 0);
    assert_eq!(ping.status, 200);
    assert!(ping.json()["version"].is_string(), "{ping:?}");
    assert_eq!(
        nth(&calls, "PUT", "vm.boot", 0).status,
        404,
        "boot before create"
    );
    assert_eq!(nth(&calls, "PUT", "vm.create", 0).status, 204);
    let created = nth(&calls, "GET", "vm.info", 0);
    assert_eq!(created.json()["state"], "Created");
    assert_eq!(nth(&calls, "PUT", "vm.boot", 1).status, 204);

    // vm.info and vm.plan describe what runs.
    let info = nth(&calls, "GET", "vm.info", 1).json();
    assert_eq!(info["state"], "Running", "{info}");
    assert_eq!(info["memory_actual_size"], 256u64 << 20);
    assert_eq!(info["config"]["disks"][0]["id"], "disk0");
    assert_eq!(info["config"]["disks"][0]["iommu"], true);
    assert_eq!(info["device_tree"]["disk0"]["pci_bdf"], "0000:00:02.0");
    assert_eq!(
        info["device_tree"]["_virtio-iommu"]["pci_bdf"],
        "0000:00:01.0"
    );
    let plan = nth(&calls, "GET", "vm.plan", 0).json();
    let ram: u64 = plan["ram"]
        .as_array()
        .expect("ram")
        .iter()
        .map(|r| r["size"].as_u64().expect("size"))
        .sum();
    assert_eq!(ram, 256 << 20, "{plan}");
    assert!(
        plan["virtio_iommu"]["probe_reserved"]
            .as_array()
            .is_some_and(|r| r
                .iter()
                .any(|r| r["kind"] == "msi" && r["start"] == "0x00000000fee00000")),
        "{plan}"
    );
    let guest = &run.markers("api-lifecycle", "MINIVMM-API-GUEST ready ");
    assert_eq!(guest.len(), 2, "one ready line per boot: {guest:?}");
    assert!(
        guest[0].get("groups").is_some_and(|g| g != "none"),
        "the disk is behind the virtio-iommu: {guest:?}"
    );
    let counters = nth(&calls, "GET", "vm.counters", 0).json();
    let disk = &counters["disk0"];
    assert!(
        disk["write_bytes"].as_u64().unwrap_or(0) >= 1 << 20,
        "{counters}"
    );
    assert!(disk["read_ops"].as_u64().unwrap_or(0) >= 1, "{counters}");

    // Hostile requests get 4xx (or 501 for cloud-hypervisor endpoints
    // minivmm does not implement), and the VM keeps running.
    assert_eq!(
        nth(&calls, "PUT", "vm.create", 1).status,
        400,
        "malformed JSON"
    );
    assert_eq!(
        nth(&calls, "PUT", "vm.add-disk", 0).status,
        400,
        "unknown field"
    );
    assert_eq!(nth(&calls, "GET", "vm.shutdown", 0).status, 405);
    assert_eq!(nth(&calls, "GET", "vm.nothing", 0).status, 404);
    assert_eq!(nth(&calls, "PUT", "vm.pause", 0).status, 501);
    assert_eq!(
        nth(&calls, "PUT", "vm.create", 2).status,
        413,
        "oversize body"
    );
    assert_eq!(nth(&calls, "GET", "vmm.ping-long-header", 0).status, 431);
    assert_eq!(nth(&calls, "G E T", "vmm.ping", 0).status, 400);
    assert_eq!(nth(&calls, "GET", "vm.info", 2).json()["state"], "Running");
    run.expect_console(
        "api-lifecycle",
        "MINIVMM-API-SECOND rc=1 minivmm: error: --api-socket /run/minivmm/api.sock: another process is serving this socket",
    )
    .unwrap_or_else(|e| panic!("{e}"));

    // Reboot, shut down, exit.
    assert_eq!(nth(&calls, "PUT", "vm.reboot", 0).status, 204);
    let after = nth(&calls, "GET", "vm.counters", 1).json();
    assert!(
        after["disk0"]["write_ops"].as_u64().unwrap_or(0) >= 1,
        "{after}"
    );
    assert_eq!(nth(&calls, "PUT", "vm.shutdown", 0).status, 204);
    assert_eq!(nth(&calls, "GET", "vm.info", 3).json()["state"], "Created");
    assert_eq!(nth(&calls, "PUT", "vmm.shutdown", 0).status, 204);
    run.expect_console("api-lifecycle", "MINIVMM-API-EXIT rc=0")
        .unwrap_or_else(|e| panic!("{e}"));
}
