//! File system and network confinement with Landlock: the read and write
//! allow lists, and TCP port rules under the network policy, added to the
//! one Landlock domain every spawn enters (the isolation module's
//! [`DomainPlan`]), with the rights the kernel lacks either refused or,
//! when the caller allowed it, degraded and reported.
//!
//! Plugs into the sandbox through the builder's plan: `build()` hands the
//! domain to [`apply`] after the isolation module made it; nothing runs in
//! the supervisor (Landlock needs no round trip). Metadata changes
//! (`chmod`, `chown`, times, extended attributes), which Landlock does not
//! restrict, and the calls path denial performs on the program's behalf
//! (outside the domain) are checked against the same lists by the paths
//! feature ([`FsLists`]). Calls `isolation`, `net`, `paths` (for the lists'
//! type) and `sys::landlock`; called by `sandbox`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::isolation::{fs_rights_known, DomainPlan};
use crate::landlock::{Right, SYSTEM_READ, SYSTEM_WRITE};
use crate::net::{Mode, NetPolicy, Ports};
use crate::sys::landlock::{
    ACCESS_FS_EXECUTE, ACCESS_FS_READ_DIR, ACCESS_FS_READ_FILE, ACCESS_NET_CONNECT_TCP,
};

pub(crate) use crate::paths::FsLists;

/// The rights beneath a read path: execute, read files, list directories.
const READ: u64 = ACCESS_FS_EXECUTE | ACCESS_FS_READ_FILE | ACCESS_FS_READ_DIR;

/// At most this many TCP port rules: a longer port list is left to the
/// supervisor alone.
const MAX_PORT_RULES: usize = 1024;

/// What the caller asked for (the builder's part of this feature).
#[derive(Clone, Debug, Default)]
pub(crate) struct Spec {
    /// `fs_read` paths, as given.
    pub(crate) read: Vec<PathBuf>,
    /// `fs_write` paths, as given (write implies read).
    pub(crate) write: Vec<PathBuf>,
    /// The system read set ([`SYSTEM_READ`], [`SYSTEM_WRITE`]).
    pub(crate) system: bool,
    /// Rights the caller accepts to lose on an older kernel.
    pub(crate) allow_degraded: Vec<Right>,
}

impl Spec {
    /// Whether the file system is confined to allow lists.
    pub(crate) fn confines_fs(&self) -> bool {
        !self.read.is_empty() || !self.write.is_empty() || self.system
    }
}

/// What [`apply`] decided.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// The rights the kernel lacks and the caller let degrade.
    pub(crate) degraded: Vec<Right>,
    /// The allow lists, canonical (for the supervisor's own checks), when
    /// the file system is confined.
    pub(crate) lists: Option<FsLists>,
}

/// Adds the allow lists and port rules of `spec` and `net` to `domain`
/// (`None`: no Landlock), after checking that the kernel has every right
/// they need (else [`Error::MissingRight`], unless allowed to degrade).
pub(crate) fn apply(
    spec: &Spec,
    domain: Option<&mut DomainPlan>,
    net: Option<&NetPolicy>,
) -> Result<Applied> {
    let kernel_abi = domain.as_ref().map_or(0, |d| d.abi());
    let lists = if spec.confines_fs() {
        Some(lists(spec)?)
    } else {
        None
    };
    let ports = net.and_then(connect_ports);
    let mut needed = Vec::new();
    if let Some(l) = &lists {
        needed.extend([Right::Filesystem, Right::Truncate, Right::IoctlDev]);
        if !l.write.is_empty() {
            needed.push(Right::Refer);
        }
    }
    if ports.is_some() {
        needed.push(Right::Network);
    }
    let mut applied = Applied::default();
    needed.sort();
    for right in needed {
        if right.abi() <= kernel_abi {
            continue;
        }
        if !spec.allow_degraded.contains(&right) {
            return Err(Error::MissingRight { right, kernel_abi });
        }
        log::warn!(
            "Landlock right `{right}` needs ABI {} (this kernel: {kernel_abi}); allowed to degrade: {}",
            right.abi(),
            right.degraded_means()
        );
        applied.degraded.push(right);
    }
    if kernel_abi < Right::Scoping.abi() {
        // Accepted by the isolation plan (allow_weak_isolation), which
        // logs it.
        applied.degraded.push(Right::Scoping);
    }
    if let Some(domain) = domain {
        if let Some(l) = &lists {
            let all = fs_rights_known(kernel_abi);
            let mut rules: Vec<(PathBuf, u64)> = l.read.iter().map(|p| (p.clone(), READ)).collect();
            rules.extend(l.write.iter().map(|p| (p.clone(), all)));
            domain
                .confine_fs(all, rules)
                .map_err(|e| Error::setup("create the Landlock ruleset", e))?;
        }
        if let Some(ports) = ports.filter(|_| kernel_abi >= Right::Network.abi()) {
            domain.confine_net(
                ACCESS_NET_CONNECT_TCP,
                ports
                    .into_iter()
                    .map(|p| (p, ACCESS_NET_CONNECT_TCP))
                    .collect(),
            );
        }
    }
    applied.lists = lists;
    Ok(applied)
}

