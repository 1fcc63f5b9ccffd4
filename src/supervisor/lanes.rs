//! The worker pool, split in per-CPU lanes.
//!
//! With sync wake-up the kernel runs the poll thread on the CPU of the task
//! that trapped. Waking a worker on that same CPU costs one context switch;
//! waking one on another, idle CPU costs an IPI and a VM exit. So each lane
//! is a crossbeam channel served by workers pinned to one CPU, and the poll
//! thread feeds the lane of the CPU it is running on, unless all of that
//! lane's workers are busy and another lane has an idle one.
//!
//! Invariant: `idle` of a lane counts its workers blocked in `recv` (a
//! worker increments it before waiting and decrements it after); it is a
//! hint for placement only, never for correctness.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::notification::Notification;
use crate::sys::process;

use super::Shared;

struct Lane {
    tx: Sender<Notification>,
    idle: Arc<AtomicUsize>,
}

/// The sending side of the pool, owned by the poll thread. Dropping it
/// disconnects the lanes: workers finish what is queued and exit.
pub(crate) struct Lanes {
    lanes: Vec<Lane>,
    /// CPU number → lane index.
    lane_of_cpu: Vec<usize>,
}

impl Lanes {
    /// Starts `workers` threads; returns the pool and their handles.
    pub(crate) fn start(shared: &Arc<Shared>, workers: usize) -> std::io::Result<(Lanes, Vec<JoinHandle<()>>)> {
        let cpus = process::allowed_cpus().unwrap_or_default();
        // Pin only when every allowed CPU gets at least one worker.
        let pinned = !cpus.is_empty() && workers >= cpus.len() && cpus.len() > 1;
        let nlanes = if pinned { cpus.len() } else { 1 };
        let mut lanes = Vec::with_capacity(nlanes);
        let mut receivers = Vec::with_capacity(nlanes);
        for _ in 0..nlanes {
            let (tx, rx) = crossbeam_channel::unbounded();
            lanes.push(Lane {
                tx,
                idle: Arc::new(AtomicUsize::new(0)),
            });
            receivers.push(rx);
        }
        let max_cpu = cpus.iter().copied().max().unwrap_or(0);
        let mut lane_of_cpu = vec![0; max_cpu + 1];
        if pinned {
            for (i, &cpu) in cpus.iter().enumerate() {
                lane_of_cpu[cpu] = i;
            }
        }
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let lane = w % nlanes;
            let cpu = pinned.then(|| cpus[lane]);
            let rx = receivers[lane].clone();
            let idle = Arc::clone(&lanes[lane].idle);
            let sh = Arc::clone(shared);
            let h = std::thread::Builder::new()
                .name(format!("unotify-worker-{w}"))
                .spawn(move || run_worker(&sh, &rx, &idle, cpu))?;
            handles.push(h);
        }
        Ok((Lanes { lanes, lane_of_cpu }, handles))
    }

    /// Hands a notification to a worker, preferring the current CPU's lane.
    pub(crate) fn dispatch(&self, notif: Notification) -> Result<(), Notification> {
        let lane = self.pick();
        self.lanes[lane].tx.send(notif).map_err(|e| e.into_inner())
    }

    fn pick(&self) -> usize {
        if self.lanes.len() == 1 {
            return 0;
        }
        let here = process::current_cpu()
            .and_then(|c| self.lane_of_cpu.get(c).copied())
            .unwrap_or(0);
        if self.lanes[here].idle.load(Ordering::Acquire) > 0 {
            return here;
        }
        self.lanes
            .iter()
            .position(|l| l.idle.load(Ordering::Acquire) > 0)
            .unwrap_or(here)
    }
}

fn run_worker(shared: &Arc<Shared>, rx: &Receiver<Notification>, idle: &AtomicUsize, cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        if let Err(e) = process::pin_to_cpu(0, cpu) {
            log::debug!("cannot pin worker to CPU {cpu}: {e}");
        }
    }
    loop {
        idle.fetch_add(1, Ordering::AcqRel);
        let next = rx.recv();
        idle.fetch_sub(1, Ordering::AcqRel);
        match next {
            Ok(notif) => super::pipeline::process(shared, notif),
            Err(_) => return,
        }
    }
}
