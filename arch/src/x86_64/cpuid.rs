//! Per-vCPU CPUID: KVM's supported leaves, adjusted so the guest sees one
//! socket of `cpus` single-threaded cores, its own APIC ID, and that it runs
//! under a hypervisor.

use kvm_bindings::{kvm_cpuid_entry2, CpuId};

/// The topology a vCPU's CPUID describes.
#[derive(Clone, Copy, Debug)]
pub struct CpuTopology {
    /// This vCPU's index, which is also its APIC ID.
    pub vcpu_id: u8,
    /// vCPUs in the VM (all cores of one socket).
    pub cpus: u8,
    /// Whether the in-kernel LAPIC offers the TSC-deadline timer.
    pub tsc_deadline: bool,
}

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE_PARAMS: u32 = 0x4;
const LEAF_EXT_TOPOLOGY: u32 = 0xb;
const LEAF_V2_EXT_TOPOLOGY: u32 = 0x1f;
const LEAF_AMD_SIZE_IDS: u32 = 0x8000_0008;
const LEAF_AMD_EXT_APIC_ID: u32 = 0x8000_001e;

const ECX_TSC_DEADLINE: u32 = 1 << 24;
const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_HTT: u32 = 1 << 28;

const LEVEL_TYPE_SMT: u32 = 1;
const LEVEL_TYPE_CORE: u32 = 2;

/// Bits needed to number `n` items (the APIC ID shift of a topology level).
fn id_bits(n: u8) -> u32 {
    if n <= 1 {
        0
    } else {
        u32::from(n - 1).ilog2() + 1
    }
}

fn patch_entry(e: &mut kvm_cpuid_entry2, topo: &CpuTopology) {
    let apic_id = u32::from(topo.vcpu_id);
    let cpus = u32::from(topo.cpus);
    match e.function {
        LEAF_FEATURES => {
            e.ebx = (e.ebx & 0x0000_ffff) | (apic_id << 24) | (cpus << 16);
            e.ecx |= ECX_HYPERVISOR;
            if topo.tsc_deadline {
                e.ecx |= ECX_TSC_DEADLINE;
            }
            if cpus > 1 {
                e.edx |= EDX_HTT;
            } else {
                e.edx &= !EDX_HTT;
            }
        }
        LEAF_CACHE_PARAMS => {
            let level = (e.eax >> 5) & 0x7;
            let sharing = if level >= 3 { cpus - 1 } else { 0 };
            e.eax = (e.eax & 0x3ff) | ((cpus - 1) << 26) | (sharing << 14);
        }
        LEAF_EXT_TOPOLOGY | LEAF_V2_EXT_TOPOLOGY => {
            let (shift, count, kind) = match e.index {
                0 => (0, 1, LEVEL_TYPE_SMT),
                1 => (id_bits(topo.cpus), cpus, LEVEL_TYPE_CORE),
                _ => (0, 0, 0),
            };
            e.eax = shift;
            e.ebx = count;
            e.ecx = (kind << 8) | (e.index & 0xff);
            e.edx = apic_id;
        }
        LEAF_AMD_SIZE_IDS => {
            e.ecx = (e.ecx & !0xf0ff) | (id_bits(topo.cpus) << 12) | (cpus - 1);
        }
        LEAF_AMD_EXT_APIC_ID => {
            e.eax = apic_id;
            e.ebx = apic_id & 0xff;
            e.ecx = 0;
        }
        _ => {}
    }
}

/// Adjusts `cpuid` (from `KVM_GET_SUPPORTED_CPUID`) for one vCPU.
pub fn patch_cpuid(cpuid: &mut CpuId, topo: &CpuTopology) {
    for entry in cpuid.as_mut_slice() {
        patch_entry(entry, topo);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ..Default::default()
        }
    }

    fn cpuid() -> CpuId {
        CpuId::from_entries(&[
            entry(LEAF_FEATURES, 0),
            entry(LEAF_EXT_TOPOLOGY, 0),
            entry(LEAF_EXT_TOPOLOGY, 1),
            entry(LEAF_EXT_TOPOLOGY, 2),
            entry(LEAF_AMD_SIZE_IDS, 0),
        ])
        .expect("cpuid")
    }

    fn find(c: &CpuId, f: u32, i: u32) -> kvm_cpuid_entry2 {
        *c.as_slice()
            .iter()
            .find(|e| e.function == f && e.index == i)
            .expect("leaf")
    }

    #[test]
    fn each_vcpu_gets_its_apic_id() {
        for id in [0u8, 3, 7] {
            let mut c = cpuid();
            patch_cpuid(
                &mut c,
                &CpuTopology {
                    vcpu_id: id,
                    cpus: 8,
                    tsc_deadline: true,
                },
            );
            let l1 = find(&c, LEAF_FEATURES, 0);
            assert_eq!(l1.ebx >> 24, u32::from(id));
            assert_eq!((l1.ebx >> 16) & 0xff, 8);
            assert_ne!(l1.ecx & ECX_HYPERVISOR, 0);
            assert_ne!(l1.ecx & ECX_TSC_DEADLINE, 0);
            assert_eq!(find(&c, LEAF_EXT_TOPOLOGY, 0).edx, u32::from(id));
        }
    }

    #[test]
    fn topology_levels_describe_one_socket() {
        let mut c = cpuid();
        let topo = CpuTopology {
            vcpu_id: 1,
            cpus: 6,
            tsc_deadline: false,
        };
        patch_cpuid(&mut c, &topo);
        let smt = find(&c, LEAF_EXT_TOPOLOGY, 0);
        let core = find(&c, LEAF_EXT_TOPOLOGY, 1);
        let end = find(&c, LEAF_EXT_TOPOLOGY, 2);
        assert_eq!((smt.eax, smt.ebx, smt.ecx >> 8), (0, 1, 1));
        assert_eq!((core.eax, core.ebx, core.ecx >> 8), (3, 6, 2));
        assert_eq!((end.ebx, end.ecx >> 8), (0, 0));
        assert_eq!(find(&c, LEAF_AMD_SIZE_IDS, 0).ecx & 0xff, 5);
    }

    #[test]
    fn id_bits_rounds_up() {
        assert_eq!([1, 2, 3, 4, 5, 8, 9].map(id_bits), [0, 1, 2, 2, 3, 3, 4]);
    }
}
