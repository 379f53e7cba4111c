//! A one-slot pipe from a stream's write loop to its response body.
//!
//! It replaces a tokio `mpsc` channel, whose first block of 32 slots and cache-padded halves
//! cost every idle SSE or streaming connection about 1.6 KiB; this is one small allocation. The
//! write loop hands over one batch at a time and waits while the body still holds the previous
//! one: with the batch the body is writing, at most two are in flight, as before.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures_util::Stream;

#[derive(Default)]
struct State {
    chunk: Option<Bytes>,
    /// The body was dropped: the client is gone.
    rx_gone: bool,
    /// The write loop was dropped: the body ends once the slot is empty.
    tx_gone: bool,
    rx_waker: Option<Waker>,
    /// The write loop, waiting for the slot to empty.
    tx_waker: Option<Waker>,
    /// The write loop's read side, waiting for the body to go. Apart from `tx_waker`: a send
    /// that waited must not take the place of this wake-up, which persists (the loop polls its
    /// read side only when it woke).
    closed_waker: Option<Waker>,
}

type Shared = Arc<Mutex<State>>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // Nothing here panics while holding the lock; a poisoned one still holds consistent state.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// A new pipe: the write loop's end and the body's.
pub fn pipe() -> (Sender, Receiver) {
    let shared = Shared::default();
    (Sender(shared.clone()), Receiver(shared))
}

/// The write loop's end.
pub struct Sender(Shared);

impl Sender {
    /// Puts `chunk` in the slot once the body took the previous one; `Err` when the body is gone.
    pub async fn send(&self, chunk: Bytes) -> Result<(), ()> {
        let mut chunk = Some(chunk);
        std::future::poll_fn(|cx| {
            let mut state = lock(&self.0);
            if state.rx_gone {
                return Poll::Ready(Err(()));
            }
            if state.chunk.is_some() {
                state.tx_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            state.chunk = chunk.take();
            if let Some(waker) = state.rx_waker.take() {
                waker.wake();
            }
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// Resolves when the body is gone (the client went away, or the response was dropped).
    pub async fn closed(&self) {
        std::future::poll_fn(|cx| {
            let mut state = lock(&self.0);
            if state.rx_gone {
                return Poll::Ready(());
            }
            if !state.closed_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                state.closed_waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await;
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let mut state = lock(&self.0);
        state.tx_gone = true;
        if let Some(waker) = state.rx_waker.take() {
            waker.wake();
        }
    }
}

/// The body's end: the batches, until the write loop is dropped.
pub struct Receiver(Shared);

impl Stream for Receiver {
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut state = lock(&self.0);
        if let Some(chunk) = state.chunk.take() {
            if let Some(waker) = state.tx_waker.take() {
                waker.wake();
            }
            return Poll::Ready(Some(Ok(chunk)));
        }
        if state.tx_gone {
            return Poll::Ready(None);
        }
        state.rx_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut state = lock(&self.0);
        state.rx_gone = true;
        state.chunk = None;
        for waker in [state.tx_waker.take(), state.closed_waker.take()].into_iter().flatten() {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[tokio::test]
    async fn batches_arrive_in_order_and_the_end_follows_the_last() {
        let (tx, mut rx) = pipe();
        let writer = tokio::spawn(async move {
            for i in 0..100u8 {
                tx.send(Bytes::from(vec![i])).await.unwrap();
            }
        });
        for i in 0..100u8 {
            assert_eq!(rx.next().await.unwrap().unwrap(), Bytes::from(vec![i]));
        }
        assert!(rx.next().await.is_none(), "the body ends when the writer is dropped");
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn the_writer_learns_that_the_body_is_gone() {
        let (tx, rx) = pipe();
        tx.send(Bytes::from_static(b"a")).await.unwrap();
        let waiting = tokio::spawn(async move {
            // The slot is full: this waits until the body goes, then fails.
            let sent = tx.send(Bytes::from_static(b"b")).await;
            tx.closed().await;
            sent
        });
        tokio::task::yield_now().await;
        drop(rx);
        assert_eq!(waiting.await.unwrap(), Err(()));
    }

    #[test]
    fn it_is_small() {
        assert!(std::mem::size_of::<Mutex<State>>() <= 96, "{}", std::mem::size_of::<Mutex<State>>());
    }
}
