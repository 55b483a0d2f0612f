//! What the benchmarks in `benches/` share: a mock driver of the
//! virtio-iommu request queue (requests as two-descriptor chains in guest
//! memory, the device's replies read back) and the requests it sends.

use std::sync::Arc;

use devices::virtio::iommu::protocol::{
    Status, VIRTIO_IOMMU_MAP_F_READ, VIRTIO_IOMMU_MAP_F_WRITE, VIRTIO_IOMMU_T_ATTACH,
    VIRTIO_IOMMU_T_MAP, VIRTIO_IOMMU_T_UNMAP,
};
use devices::virtio::iommu::{EndpointConfig, IommuConfig, VirtioIommu};
use devices::virtio::{VirtioDevice, VirtioInterrupt};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// The request queue's size.
pub const QLEN: u16 = 256;
/// Where request `i`'s buffer starts: `REQ_BUFS + i * SLOT`.
pub const REQ_BUFS: u64 = 0x10_0000;
/// Bytes of each request's buffer; its last 4 are the reply's tail.
pub const SLOT: u64 = 64;
/// Read and write.
pub const FLAGS: u32 = VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE;

/// An interrupt sink that drops everything.
pub struct NoInterrupt;

impl VirtioInterrupt for NoInterrupt {
    fn notify_queue(&self, _: u16) {}
    fn notify_config(&self) {}
}

/// ATTACH `endpoint` to `domain`.
pub fn attach_req(domain: u32, endpoint: u32) -> Vec<u8> {
    let mut v = vec![VIRTIO_IOMMU_T_ATTACH, 0, 0, 0];
    v.extend(domain.to_le_bytes());
    v.extend(endpoint.to_le_bytes());
    v.extend([0; 8]);
    v
}

/// MAP `iova..iova+len` of `domain` to `phys`, read and write.
pub fn map_req(domain: u32, iova: u64, len: u64, phys: u64) -> Vec<u8> {
    let mut v = vec![VIRTIO_IOMMU_T_MAP, 0, 0, 0];
    v.extend(domain.to_le_bytes());
    v.extend(iova.to_le_bytes());
    v.extend((iova + len - 1).to_le_bytes());
    v.extend(phys.to_le_bytes());
    v.extend(FLAGS.to_le_bytes());
    v
}

/// UNMAP `iova..iova+len` of `domain`.
pub fn unmap_req(domain: u32, iova: u64, len: u64) -> Vec<u8> {
    let mut v = vec![VIRTIO_IOMMU_T_UNMAP, 0, 0, 0];
    v.extend(domain.to_le_bytes());
    v.extend(iova.to_le_bytes());
    v.extend((iova + len - 1).to_le_bytes());
    v.extend([0; 4]);
    v
}

/// Queues `reqs` as two-descriptor chains (request, 4-byte tail) in
/// descriptor slots from 0; at most `QLEN / 2` of them.
pub fn enqueue(mem: &GuestMemoryMmap, q: &MockSplitQueue<'_, GuestMemoryMmap>, reqs: &[Vec<u8>]) {
    for (i, req) in reqs.iter().enumerate() {
        let buf = REQ_BUFS + i as u64 * SLOT;
        mem.write_slice(req, GuestAddress(buf)).expect("request");
        let d = (2 * i) as u16;
        let head = Descriptor::new(buf, req.len() as u32, 1, d + 1);
        let tail = Descriptor::new(buf + SLOT - 4, 4, 2, 0);
        q.desc_table()
            .store(d, RawDescriptor::from(head))
            .expect("desc");
        q.desc_table()
            .store(d + 1, RawDescriptor::from(tail))
            .expect("desc");
        let idx = q.avail().idx().load();
        q.avail()
            .ring()
            .ref_at(usize::from(idx % QLEN))
            .expect("avail")
            .store(d);
        q.avail().idx().store(idx.wrapping_add(1));
    }
}

/// The status byte of request `i`'s reply.
pub fn tail_status(mem: &GuestMemoryMmap, i: u64) -> u8 {
    mem.read_obj(GuestAddress(REQ_BUFS + i * SLOT + SLOT - 4))
        .expect("tail")
}

/// A virtio-iommu with one endpoint, `endpoint`, activated on a request
/// queue at guest address 0 (its event queue unused), and that queue.
pub fn activated_device(
    mem: &GuestMemoryMmap,
    endpoint: u32,
) -> (VirtioIommu, MockSplitQueue<'_, GuestMemoryMmap>) {
    let q = MockSplitQueue::create(mem, GuestAddress(0), QLEN);
    let config = IommuConfig {
        endpoints: vec![EndpointConfig {
            id: endpoint,
            reserved: Vec::new(),
        }],
        ..Default::default()
    };
    let mut dev = VirtioIommu::new(config, mem.clone(), None).expect("device");
    dev.set_acked_features(dev.device_features());
    let queue = q.create_queue::<Queue>().expect("queue");
    dev.activate(vec![(0, queue)], Arc::new(NoInterrupt))
        .expect("activate");
    (dev, q)
}

/// Queues `reqs` (at most `QLEN / 2`), lets `dev` process them and checks
/// that every one succeeded.
pub fn serve(
    dev: &mut VirtioIommu,
    mem: &GuestMemoryMmap,
    q: &MockSplitQueue<'_, GuestMemoryMmap>,
    reqs: &[Vec<u8>],
) {
    enqueue(mem, q, reqs);
    dev.process_queue(0);
    for i in 0..reqs.len() as u64 {
        assert_eq!(tail_status(mem, i), Status::Ok as u8, "request {i}");
    }
}
