//! Driving a program through a pseudo-terminal, the way a person at a
//! terminal would: `script` (util-linux) gives the program a pty, the test
//! types into it and waits for what it prints.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::Error;

/// How much of the output an error shows.
const TAIL_BYTES: usize = 4000;

/// A program running on a pty.
pub struct Terminal {
    child: Child,
    input: ChildStdin,
    output: Receiver<Vec<u8>>,
    /// Everything printed so far (terminal escapes included).
    seen: String,
    /// How much of `seen` earlier `expect` calls consumed.
    consumed: usize,
    started: Instant,
}

impl Terminal {
    /// Starts `bash -c COMMAND` on a new pty, with `env` added to the
    /// environment.
    pub fn spawn(command: &str, env: &[(&str, &str)]) -> Result<Self, Error> {
        let mut script = Command::new("script");
        script
            .args(["--quiet", "--flush", "--return", "--command"])
            .arg(format!("exec bash -c {}", shell_quote(command)))
            .arg("/dev/null")
            .env("TERM", "dumb")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let description = format!("{script:?}");
        let mut child = script.spawn().map_err(|source| Error::Spawn {
            command: description,
            source,
        })?;
        let (input, stdout) = match (child.stdin.take(), child.stdout.take()) {
            (Some(input), Some(stdout)) => (input, stdout),
            _ => unreachable!("stdin and stdout are piped"),
        };
        let (sender, output) = mpsc::channel();
        thread::spawn(move || {
            let mut stdout = stdout;
            let mut buffer = [0u8; 4096];
            loop {
                match stdout.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        // Echo to the test's stderr so a failure shows the session.
                        let _ = std::io::stderr().write_all(&buffer[..n]);
                        if sender.send(buffer[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Ok(Self {
            child,
            input,
            output,
            seen: String::new(),
            consumed: 0,
            started: Instant::now(),
        })
    }

    /// Time since the program started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits up to `limit` until the output after the last match contains
    /// `needle`; returns that output up to and including it.
    pub fn expect(&mut self, needle: &str, limit: Duration) -> Result<String, Error> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(at) = self.seen[self.consumed..].find(needle) {
                let end = self.consumed + at + needle.len();
                let text = self.seen[self.consumed..end].to_string();
                self.consumed = end;
                return Ok(text);
            }
            match self
                .output
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(bytes) => self.seen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(RecvTimeoutError::Timeout) => return Err(self.missing(needle, "timed out")),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.missing(needle, "the program ended"))
                }
            }
        }
    }

    /// Types `text`.
    pub fn send(&mut self, text: &str) -> Result<(), Error> {
        self.input
            .write_all(text.as_bytes())
            .and_then(|()| self.input.flush())
            .map_err(|source| Error::Io {
                path: "the terminal's input".into(),
                source,
            })
    }

    /// Waits up to `limit` for the program to end.
    pub fn wait(&mut self, limit: Duration) -> Result<ExitStatus, Error> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                return Err(self.missing("the end of the program", "timed out"));
            }
            // Keep the output flowing so the program never blocks on it.
            while let Ok(bytes) = self.output.try_recv() {
                self.seen.push_str(&String::from_utf8_lossy(&bytes));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn missing(&self, needle: &str, why: &str) -> Error {
        let start = self.seen.len().saturating_sub(TAIL_BYTES);
        let start = (start..self.seen.len())
            .find(|&i| self.seen.is_char_boundary(i))
            .unwrap_or(self.seen.len());
        Error::Terminal {
            expected: needle.to_string(),
            why: why.to_string(),
            after: self.elapsed(),
            tail: self.seen[start..].to_string(),
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `text` as one single-quoted shell word.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shell_on_a_pty_answers_what_is_typed() {
        let mut term = Terminal::spawn("read -r line; echo \"got[$line]\"; test -t 0", &[])
            .expect("script runs");
        term.send("hello\n").expect("typed");
        term.expect("got[hello]", Duration::from_secs(10))
            .expect("the answer");
        let status = term.wait(Duration::from_secs(10)).expect("it ends");
        assert!(status.success(), "stdin was not a terminal: {status}");
    }

    #[test]
    fn a_missing_answer_is_an_error_with_the_output() {
        let mut term = Terminal::spawn("echo something else", &[]).expect("script runs");
        let err = term
            .expect("never printed", Duration::from_secs(10))
            .expect_err("not printed");
        assert!(err.to_string().contains("something else"), "{err}");
    }

    #[test]
    fn quoting_keeps_single_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
