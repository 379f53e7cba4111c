//! The publisher: one WebSocket (JSON protocol) at a fixed rate.

use super::*;

// ---------------------------------------------------------------------------------------------
// Publisher.

pub(crate) async fn pub_main(o: Opts) {
    let nats = o.proto == Proto::Nats;
    let c = match Conn::connect(&o, if nats { "nats" } else { SUBPROTOCOL }).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("publisher: {e}");
            std::process::exit(1)
        }
    };
    // Split: the reader counts replies (and answers pings) while the writer keeps the pace.
    let Conn { tcp: Tcp { stream, buf, start, end }, mut enc, .. } = c;
    let (mut rd, mut wr) = stream.into_split();
    let acked = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let pongs_due = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    {
        let (acked, errors, pongs_due, first_error) =
            (acked.clone(), errors.clone(), pongs_due.clone(), first_error.clone());
        // Reuse Conn's frame parser on a reader-only copy of the state.
        let leftover = buf[start..end].to_vec();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut len = leftover.len();
            buf[..len].copy_from_slice(&leftover);
            loop {
                // Parse whole frames from buf[..len].
                let mut pos = 0;
                loop {
                    let b = &buf[pos..len];
                    if b.len() < 2 {
                        break;
                    }
                    let (l, head) = match b[1] & 0x7f {
                        126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
                        127 if b.len() >= 10 => {
                            (u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize, 10)
                        }
                        126 | 127 => break,
                        n => (n as usize, 2),
                    };
                    if b.len() < head + l {
                        if head + l > buf.len() {
                            buf.resize(head + l, 0);
                        }
                        break;
                    }
                    let payload = &b[head..head + l];
                    match b[0] & 0x0f {
                        0x1 if payload.starts_with(b"{\"ping\"") => {
                            pongs_due.fetch_add(1, Relaxed);
                        }
                        0x1 if find(payload, b"\"error\"").is_some() => {
                            errors.fetch_add(1, Relaxed);
                            let mut f = first_error.lock().unwrap();
                            if f.is_none() {
                                *f = Some(String::from_utf8_lossy(payload).into_owned());
                            }
                        }
                        0x1 if payload.starts_with(b"{\"id\"") => {
                            acked.fetch_add(1, Relaxed);
                        }
                        0x8 => return,
                        _ => {}
                    }
                    pos += head + l;
                }
                buf.copy_within(pos..len, 0);
                len -= pos;
                match rd.read(&mut buf[len..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => len += n,
                }
            }
        });
    }
    let pad = "x".repeat(o.size.saturating_sub(30));
    if nats {
        // No acknowledgements (`verbose` off): NATS publishes are fire-and-forget.
        let mut out = Vec::new();
        enc.encode(&mut out, 0x2, NATS_CONNECT.as_bytes());
        if let Err(e) = wr.write_all(&out).await {
            eprintln!("publisher: {e}");
            std::process::exit(1)
        }
    }
    let total = (o.rate * o.duration).round() as u64;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0u64;
    let mut out = Vec::new();
    let mut max_batch = 0;
    while sent < total {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * o.rate) as u64 + 1).min(total);
        if due <= sent {
            continue;
        }
        out.clear();
        let t = unix_micros();
        max_batch = max_batch.max(due - sent);
        while sent < due {
            sent += 1;
            if nats {
                let data = format!("{{\"t\":{t},\"p\":\"{pad}\"}}");
                let cmd = format!("PUB {} {}\r\n{data}\r\n", o.channel, data.len());
                enc.encode(&mut out, 0x2, cmd.as_bytes());
                acked.fetch_add(1, Relaxed);
                continue;
            }
            let cmd = format!(
                "{{\"id\":{sent},\"publish\":{{\"channel\":\"{}\",\"data\":{{\"t\":{t},\"p\":\"{pad}\"}}}}}}",
                o.channel
            );
            enc.encode(&mut out, 0x1, cmd.as_bytes());
        }
        for _ in 0..pongs_due.swap(0, Relaxed) {
            enc.encode(&mut out, 0x1, b"{\"pong\":{}}");
        }
        if let Err(e) = wr.write_all(&out).await {
            eprintln!("publisher: {e}");
            break;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Give the last replies a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while acked.load(Relaxed) + errors.load(Relaxed) < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut line = format!(
        "published sent={sent} acked={} errors={} secs={elapsed:.3} rate={:.1} max_batch={max_batch}",
        acked.load(Relaxed),
        errors.load(Relaxed),
        sent as f64 / elapsed
    );
    if let Some(e) = &*first_error.lock().unwrap() {
        line.push_str(" error=");
        line.push_str(&e.replace(['\n', '\r'], " "));
    }
    println!("{line}");
    let _ = wr.shutdown().await;
}
