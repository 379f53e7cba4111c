//! The TCP listener (RFC 8656 §3.1 framing): a connection carries STUN messages and
//! ChannelData padded to four bytes, back to back. Frames are cut with
//! [`codec::frame_len`](crate::codec::frame_len); a byte stream that is neither closes the
//! connection. Closing a connection ends its allocation. TURN over TLS is the same framing
//! inside a TLS session: the listener then completes a handshake first.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::{Shared, lock};
use crate::codec::{MAX_FRAME, frame_len};
use crate::core::{Input, Transport};
use crate::peer_filter::canonical;

/// Frames queued for one client before further ones are dropped.
const OUTBOUND_QUEUE: usize = 512;

/// How long a TLS client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn run(shared: Arc<Shared>, listener: TcpListener, limit: usize, tls: Option<TlsAcceptor>) {
    let permits = Arc::new(Semaphore::new(limit));
    // Dropping the set (on shutdown) aborts every connection task.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, from) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(error = %e, "TCP accept failed");
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    tracing::debug!(%from, "TCP connection limit reached");
                    continue;
                };
                let shared = Arc::clone(&shared);
                let tls = tls.clone();
                conns.spawn(async move {
                    let _ = stream.set_nodelay(true);
                    match tls {
                        None => connection(shared, stream, canonical(from)).await,
                        Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => connection(shared, stream, canonical(from)).await,
                            _ => tracing::debug!(%from, "TLS handshake failed"),
                        },
                    }
                    drop(permit);
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn connection<S>(shared: Arc<Shared>, stream: S, from: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(OUTBOUND_QUEUE);
    lock(&shared.tcp_conns).insert(from, tx);
    shared.metrics.tcp_connections.fetch_add(1, Relaxed);
    let writer = async move {
        // Frames already queued go out in one write.
        let mut batch = Vec::with_capacity(16 * 1024);
        while let Some(frame) = rx.recv().await {
            batch.clear();
            batch.extend_from_slice(&frame);
            while batch.len() < 64 * 1024 {
                match rx.try_recv() {
                    Ok(more) => batch.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if wr.write_all(&batch).await.is_err() || wr.flush().await.is_err() {
                break;
            }
        }
    };
    let reader = async {
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let mut start = 0;
            loop {
                match frame_len(&buf[start..]) {
                    Ok(Some(n)) => {
                        let frame = &buf[start..start + n];
                        shared.feed(Input::FromClient { transport: Transport::Tcp, from, data: frame }).await;
                        start += n;
                    }
                    Ok(None) => break,
                    Err(_) => {
                        shared.metrics.malformed.fetch_add(1, Relaxed);
                        return;
                    }
                }
            }
            buf.drain(..start);
            if buf.len() > MAX_FRAME {
                return;
            }
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::select! {
        () = writer => {}
        () = reader => {}
    }
    lock(&shared.tcp_conns).remove(&from);
    shared.metrics.tcp_connections.fetch_sub(1, Relaxed);
    shared.feed(Input::ClientClosed { from }).await;
}
