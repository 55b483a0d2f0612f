//! DMA translation for one endpoint: [`EndpointIommu`] implements
//! vm-memory's [`Iommu`] so the VMM can give an emulated device behind the
//! virtio-iommu an `IommuMemory<GuestMemoryMmap, EndpointIommu>`.
//!
//! Every translation is resolved from the current domain state: nothing is
//! cached between calls, so an UNMAP, DETACH or bypass change applies to
//! every access that starts after it (the request completes only after the
//! state changed). An access that already holds its translation finishes
//! with it. Each call builds a private [`Iotlb`] holding just the pieces of
//! the requested range, which is what vm-memory's iterator reads from.
//! Failed translations are reported as faults on the event queue.

use std::sync::Arc;

use vm_memory::iommu::{Error as IommuError, IotlbIterator, IovaRange};
use vm_memory::{GuestAddress, Iommu, Iotlb, Permissions};

use super::domains::Resolution;
use super::event::{Fault, FaultReason};
use super::Shared;

/// The IOMMU as seen by one endpoint's DMA.
#[derive(Clone, Debug)]
pub struct EndpointIommu {
    endpoint: u32,
    shared: Arc<Shared>,
}

impl EndpointIommu {
    pub(crate) fn new(endpoint: u32, shared: Arc<Shared>) -> Self {
        Self { endpoint, shared }
    }

    /// The endpoint whose DMA this translates.
    pub fn endpoint(&self) -> u32 {
        self.endpoint
    }

    fn fault(&self, reason: FaultReason, address: u64, access: Permissions) -> IommuError {
        self.shared.faults.report(Fault {
            reason,
            endpoint: self.endpoint,
            address,
            access,
        });
        IommuError::CannotResolve {
            iova_range: IovaRange {
                base: GuestAddress(address),
                length: 0,
            },
            reason: format!(
                "virtio-iommu: endpoint {} {reason:?} fault at {address:#x}",
                self.endpoint
            ),
        }
    }

    /// Fills an IOTLB with the translation of `start..=last`.
    fn fill(&self, start: u64, last: u64, length: usize) -> Result<Iotlb, FaultReason> {
        let mut tlb = Iotlb::new();
        let state = self.shared.state.read();
        match state.resolve(self.endpoint) {
            Resolution::Identity => {
                // Cannot fail: the Iotlb accepts any range that fits u64.
                let _ = tlb.set_mapping(
                    GuestAddress(start),
                    GuestAddress(start),
                    length,
                    Permissions::ReadWrite,
                );
            }
            Resolution::Mapped(store) => {
                for m in store.overlapping(start, last) {
                    let from = m.start.max(start);
                    let to = m.end.min(last);
                    let perm = match (m.readable(), m.writable()) {
                        (true, true) => Permissions::ReadWrite,
                        (true, false) => Permissions::Read,
                        (false, true) => Permissions::Write,
                        (false, false) => Permissions::No,
                    };
                    // `to - from < length`, so this fits in usize.
                    let len = (to - from + 1) as usize;
                    let _ = tlb.set_mapping(
                        GuestAddress(from),
                        GuestAddress(m.translate(from)),
                        len,
                        perm,
                    );
                }
            }
            Resolution::Blocked | Resolution::UnknownEndpoint => return Err(FaultReason::Domain),
        }
        Ok(tlb)
    }
}

impl Iommu for EndpointIommu {
    type IotlbGuard<'a> = Box<Iotlb>;

    fn translate(
        &self,
        iova: GuestAddress,
        length: usize,
        access: Permissions,
    ) -> Result<IotlbIterator<Box<Iotlb>>, IommuError> {
        crate::perf::count(crate::perf::Counter::Translations);
        let start = iova.0;
        if length == 0 {
            return Iotlb::lookup(Box::new(Iotlb::new()), iova, 0, access)
                .map_err(|_| self.fault(FaultReason::Mapping, start, access));
        }
        // The range must end inside the 64-bit space: the Iotlb computes
        // `start + length` without checks.
        let Some(last) = (length as u64)
            .checked_sub(1)
            .and_then(|l| start.checked_add(l))
            .filter(|&l| l < u64::MAX)
        else {
            return Err(self.fault(FaultReason::Mapping, start, access));
        };
        let tlb = match self.fill(start, last, length) {
            Ok(tlb) => tlb,
            Err(reason) => return Err(self.fault(reason, start, access)),
        };
        Iotlb::lookup(Box::new(tlb), iova, length, access).map_err(|fails| {
            let first = fails
                .misses
                .iter()
                .chain(fails.access_fails.iter())
                .map(|r| r.base.0)
                .min()
                .unwrap_or(start);
            self.fault(FaultReason::Mapping, first, access)
        })
    }
}
