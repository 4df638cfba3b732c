//! Kubernetes resource quantities (`500m`, `1.5`, `128Mi`, `1e3`) as integers: what cgroup
//! limits and `resourceFieldRef` need. Parsing follows the Kubernetes grammar (decimal SI,
//! binary SI and decimal-exponent suffixes) and rounds up, as `MilliValue()` and `Value()` do.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The machine's allocatable resources: what `limits.*` resolve to in a `resourceFieldRef`
/// when the container sets no limit (as the kubelet does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeResources {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
}

impl NodeResources {
    /// Measured: online cpus and `MemTotal` from /proc/meminfo; ephemeral storage unknown (0)
    /// unless the agent sets it.
    pub fn measure() -> NodeResources {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| l.strip_prefix("MemTotal:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()))
            })
            .map_or(0, |kb| kb * 1024);
        NodeResources { cpu_millis: cpus * 1000, memory_bytes, ephemeral_storage_bytes: 0 }
    }
}

/// A quantity in thousandths of its unit, rounded up (`"500m"` → 500, `"1Ki"` → 1_024_000).
/// `None` for text that is not a quantity or does not fit.
pub fn parse_milli(q: &str) -> Option<i128> {
    let s = q.trim();
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') || int_part.len() + frac_part.len() > 30 {
        return None;
    }
    let digits: i128 = format!("{int_part}{frac_part}").parse().ok()?;
    let scale = i32::try_from(frac_part.len()).ok()?;
    let (multiplier, pow10): (i128, i32) = match suffix {
        "" => (1, 0),
        "n" => (1, -9),
        "u" => (1, -6),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        other => {
            let exp = other.strip_prefix('e').or_else(|| other.strip_prefix('E'))?;
            (1, exp.parse::<i32>().ok().filter(|e| e.abs() <= 40)?)
        }
    };
    let base = digits.checked_mul(multiplier)?;
    let exp = pow10 + 3 - scale;
    let value = if exp >= 0 {
        base.checked_mul(10i128.checked_pow(exp.unsigned_abs())?)?
    } else {
        let divisor = 10i128.checked_pow(exp.unsigned_abs())?;
        // Round away from zero, as Kubernetes rounds a quantity up to the unit asked for.
        (base + divisor - 1) / divisor
    };
    Some(if negative { -value } else { value })
}

/// `limits.cpu`-style quantity in millicores (negative and invalid → `None`).
pub fn cpu_millis(q: &Quantity) -> Option<u64> {
    parse_milli(&q.0).and_then(|m| u64::try_from(m).ok())
}

/// `limits.memory`-style quantity in bytes, rounded up.
pub fn bytes(q: &Quantity) -> Option<u64> {
    parse_milli(&q.0).and_then(|m| u64::try_from((m + 999) / 1000).ok())
}

/// A container's limits (`limits`) or requests (`requests`) map.
fn resources<'a>(c: &'a Container, which: &str) -> Option<&'a BTreeMap<String, Quantity>> {
    let r = c.resources.as_ref()?;
    if which == "limits" { r.limits.as_ref() } else { r.requests.as_ref() }
}

/// The value of a `resourceFieldRef` (`limits.cpu`, `requests.memory`,
/// `limits.ephemeral-storage`, …) for `container`, divided by `divisor` and rounded up, as
/// the kubelet formats it. Limits the container does not set are the node's allocatable;
/// requests it does not set are its limits (API defaulting) or 0.
pub fn resource_field_value(
    container: &Container,
    resource: &str,
    divisor: Option<&Quantity>,
    node: &NodeResources,
) -> Result<String, String> {
    let (which, name) = resource.split_once('.').ok_or_else(|| format!("unsupported container resource: {resource}"))?;
    if which != "limits" && which != "requests" {
        return Err(format!("unsupported container resource: {resource}"));
    }
    let set = resources(container, which)
        .and_then(|m| m.get(name))
        .or_else(|| if which == "requests" { resources(container, "limits").and_then(|m| m.get(name)) } else { None });
    let default_milli: i128 = match (which, name) {
        ("limits", "cpu") => i128::from(node.cpu_millis),
        ("limits", "memory") => i128::from(node.memory_bytes) * 1000,
        ("limits", "ephemeral-storage") => i128::from(node.ephemeral_storage_bytes) * 1000,
        ("requests", "cpu" | "memory" | "ephemeral-storage") => 0,
        _ => return Err(format!("unsupported container resource: {resource}")),
    };
    let value = match set {
        Some(q) => parse_milli(&q.0).ok_or_else(|| format!("invalid quantity {:?} for {resource}", q.0))?,
        None => default_milli,
    };
    let divisor = match divisor {
        Some(d) => parse_milli(&d.0).ok_or_else(|| format!("invalid divisor {:?}", d.0))?,
        // `1` for cpu (cores) and for bytes.
        None => 1000,
    };
    if divisor <= 0 {
        return Err(format!("invalid divisor for {resource}"));
    }
    // Ceiling division of non-negative values.
    let out = if value <= 0 { 0 } else { (value + divisor - 1) / divisor };
    Ok(out.to_string())
}