/// The canonical allow lists of `spec`, if it confines the file system.
pub(crate) fn fs_lists(spec: &Spec) -> Result<Option<FsLists>> {
    spec.confines_fs().then(|| lists(spec)).transpose()
}

/// The denied set path denial enforces: `set`, also held to `lists`.
pub(crate) fn held_to(
    set: &std::sync::Arc<crate::paths::DeniedPaths>,
    lists: Option<FsLists>,
) -> std::sync::Arc<crate::paths::DeniedPaths> {
    match lists {
        Some(l) => std::sync::Arc::new(set.with_lists(l)),
        None => std::sync::Arc::clone(set),
    }
}

/// The canonical allow lists: each path the caller gave must exist (a typo
/// must neither deny nor allow silently); system entries missing here are
/// skipped.
fn lists(spec: &Spec) -> Result<FsLists> {
    let canonical = |kind: &str, p: &Path| {
        std::fs::canonicalize(p).map_err(|e| Error::InvalidConfig {
            message: format!(
                "the {kind} path {} cannot be used: {e}; give a path that exists",
                p.display()
            ),
        })
    };
    let mut read = Vec::new();
    let mut write = Vec::new();
    for p in &spec.read {
        read.push(canonical("fs_read (-r)", p)?);
    }
    for p in &spec.write {
        write.push(canonical("fs_write (-w)", p)?);
    }
    if spec.system {
        read.extend(
            SYSTEM_READ
                .iter()
                .filter_map(|p| std::fs::canonicalize(p).ok()),
        );
        write.extend(
            SYSTEM_WRITE
                .iter()
                .filter_map(|p| std::fs::canonicalize(p).ok()),
        );
    }
    for l in [&mut read, &mut write] {
        l.sort();
        l.dedup();
    }
    Ok(FsLists { read, write })
}

