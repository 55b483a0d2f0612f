//! HTTP/1.1 framing for the API socket: one request per connection, read
//! with bounded headers and body (`httparse` parses the head), and one
//! response written back with `Connection: close`.
//!
//! Every limit is fixed here, never taken from the client: at most
//! [`MAX_HEAD_BYTES`] of request line and headers (431 beyond), at most
//! [`MAX_HEADERS`] headers, at most [`MAX_BODY_BYTES`] of body (413, and the
//! connection is closed without reading it), `Content-Length` required for a
//! body (chunked transfer is refused with 411).

use std::io::{Read, Write};

/// Most bytes of request line plus headers.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most header lines.
pub const MAX_HEADERS: usize = 32;
/// Most body bytes (a VM configuration with every device fits many times).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// One parsed request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// The request target without its query string.
    pub path: String,
    /// The body (empty when there is none).
    pub body: Vec<u8>,
}

/// One response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// JSON body, if any.
    pub body: Option<String>,
    /// The `Allow` header (405 answers).
    pub allow: Option<String>,
}

impl Response {
    /// A response with `status` and no body.
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            body: None,
            allow: None,
        }
    }

    /// 200 with a JSON body.
    pub fn json(body: String) -> Self {
        Self {
            status: 200,
            body: Some(body),
            allow: None,
        }
    }

    /// An error: `status` with the body cloud-hypervisor clients expect, a
    /// JSON array of messages (the outermost first).
    pub fn error(status: u16, messages: &[String]) -> Self {
        Self {
            status,
            body: Some(serde_json::Value::from(messages.to_vec()).to_string()),
            allow: None,
        }
    }
}

/// Why no request could be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    /// The peer closed before sending anything (no answer is due).
    #[error("connection closed")]
    Closed,
    /// The read failed or timed out (no answer can be sent reliably).
    #[error("cannot read the request: {0}")]
    Io(String),
    /// Not HTTP/1.x.
    #[error("malformed HTTP request: {0}")]
    Malformed(String),
    /// Request line and headers too long, or too many headers.
    #[error("request headers exceed {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} lines")]
    HeadTooLarge,
    /// The body is larger than [`MAX_BODY_BYTES`].
    #[error("request body of {0} bytes exceeds the limit of {MAX_BODY_BYTES} bytes")]
    BodyTooLarge(u64),
    /// A body without `Content-Length`.
    #[error("chunked request bodies are not supported: send Content-Length")]
    LengthRequired,
}

impl ReadError {
    /// The answer to send, if one is due.
    pub fn response(&self) -> Option<Response> {
        let status = match self {
            ReadError::Closed | ReadError::Io(_) => return None,
            ReadError::Malformed(_) => 400,
            ReadError::HeadTooLarge => 431,
            ReadError::BodyTooLarge(_) => 413,
            ReadError::LengthRequired => 411,
        };
        Some(Response::error(status, &[self.to_string()]))
    }
}

fn io_error(e: std::io::Error) -> ReadError {
    ReadError::Io(e.to_string())
}

/// The request head found in `buf`: (method, path, content length,
/// bytes of head).
fn parse_head(buf: &[u8]) -> Result<Option<(String, String, u64, usize)>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ReadError::HeadTooLarge),
        Err(e) => return Err(ReadError::Malformed(e.to_string())),
    };
    let method = request.method.unwrap_or_default().to_string();
    let target = request.path.unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default().to_string();
    let mut length: Option<u64> = None;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ReadError::LengthRequired);
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| ReadError::Malformed("bad Content-Length".into()))?;
            if length.is_some_and(|l| l != value) {
                return Err(ReadError::Malformed("conflicting Content-Length".into()));
            }
            length = Some(value);
        }
    }
    Ok(Some((method, path, length.unwrap_or(0), head_len)))
}

/// Reads one request from `stream`. The stream's own timeouts bound how
/// long a slow client can hold the connection.
pub fn read_request(stream: &mut impl Read) -> Result<Request, ReadError> {
    let mut buf = vec![0u8; MAX_HEAD_BYTES];
    let mut filled = 0;
    let (method, path, length, head_len) = loop {
        let n = stream.read(&mut buf[filled..]).map_err(io_error)?;
        if n == 0 {
            return Err(if filled == 0 {
                ReadError::Closed
            } else {
                ReadError::Malformed("connection closed inside the request head".into())
            });
        }
        filled += n;
        if let Some(head) = parse_head(&buf[..filled])? {
            break head;
        }
        if filled == buf.len() {
            return Err(ReadError::HeadTooLarge);
        }
    };
    if length > MAX_BODY_BYTES as u64 {
        return Err(ReadError::BodyTooLarge(length));
    }
    let length = length as usize;
    let mut body = Vec::with_capacity(length);
    let already = &buf[head_len..filled];
    body.extend_from_slice(&already[..already.len().min(length)]);
    let missing = length - body.len();
    if missing > 0 {
        let start = body.len();
        body.resize(length, 0);
        stream.read_exact(&mut body[start..]).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                ReadError::Malformed(format!(
                    "the body ended before its Content-Length of {length} bytes"
                ))
            } else {
                io_error(e)
            }
        })?;
    }
    Ok(Request { method, path, body })
}