/// The cgroup limits of a container.
pub fn limits_of(container: &Container) -> crate::runtime::Limits {
    let limit = |name: &str| resources(container, "limits").and_then(|m| m.get(name));
    let request = |name: &str| resources(container, "requests").and_then(|m| m.get(name)).or_else(|| limit(name));
    crate::runtime::Limits {
        cpu_millis: limit("cpu").and_then(cpu_millis).filter(|&m| m > 0),
        memory_bytes: limit("memory").and_then(bytes).filter(|&b| b > 0),
        cpu_request_millis: request("cpu").and_then(cpu_millis),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_string())
    }

    #[test]
    fn parses_the_kubernetes_grammar() {
        assert_eq!(parse_milli("500m"), Some(500));
        assert_eq!(parse_milli("1"), Some(1000));
        assert_eq!(parse_milli("1.5"), Some(1500));
        assert_eq!(parse_milli(".5"), Some(500));
        assert_eq!(parse_milli("128Mi"), Some(128 * 1024 * 1024 * 1000));
        assert_eq!(parse_milli("1G"), Some(1_000_000_000_000));
        assert_eq!(parse_milli("1e3"), Some(1_000_000));
        assert_eq!(parse_milli("1E"), Some(1_000_000_000_000_000_000_000));
        assert_eq!(parse_milli("100n"), Some(1));
        assert_eq!(parse_milli("-2"), Some(-2000));
        assert_eq!(parse_milli(""), None);
        assert_eq!(parse_milli("1.2.3"), None);
        assert_eq!(parse_milli("12Q"), None);
        assert_eq!(bytes(&q("1.5Ki")), Some(1536));
        assert_eq!(bytes(&q("1m")), Some(1));
        assert_eq!(cpu_millis(&q("250m")), Some(250));
    }

    #[test]
    fn resource_field_refs_divide_and_default() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "resources": {"limits": {"cpu": "1500m", "memory": "64Mi"}, "requests": {"cpu": "250m"}}
        }))
        .unwrap();
        let node = NodeResources { cpu_millis: 4000, memory_bytes: 8 << 30, ephemeral_storage_bytes: 0 };
        assert_eq!(resource_field_value(&c, "limits.cpu", None, &node).unwrap(), "2");
        assert_eq!(resource_field_value(&c, "limits.cpu", Some(&q("1m")), &node).unwrap(), "1500");
        assert_eq!(resource_field_value(&c, "limits.memory", Some(&q("1Mi")), &node).unwrap(), "64");
        assert_eq!(resource_field_value(&c, "requests.cpu", Some(&q("1m")), &node).unwrap(), "250");
        // No memory request: the limit (API defaulting).
        assert_eq!(resource_field_value(&c, "requests.memory", None, &node).unwrap(), (64u64 << 20).to_string());
        let bare = Container { name: "b".into(), ..Default::default() };
        assert_eq!(resource_field_value(&bare, "limits.cpu", None, &node).unwrap(), "4");
        assert_eq!(resource_field_value(&bare, "requests.cpu", None, &node).unwrap(), "0");
        assert!(resource_field_value(&bare, "limits.gpu", None, &node).is_err());
        let l = limits_of(&c);
        assert_eq!((l.cpu_millis, l.memory_bytes, l.cpu_request_millis), (Some(1500), Some(64 << 20), Some(250)));
    }
}
