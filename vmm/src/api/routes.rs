//! Routing: which paths under `/api/v1/` exist, with which method, and the
//! [`ApiRequest`] each becomes. Everything answered without the VM (unknown
//! path 404, wrong method 405, a body that does not parse 400, an endpoint
//! of cloud-hypervisor's that minivmm does not implement 501) is answered
//! here, on the API thread.

use super::http::{Request, Response};
use super::types::{CreateBody, DeviceBody, DiskBody, RemoveBody};

/// Where the API lives.
pub const API_ROOT: &str = "/api/v1/";

/// What the control loop is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiRequest {
    /// `GET vmm.ping`.
    VmmPing,
    /// `PUT vmm.shutdown`: stop the VM if one runs, then exit.
    VmmShutdown,
    /// `PUT vm.create`.
    VmCreate(Box<CreateBody>),
    /// `PUT vm.delete`.
    VmDelete,
    /// `PUT vm.boot`.
    VmBoot,
    /// `PUT vm.shutdown`.
    VmShutdown,
    /// `PUT vm.reboot`.
    VmReboot,
    /// `GET vm.info`.
    VmInfo,
    /// `GET vm.counters`.
    VmCounters,
    /// `GET vm.plan` (minivmm's own).
    VmPlan,
    /// `PUT vm.add-device`.
    VmAddDevice(DeviceBody),
    /// `PUT vm.add-disk`.
    VmAddDisk(DiskBody),
    /// `PUT vm.remove-device`.
    VmRemoveDevice(RemoveBody),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Put,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
        }
    }
}

type Build = fn(&[u8]) -> Result<ApiRequest, String>;

/// The endpoints minivmm serves.
const ENDPOINTS: &[(&str, Method, Build)] = &[
    ("vmm.ping", Method::Get, |_| Ok(ApiRequest::VmmPing)),
    ("vmm.shutdown", Method::Put, |_| Ok(ApiRequest::VmmShutdown)),
    ("vm.create", Method::Put, |b| {
        CreateBody::parse(b)
            .map(|c| ApiRequest::VmCreate(Box::new(c)))
            .map_err(|e| e.0)
    }),
    ("vm.delete", Method::Put, |_| Ok(ApiRequest::VmDelete)),
    ("vm.boot", Method::Put, |_| Ok(ApiRequest::VmBoot)),
    ("vm.shutdown", Method::Put, |_| Ok(ApiRequest::VmShutdown)),
    ("vm.reboot", Method::Put, |_| Ok(ApiRequest::VmReboot)),
    ("vm.info", Method::Get, |_| Ok(ApiRequest::VmInfo)),
    ("vm.counters", Method::Get, |_| Ok(ApiRequest::VmCounters)),
    ("vm.plan", Method::Get, |_| Ok(ApiRequest::VmPlan)),
    ("vm.add-device", Method::Put, |b| {
        DeviceBody::parse(b)
            .map(ApiRequest::VmAddDevice)
            .map_err(|e| e.0)
    }),
    ("vm.add-disk", Method::Put, |b| {
        DiskBody::parse(b)
            .map(ApiRequest::VmAddDisk)
            .map_err(|e| e.0)
    }),
    ("vm.remove-device", Method::Put, |b| {
        RemoveBody::parse(b)
            .map(ApiRequest::VmRemoveDevice)
            .map_err(|e| e.0)
    }),
];

/// cloud-hypervisor endpoints minivmm knows and does not implement.
const NOT_IMPLEMENTED: &[&str] = &[
    "vm.pause",
    "vm.resume",
    "vm.power-button",
    "vm.resize",
    "vm.resize-disk",
    "vm.resize-zone",
    "vm.add-fs",
    "vm.add-generic-vhost-user",
    "vm.add-pmem",
    "vm.add-net",
    "vm.add-vsock",
    "vm.add-vdpa",
    "vm.add-user-device",
    "vm.snapshot",
    "vm.coredump",
    "vm.nmi",
    "vm.restore",
    "vm.receive-migration",
    "vm.send-migration",
];

/// The request `request` makes, or the answer it gets without the VM.
pub fn route(request: &Request) -> Result<ApiRequest, Response> {
    let Some(name) = request.path.strip_prefix(API_ROOT) else {
        return Err(not_found(&request.path));
    };
    let Some((_, method, build)) = ENDPOINTS.iter().find(|(n, _, _)| *n == name) else {
        if NOT_IMPLEMENTED.contains(&name) {
            return Err(Response::error(
                501,
                &[format!(
                    "{name} is a cloud-hypervisor endpoint that minivmm does not implement (see docs/api.md)"
                )],
            ));
        }
        return Err(not_found(&request.path));
    };
    if request.method != method.name() {
        let mut response = Response::error(
            405,
            &[format!(
                "{} {name}: this endpoint takes {}",
                request.method,
                method.name()
            )],
        );
        response.allow = Some(method.name().to_string());
        return Err(response);
    }
    build(&request.body).map_err(|message| Response::error(400, &[message]))
}

fn not_found(path: &str) -> Response {
    let shown: String = path.chars().take(100).collect();
    Response::error(
        404,
        &[format!(
            "no endpoint {shown}: minivmm serves {API_ROOT}vmm.ping, vm.create, vm.boot, vm.info, ... (see docs/api.md)"
        )],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str, body: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn status(method: &str, path: &str, body: &str) -> u16 {
        match route(&request(method, path, body)) {
            Ok(_) => 0,
            Err(r) => r.status,
        }
    }

    #[test]
    fn every_endpoint_routes_with_its_method() {
        assert_eq!(
            route(&request("GET", "/api/v1/vmm.ping", "")),
            Ok(ApiRequest::VmmPing)
        );
        assert_eq!(
            route(&request("PUT", "/api/v1/vm.boot", "")),
            Ok(ApiRequest::VmBoot)
        );
        assert_eq!(
            route(&request("GET", "/api/v1/vm.plan", "")),
            Ok(ApiRequest::VmPlan)
        );
        for (name, method, _) in ENDPOINTS {
            let other = if *method == Method::Get { "PUT" } else { "GET" };
            let path = format!("{API_ROOT}{name}");
            let err = route(&request(other, &path, "")).expect_err(name);
            assert_eq!(err.status, 405, "{name}");
            assert_eq!(err.allow.as_deref(), Some(method.name()));
            assert_eq!(status("DELETE", &path, ""), 405);
        }
    }

    #[test]
    fn unknown_paths_unimplemented_endpoints_and_bad_bodies() {
        assert_eq!(status("GET", "/api/v1/vm.nope", ""), 404);
        assert_eq!(status("GET", "/", ""), 404);
        assert_eq!(status("GET", "/api/v2/vmm.ping", ""), 404);
        assert_eq!(status("GET", "/api/v1/vmm.ping/", ""), 404);
        assert_eq!(status("PUT", "/api/v1/vm.pause", ""), 501);
        assert_eq!(status("PUT", "/api/v1/vm.create", "{not json"), 400);
        assert_eq!(status("PUT", "/api/v1/vm.create", ""), 400);
        assert_eq!(
            status(
                "PUT",
                "/api/v1/vm.create",
                r#"{"payload":{"kernel":"/k"},"x":1}"#
            ),
            400
        );
        assert_eq!(
            status("PUT", "/api/v1/vm.remove-device", r#"{"di":"a"}"#),
            400
        );
        let long = format!("/{}", "a".repeat(5000));
        let err = route(&request("GET", &long, "")).expect_err("404");
        assert!(err.body.is_some_and(|b| b.len() < 400));
    }
}