/// The reason phrase of `status`.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Writes `response` to `stream`.
pub fn write_response(stream: &mut impl Write, response: &Response) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nServer: minivmm API\r\nConnection: close\r\n",
        response.status,
        reason(response.status)
    );
    if let Some(allow) = &response.allow {
        head.push_str(&format!("Allow: {allow}\r\n"));
    }
    match &response.body {
        Some(body) => head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )),
        None if response.status == 204 => head.push_str("\r\n"),
        None => head.push_str("Content-Length: 0\r\n\r\n"),
    }
    stream.write_all(head.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Request, ReadError> {
        read_request(&mut std::io::Cursor::new(bytes.to_vec()))
    }

    /// A reader that hands out its bytes a few at a time.
    struct Trickle(Vec<u8>, usize);

    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = out.len().min(3).min(self.0.len() - self.1);
            out[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }

    #[test]
    fn reads_a_request_with_a_body_in_pieces() {
        let raw = b"PUT /api/v1/vm.create?x=1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 7\r\n\r\n{\"a\":1}";
        let got = read_request(&mut Trickle(raw.to_vec(), 0)).expect("request");
        assert_eq!(
            got,
            Request {
                method: "PUT".into(),
                path: "/api/v1/vm.create".into(),
                body: b"{\"a\":1}".to_vec(),
            }
        );
        let get = read(b"GET /api/v1/vmm.ping HTTP/1.0\r\n\r\n").expect("get");
        assert!(get.body.is_empty());
    }

    #[test]
    fn garbage_and_truncation_are_malformed() {
        for raw in [
            &b"\x00\x01\x02garbage\r\n\r\n"[..],
            b"GET / HTTP/9\r\n\r\n",
            b"PUT /x HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
            b"PUT /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"PUT /x HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort",
            b"GET /x HTTP/1.1\r\nHost",
        ] {
            let err = read(raw).expect_err("malformed");
            assert!(matches!(err, ReadError::Malformed(_)), "{raw:?}: {err:?}");
            assert_eq!(err.response().map(|r| r.status), Some(400));
        }
        assert_eq!(read(b""), Err(ReadError::Closed));
        assert_eq!(ReadError::Closed.response(), None);
    }

    #[test]
    fn limits_are_enforced_without_reading_the_excess() {
        let mut huge = b"GET /x HTTP/1.1\r\nX-Long: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
        assert_eq!(read(&huge), Err(ReadError::HeadTooLarge));
        let mut many = b"GET /x HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend(format!("X-{i}: 1\r\n").bytes());
        }
        many.extend(b"\r\n");
        assert_eq!(read(&many), Err(ReadError::HeadTooLarge));
        let big = format!(
            "PUT /x HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_BYTES + 1
        );
        let err = read(big.as_bytes()).expect_err("413");
        assert_eq!(err, ReadError::BodyTooLarge(MAX_BODY_BYTES as u64 + 1));
        assert_eq!(err.response().map(|r| r.status), Some(413));
        let absurd = b"PUT /x HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n";
        assert!(matches!(read(absurd), Err(ReadError::Malformed(_))));
        let chunked =
            b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(read(chunked), Err(ReadError::LengthRequired));
    }

    #[test]
    fn responses_are_framed() {
        let mut out = Vec::new();
        write_response(&mut out, &Response::empty(204)).expect("write");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 204 No Content\r\nServer: minivmm API\r\nConnection: close\r\n\r\n"
        );
        let mut out = Vec::new();
        let mut r = Response::error(405, &["no".into()]);
        r.allow = Some("GET".into());
        write_response(&mut out, &r).expect("write");
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nAllow: GET\r\n"), "{text}");
        assert!(
            text.ends_with("Content-Length: 6\r\n\r\n[\"no\"]"),
            "{text}"
        );
    }
}
