//! [`PolicyContext`]: how the policy callback changes the running policy.
//!
//! Invariant: nothing here widens the starting policy. Dynamic network
//! rules are checked *in addition to* the starting network policy; limits
//! only go down; only paths denied at run time can be allowed again.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ipnet::IpNet;
use parking_lot::RwLock;

use crate::paths::DeniedPaths;

use super::restricted::{intersect, Restrictions};

/// Run-time restrictions set by the policy callback, read by the enforcing
/// handlers.
#[derive(Debug)]
pub struct DynamicPolicy {
    /// `None`: only the starting policy applies. `Some(nets)`: destinations
    /// must also be inside one of `nets` (empty: nothing is reachable).
    net: RwLock<Option<Vec<IpNet>>>,
    /// The same, per process (see [`Restrictions`]).
    pub(crate) processes: Restrictions,
    max_processes: AtomicU64,
    max_memory: AtomicU64,
    paths: Option<Arc<DeniedPaths>>,
}

impl DynamicPolicy {
    /// A policy with no run-time restriction yet.
    pub(crate) fn new(paths: Option<Arc<DeniedPaths>>) -> Self {
        DynamicPolicy {
            net: RwLock::new(None),
            processes: Restrictions::default(),
            max_processes: AtomicU64::new(u64::MAX),
            max_memory: AtomicU64::new(u64::MAX),
            paths,
        }
    }

    /// Whether process `tgid` may still reach `ip` (the starting policy is
    /// checked separately).
    pub fn net_allows(&self, tgid: i32, ip: IpAddr) -> bool {
        self.allows(
            self.processes
                .any()
                .then(|| self.processes.nets_of(tgid))
                .flatten(),
            ip,
        )
    }

    /// As [`net_allows`](Self::net_allows), for the process of task `tid`
    /// (found only once some process has a restriction of its own).
    pub(crate) fn net_allows_task(&self, tid: i32, ip: IpAddr) -> bool {
        self.allows(self.processes.nets_of_task(tid), ip)
    }

    /// Whether `ip` is inside the network restriction and `own`, the
    /// process's (if it has one).
    fn allows(&self, own: Option<Vec<IpNet>>, ip: IpAddr) -> bool {
        let inside = |nets: &[IpNet]| nets.iter().any(|n| n.contains(&ip));
        if let Some(nets) = self.net.read().as_deref() {
            if !inside(nets) {
                return false;
            }
        }
        own.is_none_or(|nets| inside(&nets))
    }

    /// The process limit set at run time, if any.
    pub fn max_processes(&self) -> Option<u64> {
        match self.max_processes.load(Ordering::Acquire) {
            u64::MAX => None,
            n => Some(n),
        }
    }

    /// The memory limit set at run time, if any.
    pub fn max_memory(&self) -> Option<u64> {
        match self.max_memory.load(Ordering::Acquire) {
            u64::MAX => None,
            n => Some(n),
        }
    }
}

/// Handed to the policy callback with each event.
pub struct PolicyContext<'a> {
    dynamic: &'a DynamicPolicy,
    /// The rule a denying verdict names (see [`decided_by`](Self::decided_by)).
    rule: Option<String>,
}

impl std::fmt::Debug for PolicyContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyContext").finish_non_exhaustive()
    }
}

impl<'a> PolicyContext<'a> {
    pub(crate) fn new(dynamic: &'a DynamicPolicy) -> Self {
        PolicyContext {
            dynamic,
            rule: None,
        }
    }

    /// Names the rule behind this call's verdict (`exec-deny rm`), for the
    /// audit record's `rule`; without it a denying verdict is recorded as
    /// `policy callback`.
    pub fn decided_by(&mut self, rule: impl Into<String>) {
        self.rule = Some(rule.into());
    }

    /// The rule named by [`decided_by`](Self::decided_by).
    pub(crate) fn take_rule(&mut self) -> Option<String> {
        self.rule.take()
    }

    /// From now on, destinations must also lie in one of `nets`
    /// (an empty slice denies every destination).
    pub fn restrict_network(&mut self, nets: &[IpNet]) {
        let mut cur = self.dynamic.net.write();
        *cur = Some(match cur.take() {
            // Keep only what both the old and new restriction admit.
            Some(old) => intersect(&old, nets),
            None => nets.to_vec(),
        });
    }

    /// Re-admits `nets` after a restriction. Never exceeds the starting
    /// policy, which is always checked as well; without a restriction in
    /// force it changes nothing.
    pub fn grant_network(&mut self, nets: &[IpNet]) {
        if let Some(cur) = self.dynamic.net.write().as_mut() {
            for n in nets {
                if !cur.contains(n) {
                    cur.push(*n);
                }
            }
        }
    }

