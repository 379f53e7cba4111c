//! Several `switchboard` processes on one Redis or NATS: subscribers spread across the nodes on
//! different transports see every publication from publishers on any node, in order, with the
//! same offsets; presence is the same from every node; a killed node's clients resume on another
//! without loss; a broker restart during a publish stream loses no acknowledged publication
//! without the clients being told (`recovered: false`).
//!
//! The servers are real: `redis-server` and `nats-server -js` on free ports (see
//! `common::backend`; missing binaries skip these tests, except under `CI=true`), and the nodes
//! are `switchboard` processes, so that one can be killed outright.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::backend::{Backend, Kind};
use common::process::Node;
use common::{eventually, http_status};
use parking_lot::Mutex;
use switchboard_client::{Client, Cursor, Event, Transport};
use tokio::sync::watch;
use tokio::task::JoinHandle;

fn cluster(server: &Backend) -> Vec<Node> {
    (0..3).map(|_| Node::start(&server.url())).collect()
}

/// What a follower saw.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Subscribed { epoch: String, offset: u64, recovered: bool },
    Publication { epoch: String, offset: u64, n: u64 },
    Connected(String),
}

/// A subscriber that keeps following one channel: when its connection ends it resumes from its
/// cursor on the next node.
struct Follower {
    seen: Arc<Mutex<Vec<Seen>>>,
    position: Arc<Mutex<Option<(String, u64)>>>,
    transport: Transport,
    task: JoinHandle<()>,
}

