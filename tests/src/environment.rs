//! Telling the test environment's failures from minivmm's: the console
//! signatures of a crash that L0 (QEMU TCG) caused, in L1 or in an L2 guest.
//!
//! The one measured so far (see `docs/testing.md`): a kernel dies with
//! `Oops: int3` at a site it patched (a jump label or an alternative) while
//! the bytes in memory no longer hold the `int3` (0xcc) that was executed.
//! Linux only traps on an `int3` it did not expect when no text poke is in
//! progress, and memory shows that the patch had completed, so the vCPU ran
//! a stale translation of the old code: L0's doing, not the guest's nor
//! minivmm's. An `int3` oops whose memory still holds 0xcc is a real
//! breakpoint left in the text and is *not* classified as environmental.
//!
//! L1's kernel prints without timestamps (`printk.time=0`, set by
//! `run.sh`) and L2's with them, which tells the two kernels apart.

use std::fmt;

/// Which kernel printed a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// The nested host's kernel.
    L1,
    /// A guest's kernel (under minivmm, or under QEMU in L1).
    L2,
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::L1 => "L1",
            Self::L2 => "L2",
        })
    }
}

/// One crash that L0 caused, as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentFault {
    /// The kernel that died.
    pub kernel: Kernel,
    /// What was seen, for the log: the trap, the function and the bytes.
    pub signature: String,
}

impl fmt::Display for EnvironmentFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} kernel: {}", self.kernel, self.signature)
    }
}

/// An `int3` oops seen, waiting for its `RIP:` and `Code:` lines.
#[derive(Debug, Default, Clone)]
struct PendingInt3 {
    rip: Option<String>,
}

/// Every `int3` oops a console showed, classified.
#[derive(Debug, Default)]
pub struct FaultScanner {
    /// Per kernel, the oops whose `Code:` line has not come yet.
    pending: [Option<PendingInt3>; 2],
    /// Oopses in patched text with memory no longer holding the `int3`.
    pub faults: Vec<EnvironmentFault>,
    /// `int3` oopses whose memory still holds 0xcc, or without bytes to tell.
    pub other_int3: usize,
}

impl FaultScanner {
    /// Feeds one console line.
    pub fn feed(&mut self, line: &str) {
        let Some((kernel, message)) = kernel_message(line) else {
            return;
        };
        let slot = &mut self.pending[kernel as usize];
        if message.starts_with("Oops: int3") {
            if slot.take().is_some() {
                self.other_int3 += 1;
            }
            *slot = Some(PendingInt3::default());
        } else if let Some(pending) = slot.as_mut() {
            if let Some(rip) = message.strip_prefix("RIP: ") {
                // `RIP: 0010:sched_clock_cpu+0x9/0x190`: keep the symbol.
                let rip = rip.split_once(':').map_or(rip, |(_, symbol)| symbol);
                pending.rip.get_or_insert_with(|| rip.trim().to_string());
            } else if let Some(code) = message.strip_prefix("Code: ") {
                let pending = slot.take().unwrap_or_default();
                match stale_int3(code) {
                    Some(bytes) => self.faults.push(EnvironmentFault {
                        kernel,
                        signature: format!(
                            "Oops: int3 at {} with no int3 in memory (bytes before the trap address: {bytes}): \
                             a stale translation of patched kernel text (L0 QEMU TCG)",
                            pending.rip.as_deref().unwrap_or("an unknown address")
                        ),
                    }),
                    None => self.other_int3 += 1,
                }
            }
        }
    }

    /// The first environmental fault, if any.
    pub fn first(&self) -> Option<&EnvironmentFault> {
        self.faults.first()
    }

    /// How many environmental faults `kernel` showed.
    pub fn count(&self, kernel: Kernel) -> usize {
        self.faults.iter().filter(|f| f.kernel == kernel).count()
    }
}

/// The kernel and message of a kernel log line: L2's lines carry a
/// `[ seconds]` timestamp, L1's do not. Lines that are not kernel messages
/// are returned as L1's too; the callers only look for kernel phrases.
fn kernel_message(line: &str) -> Option<(Kernel, &str)> {
    let line = line.trim_start_matches(|c: char| c.is_control());
    if let Some(rest) = line.strip_prefix('[') {
        let (stamp, message) = rest.split_once(']')?;
        let stamp = stamp.trim();
        if !stamp.is_empty() && stamp.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Some((Kernel::L2, message.trim_start()));
        }
        return None;
    }
    Some((Kernel::L1, line))
}

/// For an oops `Code:` line, the two bytes before the marked one (the
/// marked byte is at the trap's return address, one past the `int3`) when
/// the byte that was executed as `int3` no longer holds 0xcc.
fn stale_int3(code: &str) -> Option<String> {
    let words: Vec<&str> = code.split_whitespace().collect();
    let marked = words.iter().position(|w| w.starts_with('<'))?;
    let trap = *words.get(marked.checked_sub(1)?)?;
    if trap.len() != 2 || !trap.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    if trap.eq_ignore_ascii_case("cc") {
        return None;
    }
    let before = words.get(marked.saturating_sub(2)..marked)?.join(" ");
    Some(before)
}

