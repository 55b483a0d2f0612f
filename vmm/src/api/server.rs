//! The API thread: accepts connections one at a time, reads one bounded
//! request each (with read and write timeouts, so a slow or silent client
//! holds the thread for at most [`IO_TIMEOUT`]), answers what routing can
//! answer itself, and hands the rest to the control loop through a channel
//! plus an eventfd that wakes the loop. It never touches the VM.

use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::http::{read_request, write_response, Response};
use super::routes::{route, ApiRequest};

/// How long one read or write on a connection may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A request for the control loop and where its answer goes. `done` (when
/// set) is signalled once the answer reached the client, so that the loop
/// can exit after answering `vmm.shutdown`.
pub struct Envelope {
    /// The request.
    pub request: ApiRequest,
    /// Where the answer goes.
    pub reply: Sender<Reply>,
}

/// The control loop's answer.
pub struct Reply {
    /// What the client gets.
    pub response: Response,
    /// Signalled once the response was written.
    pub done: Option<Sender<()>>,
}

/// The control loop's end of the channel.
pub struct ApiReceiver {
    /// Requests, in arrival order.
    pub requests: Receiver<Envelope>,
    /// Readable when requests wait (the loop reads it, then drains).
    pub notify: EventFd,
}

/// Starts the API thread on `listener`; returns the control loop's end.
pub fn start(listener: UnixListener) -> std::io::Result<ApiReceiver> {
    let notify = EventFd::new(EFD_NONBLOCK)?;
    let wake = notify.try_clone()?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("api".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => serve(stream, &tx, &wake),
                    Err(e) => {
                        log::warn!("api: accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        })?;
    Ok(ApiReceiver {
        requests: rx,
        notify,
    })
}

/// Answers one connection.
fn serve(mut stream: UnixStream, tx: &Sender<Envelope>, wake: &EventFd) {
    if let Err(e) = stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
    {
        log::warn!("api: cannot set socket timeouts: {e}");
        return;
    }
    let request = match read_request(&mut stream) {
        Ok(r) => r,
        Err(e) => {
            log::debug!("api: {e}");
            if let Some(response) = e.response() {
                let _ = write_response(&mut stream, &response);
                drain(&mut stream);
            }
            return;
        }
    };
    log::debug!("api: {} {}", request.method, request.path);
    let reply = match route(&request) {
        Err(response) => Reply {
            response,
            done: None,
        },
        Ok(api) => ask(api, tx, wake),
    };
    if let Err(e) = write_response(&mut stream, &reply.response) {
        log::debug!("api: cannot answer: {e}");
    }
    drop(stream);
    if let Some(done) = reply.done {
        let _ = done.send(());
    }
}

/// Most bytes of a refused request discarded after the answer.
const DRAIN_BYTES: usize = 1 << 20;
/// How long discarding them may take.
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// After answering a refused request (413 and the like): stops writing and
/// discards what the client still sends, up to [`DRAIN_BYTES`] for at most
/// [`DRAIN_TIME`], into a fixed buffer, so that closing does not reset the
/// connection before the client read the answer.
fn drain(stream: &mut UnixStream) {
    use std::io::Read;
    if stream.shutdown(std::net::Shutdown::Write).is_err()
        || stream.set_read_timeout(Some(DRAIN_TIME)).is_err()
    {
        return;
    }
    let start = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    let mut total = 0;
    while total < DRAIN_BYTES && start.elapsed() < DRAIN_TIME {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
}

/// Sends `request` to the control loop and waits for its answer.
fn ask(request: ApiRequest, tx: &Sender<Envelope>, wake: &EventFd) -> Reply {
    let (reply, answer) = mpsc::channel();
    let gone = || Reply {
        response: Response::error(503, &["the VMM is shutting down".into()]),
        done: None,
    };
    if tx.send(Envelope { request, reply }).is_err() {
        return gone();
    }
    if let Err(e) = wake.write(1) {
        log::error!("api: cannot wake the control loop: {e}");
    }
    answer.recv().unwrap_or_else(|_| gone())
}
