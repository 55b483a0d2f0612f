//! The `reserved_regions` format: one region per line, `0xSTART 0xEND
//! TYPE`, both addresses inclusive, TYPE as Linux's
//! `iommu_group_resv_type_string` names it (`direct`, `direct-relaxable`,
//! `reserved`, `msi`; `sw-msi` is read as `msi`). Files given with
//! `--host-regions` may also hold blank lines and `#` comments.

use std::path::Path;

use crate::{HostIommuError, HostRegion, HostRegionKind, Span};

fn kind(name: &str) -> Option<HostRegionKind> {
    Some(match name {
        "direct" => HostRegionKind::Direct,
        "direct-relaxable" => HostRegionKind::DirectRelaxable,
        "reserved" => HostRegionKind::Reserved,
        "msi" | "sw-msi" => HostRegionKind::Msi,
        _ => return None,
    })
}

fn address(field: &str) -> Result<u64, String> {
    let hex = field
        .strip_prefix("0x")
        .or_else(|| field.strip_prefix("0X"))
        .ok_or_else(|| format!("'{field}' is not a 0x-prefixed hex address"))?;
    u64::from_str_radix(hex, 16).map_err(|_| format!("'{field}' is not a 64-bit hex address"))
}

fn line(text: &str, source: &str) -> Result<Option<HostRegion>, String> {
    let text = text.split('#').next().unwrap_or_default().trim();
    if text.is_empty() {
        return Ok(None);
    }
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [start, end, name] = fields[..] else {
        return Err(format!("{} fields instead of 3", fields.len()));
    };
    let (start, end) = (address(start)?, address(end)?);
    let span = Span::new(start, end).ok_or("the end lies before the start")?;
    let kind = kind(name).ok_or_else(|| format!("unknown type '{name}'"))?;
    Ok(Some(HostRegion {
        span,
        kind,
        source: source.to_string(),
    }))
}

/// Parses a `reserved_regions` text read from `path` (named in errors);
/// each region's source is `source`.
pub fn parse_regions(
    text: &str,
    path: &str,
    source: &str,
) -> Result<Vec<HostRegion>, HostIommuError> {
    let mut regions = Vec::new();
    for (i, l) in text.lines().enumerate() {
        match line(l, source) {
            Ok(Some(r)) => regions.push(r),
            Ok(None) => {}
            Err(reason) => {
                return Err(HostIommuError::BadLine {
                    path: path.to_string(),
                    line: i + 1,
                    text: l.trim().to_string(),
                    reason,
                })
            }
        }
    }
    Ok(regions)
}

/// Reads a `--host-regions` file: another host's regions, in the sysfs
/// format. The regions' source is the file's path.
pub fn read_region_file(path: &Path) -> Result<Vec<HostRegion>, HostIommuError> {
    let text = std::fs::read_to_string(path).map_err(|err| HostIommuError::Read {
        path: path.to_path_buf(),
        err,
    })?;
    let name = path.display().to_string();
    parse_regions(&text, &name, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysfs_format() {
        let text = "0x00000000000e0000 0x00000000000effff direct\n\
                    0x00000000bf000000 0x00000000bfffffff direct-relaxable\n\
                    0x00000000fee00000 0x00000000feefffff msi\n\
                    0x000000fd00000000 0x000000ffffffffff reserved\n\
                    0x0000000008000000 0x00000000080fffff sw-msi\n";
        let r = parse_regions(text, "f", "0000:01:00.0").expect("parse");
        let got: Vec<_> = r
            .iter()
            .map(|r| (r.span.start, r.span.end, r.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                (0xe0000, 0xeffff, HostRegionKind::Direct),
                (0xbf00_0000, 0xbfff_ffff, HostRegionKind::DirectRelaxable),
                (0xfee0_0000, 0xfeef_ffff, HostRegionKind::Msi),
                (0xfd_0000_0000, 0xff_ffff_ffff, HostRegionKind::Reserved),
                (0x800_0000, 0x80f_ffff, HostRegionKind::Msi),
            ]
        );
        assert!(r.iter().all(|r| r.source == "0000:01:00.0"));
        assert_eq!(
            r[2].to_string(),
            "0xfee00000-0xfeefffff (msi) of 0000:01:00.0"
        );
    }

    #[test]
    fn comments_and_blank_lines() {
        let text = "# host B (AMD)\n\n0xfd00000000 0xffffffffff reserved # HT hole\n";
        assert_eq!(parse_regions(text, "b", "b").expect("parse").len(), 1);
        assert!(parse_regions("", "e", "e").expect("empty").is_empty());
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        for (text, reason) in [
            ("0x1000 0x1fff", "2 fields instead of 3"),
            ("0x1000 0x1fff msi extra", "4 fields"),
            ("1000 0x1fff msi", "not a 0x-prefixed"),
            ("0x1000 0xzz msi", "not a 64-bit hex"),
            ("0x1000 0x10000000000000000 msi", "not a 64-bit hex"),
            ("0x2000 0x1fff msi", "end lies before the start"),
            ("0x1000 0x1fff bogus", "unknown type 'bogus'"),
        ] {
            let input = format!("0xfee00000 0xfeefffff msi\n{text}\n");
            let err = parse_regions(&input, "hosts/b.txt", "b").expect_err(text);
            let msg = err.to_string();
            assert!(
                msg.starts_with("hosts/b.txt:2: bad reserved region"),
                "{msg}"
            );
            assert!(msg.contains(reason), "{msg}");
        }
    }

    #[test]
    fn missing_file_is_named() {
        let err = read_region_file(Path::new("/nonexistent/host.txt")).expect_err("missing");
        assert!(
            err.to_string()
                .starts_with("cannot read /nonexistent/host.txt: "),
            "{err}"
        );
    }
}