fn follow(
    nodes: Vec<String>,
    first: usize,
    transport: Transport,
    channel: &str,
    mut stop: watch::Receiver<bool>,
) -> Follower {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let position = Arc::new(Mutex::new(None));
    let (s, p, channel) = (seen.clone(), position.clone(), channel.to_owned());
    let task = tokio::spawn(async move {
        let mut node = first;
        let mut cursor: Option<Cursor> = None;
        loop {
            let client = Client::new(&nodes[node])
                .unwrap()
                .with_name(format!("{transport}-{first}"))
                .with_long_poll_wait(Duration::from_secs(2))
                .with_poll_interval(Duration::from_millis(200));
            let sub = tokio::time::timeout(
                Duration::from_secs(5),
                client.subscribe(transport, &[channel.as_str()], cursor.clone()),
            )
            .await;
            let Ok(Ok(mut sub)) = sub else {
                node = (node + 1) % nodes.len();
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let mut errors = 0;
            loop {
                tokio::select! {
                    event = sub.next() => match event {
                        Some(Ok(event)) => {
                            errors = 0;
                            if let Some((_, pos)) = event.position() {
                                *p.lock() = Some((pos.epoch.clone(), pos.offset));
                            }
                            match event {
                                Event::Subscribed(r) => s.lock().push(Seen::Subscribed {
                                    epoch: r.epoch, offset: r.offset, recovered: r.recovered,
                                }),
                                Event::Publication(pb) => s.lock().push(Seen::Publication {
                                    n: pb.data.as_ref().and_then(|d| d["n"].as_u64()).unwrap_or(u64::MAX),
                                    epoch: pb.epoch, offset: pb.offset,
                                }),
                                Event::Connected { client } => s.lock().push(Seen::Connected(client)),
                                Event::Disconnected { .. } => break,
                                _ => {}
                            }
                        }
                        Some(Err(_)) => {
                            errors += 1;
                            let polling = matches!(transport, Transport::LongPoll | Transport::Poll);
                            if !polling || errors >= 3 {
                                break;
                            }
                        }
                        None => break,
                    },
                    _ = stop.changed() => return,
                }
            }
            cursor = Some(sub.cursor());
            node = (node + 1) % nodes.len();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Follower { seen, position, transport, task }
}

impl Follower {
    /// Checks what it saw: every publication continues the position it held (no gap, no
    /// duplicate, same order), except right after a `recovered: false`. Returns how many times
    /// it was told `recovered: false` while holding a position (a first subscription holds none).
    fn check_continuity(&self) -> usize {
        let seen = self.seen.lock().clone();
        let mut position: Option<(String, u64)> = None;
        let mut unrecovered = 0;
        for s in &seen {
            match s {
                Seen::Subscribed { epoch, offset, recovered } => {
                    if !recovered && position.is_some() {
                        unrecovered += 1;
                    } else if let Some(p) = &position {
                        assert_eq!(
                            p,
                            &(epoch.clone(), *offset),
                            "{}: resumed elsewhere than it stood",
                            self.transport
                        );
                    }
                    position = Some((epoch.clone(), *offset));
                }
                Seen::Publication { epoch, offset, .. } => {
                    if let Some((e, o)) = &position {
                        assert_eq!(
                            (e, *o + 1),
                            (epoch, *offset),
                            "{}: a gap or a duplicate without recovered: false; saw {seen:?}",
                            self.transport
                        );
                    }
                    position = Some((epoch.clone(), *offset));
                }
                Seen::Connected(_) => {}
            }
        }
        unrecovered
    }

    fn publications(&self) -> Vec<(String, u64, u64)> {
        self.seen
            .lock()
            .iter()
            .filter_map(|s| match s {
                Seen::Publication { epoch, offset, n } => Some((epoch.clone(), *offset, *n)),
                _ => None,
            })
            .collect()
    }

    fn clients(&self) -> Vec<String> {
        self.seen
            .lock()
            .iter()
            .filter_map(|s| match s {
                Seen::Connected(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Publishes `count` publications numbered from `from`, round-robin over `nodes`, each retried
/// with its idempotency key until acknowledged. Returns the acknowledgements (epoch, offset, n).
async fn publish(
    nodes: &[String],
    channel: &str,
    from: u64,
    count: u64,
    pace: Duration,
) -> Vec<(String, u64, u64)> {
    let clients: Vec<Client> = nodes.iter().map(|u| Client::new(u).unwrap()).collect();
    let mut acked = Vec::new();
    for n in from..from + count {
        let key = format!("k-{channel}-{n}");
        let mut attempt = 0;
        loop {
            let client = &clients[(n as usize + attempt) % clients.len()];
            match client.publish_with_key(channel, &serde_json::json!({ "n": n }), &key).await {
                Ok(r) => {
                    acked.push((r.epoch, r.offset, n));
                    break;
                }
                Err(_) => {
                    attempt += 1;
                    assert!(attempt < 400, "publish {n} never acknowledged");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        tokio::time::sleep(pace).await;
    }
    acked
}

fn spread(nodes: &[String], channel: &str, stop: &watch::Sender<bool>) -> Vec<Follower> {
    let urls: Vec<String> = nodes.to_vec();
    [Transport::WebSocket, Transport::Sse, Transport::LongPoll, Transport::Stream]
        .into_iter()
        .enumerate()
        .map(|(i, t)| follow(urls.clone(), i % urls.len(), t, channel, stop.subscribe()))
        .collect()
}

async fn settle(followers: &[Follower]) {
    // Polling transports learn their position from their first publication.
    eventually("every streaming follower holds a position", Duration::from_secs(15), || {
        followers.iter().all(|f| f.transport == Transport::LongPoll || f.position.lock().is_some())
    })
    .await;
    // Long polls need their first answer to hold the current end.
    tokio::time::sleep(Duration::from_millis(2500)).await;
}

async fn fan_out_order_and_presence(kind: Kind) {
    let Some(server) = Backend::start(kind) else { return };
    let nodes = cluster(&server);
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let channel = format!("room:fanout-{}", std::process::id());
    let (stop, _) = watch::channel(false);
    let followers = spread(&urls, &channel, &stop);
    settle(&followers).await;

    // Publishers on every node at once.
    let tasks: Vec<_> = (0..3u64)
        .map(|i| {
            let (urls, channel) = (urls.clone(), channel.clone());
            tokio::spawn(async move {
                let only = vec![urls[i as usize].clone()];
                publish(&only, &channel, i * 1000, 25, Duration::from_millis(5)).await
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    acked.sort();
    assert_eq!(
        acked.iter().map(|a| a.1).collect::<Vec<_>>(),
        (1..=75).collect::<Vec<_>>(),
        "one offset each"
    );
    let last = acked.last().unwrap().clone();
    eventually("every follower reaches the last publication", Duration::from_secs(30), || {
        followers.iter().all(|f| f.position.lock().as_ref() == Some(&(last.0.clone(), last.1)))
    })
    .await;
    for f in &followers {
        assert_eq!(f.check_continuity(), 0, "{}: {:?}", f.transport, f.seen.lock());
        assert_eq!(f.publications(), acked, "{}: every publication, in order, same offsets", f.transport);
    }

    // Presence: the same from every node.
    let listed = |url: String, channel: String| async move {
        let reply = Client::new(&url).unwrap().presence(&channel).await.unwrap();
        reply.clients.keys().cloned().collect::<BTreeSet<_>>()
    };
    let expected: BTreeSet<String> = followers.iter().flat_map(|f| f.clients()).collect();
    assert_eq!(expected.len(), 3, "WebSocket, SSE and stream connections are present");
    for url in &urls {
        assert_eq!(listed(url.clone(), channel.clone()).await, expected, "presence seen from {url}");
    }
    let _ = stop.send(true);
    for f in followers {
        f.task.abort();
    }
}

async fn killed_node_clients_resume_elsewhere(kind: Kind) {
    let Some(server) = Backend::start(kind) else { return };
    let mut nodes = cluster(&server);
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let channel = format!("room:kill-{}", std::process::id());
    let (stop, _) = watch::channel(false);
    // Every follower starts on node 2, the one that dies.
    let followers: Vec<Follower> =
        [Transport::WebSocket, Transport::Sse, Transport::LongPoll, Transport::Stream]
            .into_iter()
            .map(|t| follow(urls.clone(), 2, t, &channel, stop.subscribe()))
            .collect();
    settle(&followers).await;
    let before: BTreeSet<String> = followers.iter().flat_map(|f| f.clients()).collect();
    let publisher = {
        let (urls, channel) = (urls[..2].to_vec(), channel.clone());
        tokio::spawn(async move { publish(&urls, &channel, 0, 60, Duration::from_millis(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    nodes[2].kill();
    let acked = publisher.await.unwrap();
    let last = acked.last().unwrap().clone();
    eventually("every follower resumes on another node and catches up", Duration::from_secs(30), || {
        followers.iter().all(|f| f.position.lock().as_ref() == Some(&(last.0.clone(), last.1)))
    })
    .await;
    for f in &followers {
        assert_eq!(f.check_continuity(), 0, "{}: resumed with recovered: true", f.transport);
        assert_eq!(f.publications(), acked, "{}: nothing lost, nothing twice", f.transport);
    }
    // The dead node's clients leave the presence within its TTL (3 s here).
    let client = Client::new(&urls[0]).unwrap();
    let mut left = false;
    for _ in 0..100 {
        let now: BTreeSet<String> =
            client.presence(&channel).await.unwrap().clients.keys().cloned().collect();
        if now.is_disjoint(&before) {
            left = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(left, "the dead node's clients disappear from presence");
    let _ = stop.send(true);
    for f in followers {
        f.task.abort();
    }
}

async fn broker_restart_during_a_publish_stream(kind: Kind, keeps_data: bool) {
    let Some(mut server) = Backend::start(kind) else { return };
    let nodes = cluster(&server);
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let channel = format!("room:restart-{}", std::process::id());
    let (stop, _) = watch::channel(false);
    let followers = spread(&urls, &channel, &stop);
    settle(&followers).await;
    let publisher = {
        let (urls, channel) = (urls.clone(), channel.clone());
        tokio::spawn(async move { publish(&urls, &channel, 0, 80, Duration::from_millis(40)).await })
    };
    tokio::time::sleep(Duration::from_millis(1200)).await;
    server.kill();
    let healthz = format!("{}/healthz", urls[1]);
    eventually("/healthz turns unhealthy", Duration::from_secs(10), || http_status(&healthz) == 503).await;
    let down = Client::new(&urls[0]).unwrap().publish(&channel, &serde_json::json!({"n": 9999})).await;
    assert!(down.is_err(), "a publish while the broker is down is refused, not dropped");
    server.restart();
    eventually("/healthz turns healthy again", Duration::from_secs(20), || http_status(&healthz) == 200)
        .await;
    let acked = publisher.await.unwrap();
    let last = acked.last().unwrap().clone();
    eventually("every follower reaches the last publication", Duration::from_secs(45), || {
        followers.iter().all(|f| f.position.lock().as_ref() == Some(&(last.0.clone(), last.1)))
    })
    .await;
    let epochs: BTreeSet<&String> = acked.iter().map(|a| &a.0).collect();
    for f in &followers {
        let unrecovered = f.check_continuity();
        let got: BTreeSet<(String, u64, u64)> = f.publications().into_iter().collect();
        let missed: Vec<_> = acked.iter().filter(|a| !got.contains(a)).collect();
        if keeps_data {
            assert_eq!(epochs.len(), 1, "the stream survived the restart");
            assert_eq!(unrecovered, 0, "{}: recovered from the kept history", f.transport);
            assert!(missed.is_empty(), "{}: acknowledged publications lost: {missed:?}", f.transport);
        } else {
            assert_eq!(epochs.len(), 2, "the stream's history was lost: a new epoch");
            assert!(unrecovered >= 1, "{}: told recovered: false", f.transport);
        }
    }
    if keeps_data {
        let h = Client::new(&urls[1]).unwrap().history(&channel, Some(1000)).await.unwrap();
        assert_eq!(h.publications.len(), acked.len(), "every acknowledged publication is in the history");
    }
    let _ = stop.send(true);
    for f in followers {
        f.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_three_nodes_share_order_offsets_and_presence() {
    fan_out_order_and_presence(Kind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_a_killed_nodes_clients_resume_on_another_without_loss() {
    killed_node_clients_resume_elsewhere(Kind::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restart_without_persistence_tells_clients_recovered_false() {
    broker_restart_during_a_publish_stream(Kind::Redis, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restart_with_persistence_loses_nothing() {
    broker_restart_during_a_publish_stream(Kind::RedisPersistent, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_three_nodes_share_order_offsets_and_presence() {
    fan_out_order_and_presence(Kind::Nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_a_killed_nodes_clients_resume_on_another_without_loss() {
    killed_node_clients_resume_elsewhere(Kind::Nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_restart_loses_nothing() {
    broker_restart_during_a_publish_stream(Kind::Nats, true).await;
}