/// The TCP ports a connect may reach under `net`, when a port list says
/// it: an allow list whose TCP rules all name ports (on any address or
/// not: the union of their ports is never narrower than the policy, and
/// the supervisor still checks the addresses). `None`: no rule the kernel
/// can hold (a deny list, a TCP rule on every port, or too many ports).
fn connect_ports(net: &NetPolicy) -> Option<Vec<u16>> {
    if net.mode() != Mode::Allow {
        return None;
    }
    let mut ports = std::collections::BTreeSet::new();
    for rule in net.rules().iter().filter(|r| r.protocols.tcp) {
        match &rule.ports {
            Ports::Any => return None,
            Ports::Ranges(ranges) => {
                for r in ranges {
                    if r.end().saturating_sub(*r.start()) as usize >= MAX_PORT_RULES {
                        return None;
                    }
                    ports.extend(r.clone());
                    if ports.len() > MAX_PORT_RULES {
                        return None;
                    }
                }
            }
        }
    }
    Some(ports.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> NetPolicy {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        NetPolicy::from_specs(&s(allow), &s(deny), &[]).unwrap()
    }

    #[test]
    fn port_rules_only_where_a_port_list_holds_the_policy() {
        assert_eq!(
            connect_ports(&policy(&["*:80,443", "udp://*:53"], &[])),
            Some(vec![80, 443])
        );
        // Addresses: the union of the ports, the supervisor checks the rest.
        assert_eq!(
            connect_ports(&policy(&["127.0.0.1:8080", "tcp://10.0.0.0/8:22"], &[])),
            Some(vec![22, 8080])
        );
        // No TCP rule: no TCP connect at all.
        assert_eq!(connect_ports(&policy(&["udp://*:53"], &[])), Some(vec![]));
        assert_eq!(connect_ports(&policy(&["127.0.0.1"], &[])), None);
        assert_eq!(connect_ports(&policy(&["*:1-65535"], &[])), None);
        assert_eq!(connect_ports(&policy(&[], &["10.0.0.0/8"])), None);
    }

    #[test]
    fn missing_rights_fail_unless_allowed_to_degrade() {
        let spec = Spec {
            write: vec!["/tmp".into()],
            ..Spec::default()
        };
        // ABI 2: truncate (3) and ioctl-dev (5) missing; truncate first.
        let mut d = crate::isolation::plan(Some(2), true).unwrap().unwrap();
        match apply(&spec, Some(&mut d), None) {
            Err(Error::MissingRight { right, kernel_abi }) => {
                assert_eq!((right, kernel_abi), (Right::Truncate, 2));
            }
            other => panic!("{other:?}"),
        }
        let spec = Spec {
            allow_degraded: vec![Right::Truncate, Right::IoctlDev],
            ..spec
        };
        let a = apply(&spec, Some(&mut d), None).unwrap();
        assert_eq!(
            a.degraded,
            [Right::Truncate, Right::IoctlDev, Right::Scoping]
        );
        d.ruleset().unwrap();
        // No Landlock: the allow lists themselves.
        match apply(&spec, None, None) {
            Err(Error::MissingRight { right, .. }) => assert_eq!(right, Right::Filesystem),
            other => panic!("{other:?}"),
        }
        // A path that does not exist.
        let bad = Spec {
            read: vec!["/nonexistent/unotify".into()],
            ..Spec::default()
        };
        let err = apply(&bad, None, None).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/unotify"), "{err}");
    }

    #[test]
    fn network_rules_need_abi_4() {
        let net = policy(&["*:8080"], &[]);
        let mut d = crate::isolation::plan(Some(3), true).unwrap().unwrap();
        let err = apply(&Spec::default(), Some(&mut d), Some(&net)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::MissingRight {
                    right: Right::Network,
                    kernel_abi: 3
                }
            ),
            "{err}"
        );
        let mut d = crate::isolation::plan(None, false).unwrap().unwrap();
        let a = apply(&Spec::default(), Some(&mut d), Some(&net)).unwrap();
        assert!(a.degraded.is_empty());
        assert_eq!(
            d.port_rules(),
            (
                ACCESS_NET_CONNECT_TCP,
                &[(8080, ACCESS_NET_CONNECT_TCP)][..]
            )
        );
        d.ruleset().unwrap();
    }

    #[test]
    fn cgroup_writes_stay_forbidden_under_a_write_path() {
        let places = vec![PathBuf::from("/sys/fs/cgroup")];
        // Before and after the allow list: the same rules.
        for forbid_first in [true, false] {
            let mut d = crate::isolation::plan(None, false).unwrap().unwrap();
            if forbid_first {
                d.forbid_writes_beneath(&places).unwrap();
            }
            let spec = Spec {
                write: vec!["/sys".into(), "/tmp".into()],
                read: vec!["/usr".into()],
                ..Spec::default()
            };
            apply(&spec, Some(&mut d), None).unwrap();
            if !forbid_first {
                d.forbid_writes_beneath(&places).unwrap();
            }
            // Nothing of the write rules made without the allow list
            // (writes everywhere but the cgroups) is left.
            assert_eq!(d.opened_rule_count(), 0);
            let rules = d.path_rules();
            let w = crate::sys::landlock::ACCESS_FS_WRITE_FILE;
            let of = |p: &str| {
                rules
                    .iter()
                    .filter(|(q, _)| q == Path::new(p))
                    .fold(0, |a, (_, r)| a | r)
            };
            assert_eq!(of("/sys") & w, 0, "{rules:?}");
            assert_ne!(of("/sys/kernel") & w, 0, "{rules:?}");
            assert_eq!(of("/sys/fs") & w, 0, "{rules:?}");
            assert!(!rules
                .iter()
                .any(|(p, r)| p.starts_with("/sys/fs/cgroup") && r & w != 0));
            assert_ne!(of("/tmp") & w, 0, "{rules:?}");
            assert_eq!(of("/usr"), READ, "{rules:?}");
            d.ruleset().unwrap();
        }
    }
}
