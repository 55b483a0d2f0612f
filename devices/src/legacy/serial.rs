//! The 16550 UART console: vm-superio's model on the bus, its interrupt an
//! eventfd (the VMM turns it into a KVM irqfd), and flow control for input:
//! when the receive FIFO fills, the console asks to be woken once the guest
//! has drained it.

use std::io::Write;
use std::sync::Arc;

use vm_superio::serial::SerialEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::BusDevice;

/// Raises an interrupt by signalling an eventfd.
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// Signals an eventfd whenever the guest empties the receive FIFO.
pub struct InputDrained(EventFd);

impl SerialEvents for InputDrained {
    fn buffer_read(&self) {}
    fn out_byte(&self) {}
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {
        if let Err(e) = self.0.write(1) {
            log::warn!("serial: cannot signal drained input: {e}");
        }
    }
}

/// COM1, writing the guest's output to `W`.
pub struct SerialConsole<W: Write + Send> {
    uart: Serial<IrqTrigger, Arc<InputDrained>, W>,
    drained: Arc<InputDrained>,
}

impl<W: Write + Send> SerialConsole<W> {
    /// A UART raising `irq` and writing output to `out`.
    pub fn new(irq: EventFd, out: W) -> std::io::Result<Self> {
        let drained = Arc::new(InputDrained(EventFd::new(EFD_NONBLOCK)?));
        Ok(Self {
            uart: Serial::with_events(IrqTrigger(irq), drained.clone(), out),
            drained,
        })
    }

    /// Readable after the guest emptied the receive FIFO.
    pub fn drained_eventfd(&self) -> &EventFd {
        &self.drained.0
    }

    /// Free space in the receive FIFO.
    pub fn input_capacity(&self) -> usize {
        self.uart.fifo_capacity()
    }

    /// Queues host input for the guest; returns how many bytes were taken.
    pub fn queue_input(&mut self, bytes: &[u8]) -> usize {
        if bytes.is_empty() || self.uart.fifo_capacity() == 0 {
            return 0;
        }
        match self.uart.enqueue_raw_bytes(bytes) {
            Ok(n) => n,
            Err(e) => {
                log::warn!("serial: dropping input: {e}");
                0
            }
        }
    }

    /// The output sink.
    pub fn output(&self) -> &W {
        self.uart.writer()
    }
}

impl<W: Write + Send> BusDevice for SerialConsole<W> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if let (Ok(reg), [byte]) = (u8::try_from(offset), data) {
            *byte = self.uart.read(reg);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let (Ok(reg), [byte]) = (u8::try_from(offset), data) else {
            return;
        };
        if let Err(e) = self.uart.write(reg, *byte) {
            log::warn!("serial: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THR: u64 = 0;
    const IER: u64 = 1;
    const LSR: u64 = 5;
    const LSR_DATA_READY: u8 = 1;

    fn console() -> (SerialConsole<Vec<u8>>, EventFd) {
        let irq = EventFd::new(EFD_NONBLOCK).expect("eventfd");
        let irq2 = irq.try_clone().expect("clone");
        (SerialConsole::new(irq, Vec::new()).expect("console"), irq2)
    }

    #[test]
    fn output_reaches_the_sink() {
        let (mut c, _) = console();
        for b in b"hi\n" {
            c.write(THR, &[*b]);
        }
        assert_eq!(c.output(), b"hi\n");
    }

    #[test]
    fn input_raises_the_irq_and_drain_is_signalled() {
        let (mut c, irq) = console();
        c.write(IER, &[1]); // receive-data-available interrupt on
        assert_eq!(c.queue_input(b"ab"), 2);
        assert_eq!(irq.read().expect("irq raised"), 1);
        let mut b = [0u8];
        c.read(LSR, &mut b);
        assert_eq!(b[0] & LSR_DATA_READY, LSR_DATA_READY);
        c.read(THR, &mut b);
        assert_eq!(b[0], b'a');
        assert!(c.drained_eventfd().read().is_err(), "not drained yet");
        c.read(THR, &mut b);
        assert_eq!(b[0], b'b');
        assert_eq!(c.drained_eventfd().read().expect("drained"), 1);
    }

    #[test]
    fn full_fifo_takes_no_more() {
        let (mut c, _) = console();
        let cap = c.input_capacity();
        assert_eq!(c.queue_input(&vec![b'x'; cap + 10]), cap);
        assert_eq!(c.queue_input(b"y"), 0);
    }

    #[test]
    fn wide_or_wild_accesses_are_harmless() {
        let (mut c, _) = console();
        let mut wide = [0u8; 4];
        c.read(0, &mut wide);
        assert_eq!(wide, [0xff; 4]);
        c.write(THR, &[1, 2]);
        c.write(u64::MAX, &[1]);
        assert!(c.output().is_empty());
    }
}