    /// Restricts one process (by any of its thread ids) to `nets`, with
    /// every process below it now and every process any of them creates
    /// from now on (each new process inherits its creator's restriction at
    /// its creation, before it runs, and keeps it when orphaned; a process
    /// restricted again keeps only what both restrictions admit). A process
    /// that is gone keeps no restriction, and a pid reused by another
    /// process does not name it.
    pub fn restrict_process_network(&mut self, pid: u32, nets: &[IpNet]) {
        let tgid = crate::sys::procfs::thread_group_of(pid as i32).unwrap_or(pid as i32);
        if !self.dynamic.processes.restrict_tree(tgid, nets) {
            log::debug!("policy: process {tgid} is gone; no restriction kept for it");
        }
    }

    /// Lowers the process limit (a higher value is ignored).
    pub fn restrict_max_processes(&mut self, n: u64) {
        self.dynamic.max_processes.fetch_min(n, Ordering::AcqRel);
    }

    /// Lowers the memory limit in bytes (a higher value is ignored).
    pub fn restrict_max_memory(&mut self, bytes: u64) {
        self.dynamic.max_memory.fetch_min(bytes, Ordering::AcqRel);
    }

    /// Denies `path` from now on (needs path denial support in the sandbox:
    /// returns `false` when the sandbox was built without it).
    pub fn deny_path(&mut self, path: impl AsRef<Path>) -> bool {
        match &self.dynamic.paths {
            Some(p) => p.deny(path.as_ref()),
            None => false,
        }
    }

    /// Allows again a path denied at run time by [`deny_path`](Self::deny_path).
    /// Paths denied when the sandbox was built stay denied.
    pub fn allow_path(&mut self, path: impl AsRef<Path>) -> bool {
        match &self.dynamic.paths {
            Some(p) => p.allow(path.as_ref()),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn restriction_narrows_and_grant_reopens_within_it() {
        let d = DynamicPolicy::new(None);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(d.net_allows(1, ip("10.0.0.1")));
        let mut cx = PolicyContext::new(&d);
        cx.restrict_network(&nets(&["127.0.0.0/8"]));
        assert!(!d.net_allows(1, ip("10.0.0.1")));
        assert!(d.net_allows(1, ip("127.0.0.2")));
        cx.restrict_network(&nets(&["127.0.0.1/32", "10.0.0.0/8"]));
        assert!(!d.net_allows(1, ip("127.0.0.2")));
        assert!(d.net_allows(1, ip("127.0.0.1")));
        assert!(
            !d.net_allows(1, ip("10.0.0.1")),
            "restricting again never widens"
        );
        cx.restrict_network(&[]);
        assert!(!d.net_allows(1, ip("127.0.0.1")));
        cx.grant_network(&nets(&["127.0.0.1/32"]));
        assert!(d.net_allows(1, ip("127.0.0.1")));
    }

    #[test]
    fn a_process_restriction_is_inherited_and_only_narrows() {
        let d = DynamicPolicy::new(None);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let me = std::process::id() as i32;
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let kid = child.id() as i32;
        let mut cx = PolicyContext::new(&d);
        cx.restrict_process_network(me as u32, &nets(&["10.0.0.0/8"]));
        assert!(
            !d.net_allows(kid, ip("127.0.0.1")),
            "a child it has when restricted is restricted with it"
        );
        assert!(d.net_allows(kid, ip("10.1.2.3")));
        // Narrowed later, the parent's restriction narrows its child's
        // too.
        cx.restrict_process_network(me as u32, &nets(&["10.1.0.0/16"]));
        assert!(!d.net_allows(kid, ip("10.2.0.1")));
        let parent = crate::sys::procfs::Stat::of(me)
            .and_then(|s| s.ppid())
            .unwrap();
        assert!(d.net_allows(parent, ip("127.0.0.1")), "a parent does not");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            d.net_allows(kid, ip("127.0.0.1")),
            "a gone process's pid names no restriction"
        );
    }

    #[test]
    fn limits_only_go_down() {
        let d = DynamicPolicy::new(None);
        let mut cx = PolicyContext::new(&d);
        assert_eq!(d.max_processes(), None);
        cx.restrict_max_processes(10);
        cx.restrict_max_processes(20);
        assert_eq!(d.max_processes(), Some(10));
        cx.restrict_max_memory(1 << 20);
        cx.restrict_max_memory(1 << 30);
        assert_eq!(d.max_memory(), Some(1 << 20));
    }
}