#[cfg(test)]
mod tests {
    use super::*;

    const L2_OOPS: &[&str] = &[
        "[    3.840856] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI",
        "[    3.841524] CPU: 1 UID: 0 PID: 0 Comm: swapper/1 Tainted: G        W          6.12.107+deb12-amd64 #1",
        "[    3.842917] RIP: 0010:sched_clock_cpu+0x9/0x190",
        "[    3.843019] Code: 00 e9 b8 fe ff ff 66 66 2e 0f 1f 84 00 00 00 00 00 90 90 90 90 90 90 90 90 90 90 90 90 90 90 90 90 f3 0f 1e fa 41 54 55 53 66 <90> e8 c1 c0 f0 ff 48 03 05 52 18 d2 01 48 89 c2 5b 48 89 d0 5d 41",
        "[    3.846815] Kernel panic - not syncing: Fatal exception in interrupt",
    ];

    #[test]
    fn stale_int3_in_an_l2_guest_is_environmental() {
        let mut scanner = FaultScanner::default();
        for line in L2_OOPS {
            scanner.feed(line);
        }
        let fault = scanner.first().expect("a fault");
        assert_eq!(fault.kernel, Kernel::L2);
        assert!(fault.signature.contains("sched_clock_cpu+0x9/0x190"));
        assert!(fault.signature.contains("53 66"));
        assert_eq!(scanner.count(Kernel::L2), 1);
        assert_eq!(scanner.count(Kernel::L1), 0);
    }

    #[test]
    fn stale_int3_in_l1_is_told_apart_by_the_missing_timestamp() {
        let mut scanner = FaultScanner::default();
        scanner.feed("Oops: int3: 0000 [#1] PREEMPT SMP NOPTI");
        scanner.feed("RIP: 0010:__schedule+0x3c5/0x1690");
        scanner.feed("Code: 48 8b 45 00 0f 1f 44 <00> 00 48 8b 7d 08");
        assert_eq!(scanner.count(Kernel::L1), 1);
        assert!(scanner.faults[0].signature.contains("__schedule"));
    }

    #[test]
    fn interleaved_oopses_of_two_cpus_count_once_per_code_line() {
        let mut scanner = FaultScanner::default();
        scanner.feed("[    3.84] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI");
        scanner.feed("[    3.85] RIP: 0010:sched_clock_cpu+0x9/0x190");
        scanner.feed("[    3.85] Code: 53 66 <90> e8");
        scanner.feed("[    3.86] Oops: int3: 0000 [#2] PREEMPT SMP NOPTI");
        scanner.feed("[    3.86] RIP: 0010:sched_clock_cpu+0x9/0x190");
        scanner.feed("[    3.86] RIP: 0010:sched_clock_cpu+0x9/0x190");
        scanner.feed("[    3.86] Code: 53 66 <90> e8");
        scanner.feed("[    3.86] Code: 53 66 <90> e8");
        assert_eq!(scanner.count(Kernel::L2), 2);
        assert_eq!(scanner.other_int3, 0);
    }

    #[test]
    fn a_real_breakpoint_in_memory_is_not_environmental() {
        let mut scanner = FaultScanner::default();
        scanner.feed("[    1.0] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI");
        scanner.feed("[    1.0] RIP: 0010:foo+0x1/0x10");
        scanner.feed("[    1.0] Code: 90 90 cc <90> 90");
        assert!(scanner.first().is_none());
        assert_eq!(scanner.other_int3, 1);
    }

    #[test]
    fn other_panics_are_not_environmental() {
        let mut scanner = FaultScanner::default();
        for line in [
            "[    5.1] sysrq: Trigger a crash",
            "[    5.1] Kernel panic - not syncing: sysrq triggered crash",
            "[    5.1] Oops: general protection fault, probably for non-canonical address",
            "[    5.1] RIP: 0010:foo+0x1/0x10",
            "[    5.1] Code: 90 90 90 <0f> 0b",
            "Kernel panic - not syncing: Attempted to kill init!",
            "MINIVMM-L2-RESULT boot-smp FAIL online=1",
        ] {
            scanner.feed(line);
        }
        assert!(scanner.first().is_none());
        assert_eq!(scanner.other_int3, 0);
    }

    #[test]
    fn an_oops_without_opcode_bytes_is_not_classified() {
        let mut scanner = FaultScanner::default();
        scanner.feed("[    1.0] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI");
        scanner.feed("[    1.0] Code: Unable to access opcode bytes at 0xffffffff81000000.");
        assert!(scanner.first().is_none());
        assert_eq!(scanner.other_int3, 1);
    }
}
