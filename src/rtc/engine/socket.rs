//! The engine's loop: datagrams from the one socket, commands and timers. A datagram goes to the
//! peer whose ICE credentials accept it; the source-address map finds that peer at once after the
//! first. Then every peer with input is polled until idle.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::net::{Protocol, Receive};
use str0m::{Input, Output};
use tokio::sync::mpsc;

use super::Engine;
use crate::rtc::Command;

/// Datagrams read per wake-up before the peers are polled.
const READ_BATCH: usize = 64;

impl Engine {
    /// Runs until every [`crate::rtc::RtcService`] handle is gone.
    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; 2048];
        let Some(mut mixed) = self.mix_rx.take() else { return };
        loop {
            self.guarded(|e| {
                e.drive();
                e.reap(Instant::now());
                e.announce();
                e.sync_mixes();
            });
            let next = self.peers.iter().map(|p| p.deadline).min();
            let sleep_until = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, source)) = r {
                        self.guarded(|e| e.receive_batch(&mut buf, n, source));
                    }
                }
                Some((room, out)) = mixed.recv() => self.guarded(|e| e.mix_out(&room, out)),
                c = commands.recv() => match c {
                    Some(c) => self.guarded(|e| e.command(c)),
                    None => return,
                },
                _ = tokio::time::sleep_until(sleep_until.into()) => {}
            }
            self.guarded(|e| e.timeouts(Instant::now()));
        }
    }

    /// The first datagram of a wake-up (`n` bytes in `buf`) and whatever else is waiting.
    fn receive_batch(&mut self, buf: &mut [u8], n: usize, source: SocketAddr) {
        self.receive(&buf[..n], source);
        for _ in 1..READ_BATCH {
            match self.socket.try_recv_from(buf) {
                Ok((n, source)) => self.receive(&buf[..n], source),
                Err(_) => break,
            }
        }
    }

    fn timeouts(&mut self, now: Instant) {
        for i in 0..self.peers.len() {
            let p = &mut self.peers[i];
            if p.deadline <= now && p.rtc.is_alive() {
                self.current = Some(i);
                if p.rtc.handle_input(Input::Timeout(now)).is_err() {
                    p.rtc.disconnect();
                }
                p.dirty = true;
            }
        }
    }

    fn receive(&mut self, data: &[u8], source: SocketAddr) {
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(
            Instant::now(),
            Receive { proto: Protocol::Udp, source, destination: self.candidate, contents },
        );
        let known = self
            .by_addr
            .get(&source)
            .and_then(|id| self.index(id))
            .filter(|&i| self.peers[i].rtc.accepts(&input));
        let Some(i) = known.or_else(|| self.peers.iter().position(|p| p.rtc.accepts(&input))) else {
            return;
        };
        self.current = Some(i);
        let peer = &mut self.peers[i];
        if known.is_none() {
            self.by_addr.insert(source, peer.id.clone());
        }
        if peer.rtc.handle_input(input).is_err() {
            peer.rtc.disconnect();
        }
        peer.dirty = true;
    }

    /// Polls changed peers until all are idle, handling their events (which may queue media on
    /// other peers, making them changed in turn).
    pub(super) fn drive(&mut self) {
        loop {
            let mut polled = false;
            for i in 0..self.peers.len() {
                if std::mem::take(&mut self.peers[i].dirty) {
                    polled = true;
                    self.poll(i);
                }
            }
            while let Some((i, event)) = self.events.pop_front() {
                self.on_event(i, event);
            }
            if !polled {
                return;
            }
        }
    }

    fn poll(&mut self, i: usize) {
        self.current = Some(i);
        let peer = &mut self.peers[i];
        while peer.rtc.is_alive() {
            match peer.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    // UDP: a full socket buffer drops the packet, as the network would.
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Timeout(t)) => {
                    peer.deadline = t;
                    return;
                }
                Ok(Output::Event(e)) => self.events.push_back((i, e)),
                Err(e) => {
                    tracing::debug!(peer = %peer.id, error = %e, "peer failed");
                    peer.rtc.disconnect();
                }
            }
        }
        peer.deadline = Instant::now();
    }
}
