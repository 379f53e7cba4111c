//! The server in-process on port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchboard::config::{ChannelOptions, Config};
use switchboard::{AppState, Server, Services};
use switchboard_client::Client;
use tokio::sync::oneshot;

/// A running in-process server; dropping it shuts the server down.
pub struct TestServer {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    pub services: Services,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// A server with `config` on 127.0.0.1:0, without the demo pages.
    pub async fn start(config: Config) -> Self {
        Self::start_on(Config { listen: "127.0.0.1:0".parse().unwrap(), ..config }).await
    }

    /// A server with the default configuration as `tweak` changes it, on 127.0.0.1:0.
    pub async fn with(tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::default();
        tweak(&mut config);
        Self::start(config).await
    }

    /// A server on `config.listen` as given (a node whose URL its configuration names).
    pub async fn start_on(config: Config) -> Self {
        let server = Server::bind(Config { demo: false, ..config }).await.expect("server binds");
        let addr = server.local_addr().unwrap();
        let state = server.state().clone();
        let services = server.services().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self { addr, state, services, stop: Some(stop), task: Some(task) }
    }

    /// A server whose namespace `small` keeps only two publications and whose namespace `room`
    /// announces joins and leaves.
    pub async fn with_small_history() -> Self {
        Self::with(|config| {
            let small = ChannelOptions { history_size: 2, ..ChannelOptions::default() };
            config.namespaces.insert("small".into(), small);
            let room = ChannelOptions { join_leave: true, ..ChannelOptions::default() };
            config.namespaces.insert("room".into(), room);
        })
        .await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url()).unwrap().with_poll_interval(Duration::from_millis(50))
    }

    /// Stops the server and waits for it to drain.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
