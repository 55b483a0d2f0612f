//! What the API scenarios print, parsed: every request as a `MINIVMM-API
//! METHOD PATH status=N body=B` line (`resources/nested-host/scenarios/
//! api.inc`), and `PREFIX key=value ...` marker lines.

#![allow(dead_code)]

use minivmm_tests::Run;
use serde_json::Value;

/// One `MINIVMM-API METHOD PATH status=N body=B` line.
#[derive(Debug)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub body: String,
}

impl Call {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {}: body is not JSON ({e}): {}",
                self.method, self.path, self.body
            )
        })
    }
}

pub fn calls(run: &Run, scenario: &str) -> Vec<Call> {
    let outcome = run
        .scenario(scenario)
        .unwrap_or_else(|| panic!("{scenario} did not run"));
    outcome
        .console
        .iter()
        .filter_map(|line| {
            let rest = line.split_once("MINIVMM-API ")?.1;
            let (head, body) = rest.split_once(" body=")?;
            let mut words = head.rsplitn(2, " status=");
            let status = words.next()?.parse().ok()?;
            let (method, path) = words.next()?.rsplit_once(' ')?;
            Some(Call {
                method: method.to_string(),
                path: path.to_string(),
                status,
                body: body.to_string(),
            })
        })
        .collect()
}

/// The `n`th (from 0) call to `path`.
pub fn nth<'a>(calls: &'a [Call], method: &str, path: &str, n: usize) -> &'a Call {
    calls
        .iter()
        .filter(|c| c.method == method && c.path == path)
        .nth(n)
        .unwrap_or_else(|| panic!("no call #{n} of {method} {path} in {calls:#?}"))
}
