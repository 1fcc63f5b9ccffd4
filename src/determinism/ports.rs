//! One run's port map for `--port-remap`: virtual port → real port, per
//! protocol, kept for the run (a virtual port bound again gets the same
//! real port, or `EADDRINUSE` if that is still taken, as a real port
//! would). The network's on-behalf calls use it through `net::PortRemap`.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::net::{PortRemap, Protocol};

/// (protocol, port) → port.
type Ports = HashMap<(Protocol, u16), u16>;

/// The map, both ways.
#[derive(Default)]
pub(crate) struct PortMap {
    /// (protocol, virtual) → real, and (protocol, real) → virtual.
    inner: Mutex<(Ports, Ports)>,
}

impl PortRemap for PortMap {
    fn real(&self, proto: Protocol, virt: u16) -> Option<u16> {
        self.inner.lock().0.get(&(proto, virt)).copied()
    }

    fn virtual_of(&self, proto: Protocol, real: u16) -> Option<u16> {
        self.inner.lock().1.get(&(proto, real)).copied()
    }

    fn record(&self, proto: Protocol, virt: u16, real: u16) -> bool {
        let mut m = self.inner.lock();
        match m.0.get(&(proto, virt)) {
            Some(&r) => r == real,
            None => {
                m.0.insert((proto, virt), real);
                m.1.insert((proto, real), virt);
                true
            }
        }
    }
}
