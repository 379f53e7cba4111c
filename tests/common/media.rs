//! A str0m peer publishing into a room over WHIP: Opus packets every 20 ms (a real Opus "silence"
//! frame: the server does not decode, but its tap and its files see a well-formed stream).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One Opus frame (TOC 0xf8: CELT FB 20 ms, mono) carrying silence.
pub const OPUS_SILENCE: [u8; 3] = [0xf8, 0xff, 0xfe];

/// `POST`s `body` with `content_type`; the status, the `Location` header and the body as text.
pub async fn post_text(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, String, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text[9..12].parse().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: ")))
        .unwrap_or_default();
    (status, location.to_owned(), body.to_owned())
}

/// Publishes Opus audio into `room` over WHIP until the task is aborted; the WHIP resource.
pub async fn whip_audio(addr: SocketAddr, room: &str) -> (tokio::task::JoinHandle<()>, String) {
    whip(addr, room, false, |_| OPUS_SILENCE.to_vec()).await
}

/// Publishes into `room` over WHIP until the task is aborted: an audio m-line, and a video one
/// when `video`; `payload(n)` is the n-th frame's bytes (both lines send the same, every 20 ms).
pub async fn whip(
    addr: SocketAddr,
    room: &str,
    video: bool,
    payload: impl FnMut(u64) -> Vec<u8> + Send + 'static,
) -> (tokio::task::JoinHandle<()>, String) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let mut rtc = str0m::Rtc::builder().build(Instant::now());
    rtc.add_local_candidate(str0m::Candidate::host(local, "udp").unwrap());
    let mut change = rtc.sdp_api();
    let mut mids = vec![change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None)];
    if video {
        mids.push(change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None));
    }
    let (offer, pending) = change.apply().unwrap();
    let (status, location, answer) =
        post_text(addr, &format!("/whip/{room}"), "application/sdp", &offer.to_sdp_string()).await;
    assert_eq!(status, 201, "{answer}");
    let answer = str0m::change::SdpAnswer::from_sdp_string(&answer).unwrap();
    rtc.sdp_api().accept_answer(pending, answer).unwrap();
    (tokio::spawn(drive(rtc, socket, local, mids, payload)), location)
}

async fn drive(
    mut rtc: str0m::Rtc,
    socket: tokio::net::UdpSocket,
    local: SocketAddr,
    mids: Vec<Mid>,
    mut payload: impl FnMut(u64) -> Vec<u8>,
) {
    let mut buf = vec![0u8; 2048];
    let mut connected = false;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut n = 0u64;
    loop {
        let next = loop {
            match rtc.poll_output() {
                Ok(str0m::Output::Timeout(t)) => break t,
                Ok(str0m::Output::Transmit(t)) => drop(socket.try_send_to(&t.contents, t.destination)),
                Ok(str0m::Output::Event(str0m::Event::Connected)) => connected = true,
                Ok(str0m::Output::Event(_)) => {}
                Err(_) => return,
            }
        };
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let Ok((n, source)) = r else { return };
                let Ok(contents) = buf[..n].try_into() else { continue };
                let receive = str0m::net::Receive { proto: str0m::net::Protocol::Udp, source, destination: local, contents };
                let _ = rtc.handle_input(str0m::Input::Receive(Instant::now(), receive));
            }
            _ = tokio::time::sleep_until(next.into()) => {
                let _ = rtc.handle_input(str0m::Input::Timeout(Instant::now()));
            }
            _ = tick.tick(), if connected => {
                let data = payload(n);
                for (i, mid) in mids.iter().enumerate() {
                    let Some(writer) = rtc.writer(*mid) else { continue };
                    let Some(pt) = writer.payload_params().next().map(|p| p.pt()) else { continue };
                    // Audio starts near the top of the 32-bit RTP clock: it wraps after 2 s.
                    let time = if i == 0 {
                        MediaTime::new((u32::MAX as u64 - 96_000 + n * 960) & 0xffff_ffff, Frequency::FORTY_EIGHT_KHZ)
                    } else {
                        MediaTime::new(n * 1800, Frequency::NINETY_KHZ)
                    };
                    let _ = writer.write(pt, Instant::now(), time, data.clone());
                }
                n += 1;
            }
        }
    }
}
