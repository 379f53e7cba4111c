//! The thread a composition or pipeline runs on: decode, compose and encode are CPU work that
//! must never run on the engine's task (nor on tokio's workers). Each gets a thread of its own
//! behind a queue whose frames are bounded: when the thread is behind, new frames are dropped at
//! once (counted; the track's next frame is marked not contiguous, so its decoder waits for a
//! keyframe) rather than queued. Control inputs (tracks, layout, keyframe requests) are never
//! dropped. Dropping the [`WorkerHandle`] stops the thread after its current frame.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::composition::{Composition, Input, Output};
use super::pipeline::Pipeline;

/// What runs on a worker thread.
pub trait Worker {
    /// Takes one input.
    fn handle(&mut self, input: Input, now: Instant, wall_secs: u64);
    /// Does timed work (a composition's frame) if due.
    fn tick(&mut self, _now: Instant, _wall_secs: u64) {}
    /// When [`Worker::tick`] is next due; `None`: only inputs drive it.
    fn next_tick(&self) -> Option<Instant> {
        None
    }
    /// The next output.
    fn poll_output(&mut self) -> Option<Output>;
}

impl Worker for Composition {
    fn handle(&mut self, input: Input, now: Instant, _wall_secs: u64) {
        Composition::handle(self, input, now);
    }
    fn tick(&mut self, now: Instant, wall_secs: u64) {
        Composition::tick(self, now, wall_secs);
    }
    fn next_tick(&self) -> Option<Instant> {
        Some(Composition::next_tick(self))
    }
    fn poll_output(&mut self) -> Option<Output> {
        Composition::poll_output(self)
    }
}

impl Worker for Pipeline {
    fn handle(&mut self, input: Input, now: Instant, wall_secs: u64) {
        Pipeline::handle(self, input, now, wall_secs);
    }
    fn poll_output(&mut self) -> Option<Output> {
        Pipeline::poll_output(self)
    }
}

/// The sending end of a worker.
pub struct WorkerHandle {
    tx: mpsc::Sender<Input>,
    queued: Arc<AtomicUsize>,
    cap: usize,
    dropped: Arc<AtomicU64>,
    /// Tracks that lost a frame since their last delivered one.
    gaps: HashSet<String>,
}

impl WorkerHandle {
    /// Queues an input; a frame is dropped (returns `false`) when `cap` frames wait already.
    pub fn send(&mut self, mut input: Input) -> bool {
        if let Input::Frame { track, contiguous, .. } = &mut input {
            if self.queued.load(Ordering::Acquire) >= self.cap {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                self.gaps.insert(track.clone());
                return false;
            }
            if self.gaps.remove(track.as_str()) {
                *contiguous = false;
            }
            self.queued.fetch_add(1, Ordering::AcqRel);
        }
        self.tx.send(input).is_ok()
    }

    /// Frames dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn wall_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Starts a thread named `name` that builds its worker with `make` (on the thread: a filter chain
/// is not `Send`) and hands every output to `out`. Fails with `make`'s error.
pub fn spawn<W, E, M, O>(name: &str, cap: usize, make: M, mut out: O) -> Result<WorkerHandle, E>
where
    W: Worker,
    E: Send + 'static,
    M: FnOnce() -> Result<W, E> + Send + 'static,
    O: FnMut(Output) + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Input>();
    let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), E>>(1);
    let queued = Arc::new(AtomicUsize::new(0));
    let q = queued.clone();
    let spawned = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
        let mut worker = match make() {
            Ok(w) => {
                let _ = ready_tx.send(Ok(()));
                w
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        loop {
            let input = match worker.next_tick() {
                Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(input) => Some(input),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(input) => Some(input),
                    Err(_) => break,
                },
            };
            let wall = wall_secs();
            if let Some(input) = input {
                if matches!(input, Input::Frame { .. }) {
                    q.fetch_sub(1, Ordering::AcqRel);
                }
                worker.handle(input, Instant::now(), wall);
            }
            worker.tick(Instant::now(), wall);
            while let Some(o) = worker.poll_output() {
                out(o);
            }
        }
    });
    if spawned.is_err() {
        // No thread: the caller sees a closed worker (sends fail).
        tracing::error!("cannot spawn a media worker thread");
    }
    if let Ok(Err(e)) = ready_rx.recv() {
        return Err(e);
    }
    Ok(WorkerHandle { tx, queued, cap, dropped: Arc::new(AtomicU64::new(0)), gaps: HashSet::new() })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    /// A worker that waits for a go before handling each frame, and reports what it saw.
    struct Slow {
        started: mpsc::Sender<()>,
        go: mpsc::Receiver<()>,
        seen: Vec<Output>,
    }

    impl Worker for Slow {
        fn handle(&mut self, input: Input, _now: Instant, _wall: u64) {
            if let Input::Frame { contiguous, .. } = input {
                let _ = self.started.send(());
                let _ = self.go.recv();
                let data = Bytes::from(vec![u8::from(contiguous)]);
                self.seen.push(Output::Frame { data, keyframe: false, time: 0 });
            }
        }
        fn poll_output(&mut self) -> Option<Output> {
            self.seen.pop()
        }
    }

    fn frame() -> Input {
        Input::Frame { track: "t".into(), payload: Bytes::new(), keyframe: false, contiguous: true, time: 0 }
    }

    #[test]
    fn a_busy_worker_drops_frames_at_once_and_marks_the_next_one_not_contiguous() {
        let (go_tx, go) = mpsc::channel();
        let (out_tx, out_rx) = mpsc::channel();
        let (started, started_rx) = mpsc::channel();
        let make = move || Ok(Slow { started, go, seen: Vec::new() });
        let mut h = spawn::<_, (), _, _>("test-worker", 2, make, move |o| {
            let _ = out_tx.send(o);
        })
        .unwrap();
        // The first frame is taken and waits on its go; two more fill the queue; the rest drop.
        assert!(h.send(frame()));
        started_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(h.send(frame()));
        assert!(h.send(frame()));
        assert!(!h.send(frame()));
        assert!(!h.send(frame()));
        assert_eq!(h.dropped(), 2);
        for _ in 0..3 {
            go_tx.send(()).unwrap();
        }
        let contiguous: Vec<u8> = (0..3)
            .map(|_| match out_rx.recv_timeout(Duration::from_secs(5)).unwrap() {
                Output::Frame { data, .. } => data[0],
                o => panic!("{o:?}"),
            })
            .collect();
        assert_eq!(contiguous, [1, 1, 1]);
        // The next frame after the drops says so.
        assert!(h.send(frame()));
        go_tx.send(()).unwrap();
        let Output::Frame { data, .. } = out_rx.recv_timeout(Duration::from_secs(5)).unwrap() else {
            panic!()
        };
        assert_eq!(data[0], 0, "not contiguous after a drop");
        drop(h);
        drop(go_tx);
    }

    #[test]
    fn a_worker_that_cannot_start_reports_its_error() {
        let r = spawn::<Slow, &str, _, _>("test-worker", 2, || Err("no"), |_| {});
        assert_eq!(r.err(), Some("no"));
    }
}
