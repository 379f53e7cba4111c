//! The transport lab (`/lab`): a page that runs one measured session over every technique in
//! the visitor's browser. The server's part: a control WebSocket per lab session
//! (`/lab/control`, [`control`]) that publishes the session's messages, reports what the
//! session's connections cost on the wire, drops them on request and impairs them; and the tap
//! ([`tap`]) through which a request naming a session (`?sb_lab=ID`) attaches its connection
//! to that session's [`Meter`], so the listener ([`crate::listener::conn`]) counts its bytes.
//! Only connections that opted in are counted or impaired; no other client is touched.

mod control;
mod impair;
mod meter;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub use impair::{LabIo, RTO};
pub use meter::{Impairment, Meter};

use crate::listener::conn::LabTap;
use crate::state::AppState;

/// The node's lab sessions.
#[derive(Debug)]
pub struct Lab {
    sessions: Mutex<HashMap<String, Arc<Meter>>>,
    max_sessions: usize,
    max_delay_ms: u64,
    opened: AtomicU64,
    refused: AtomicU64,
    dropped: AtomicU64,
}

/// A session, removed from the lab when its control socket closes.
struct Session {
    lab: Arc<Lab>,
    id: String,
    meter: Arc<Meter>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.lab.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

impl Lab {
    /// The lab of a node with this configuration.
    pub fn new(config: &crate::config::Config) -> Arc<Self> {
        Arc::new(Self {
            sessions: Mutex::new(HashMap::new()),
            max_sessions: config.lab_max_sessions,
            max_delay_ms: config.lab_max_delay_ms,
            opened: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    fn open(self: &Arc<Self>) -> Option<Session> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if sessions.len() >= self.max_sessions {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let id = format!("{:016x}", rand::random::<u64>());
        let meter = Arc::new(Meter::default());
        sessions.insert(id.clone(), meter.clone());
        self.opened.fetch_add(1, Ordering::Relaxed);
        Some(Session { lab: self.clone(), id, meter })
    }

    fn meter(&self, id: &str) -> Option<Arc<Meter>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    /// The meter of the open session a query string (`...&sb_lab=ID&...`) names.
    pub fn meter_of_query(&self, query: &str) -> Option<Arc<Meter>> {
        self.meter(query.split('&').find_map(|kv| kv.strip_prefix("sb_lab="))?)
    }

    /// Prometheus text.
    pub fn render(&self, s: &mut String) {
        let (open, rx, tx) = {
            let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            let sum = |f: fn(&Meter) -> u64| sessions.values().map(|m| f(m)).sum::<u64>();
            (sessions.len(), sum(|m| m.rx.load(Ordering::Relaxed)), sum(|m| m.tx.load(Ordering::Relaxed)))
        };
        let _ = write!(
            s,
            "# HELP switchboard_lab_sessions Transport lab sessions open (lab_max_sessions).\n\
             # TYPE switchboard_lab_sessions gauge\nswitchboard_lab_sessions {open}\n\
             # HELP switchboard_lab_sessions_total Transport lab sessions opened, and refused by lab_max_sessions.\n\
             # TYPE switchboard_lab_sessions_total counter\n\
             switchboard_lab_sessions_total{{result=\"opened\"}} {}\n\
             switchboard_lab_sessions_total{{result=\"refused\"}} {}\n\
             # HELP switchboard_lab_drops_total Forced drops of a lab session's connections.\n\
             # TYPE switchboard_lab_drops_total counter\nswitchboard_lab_drops_total {}\n\
             # HELP switchboard_lab_bytes Bytes on the open lab sessions' connections, by direction.\n\
             # TYPE switchboard_lab_bytes gauge\n\
             switchboard_lab_bytes{{direction=\"in\"}} {rx}\nswitchboard_lab_bytes{{direction=\"out\"}} {tx}\n",
            self.opened.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        );
    }
}

/// The size of a request's HTTP/1.1 head as it came on the wire (read before its connection
/// was attached to the meter, so counted from the parsed request).
fn head_len(req: &Request) -> usize {
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    let headers: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + 2 + v.len() + 2).sum();
    line + headers + 2
}

/// Middleware: a request with `sb_lab=ID` of an open session attaches its connection to the
/// session's meter and counts as one of its requests.
pub async fn tap(State(lab): State<Arc<Lab>>, req: Request, next: Next) -> Response {
    if let Some(LabTap(activity)) = req.extensions().get::<LabTap>()
        && let Some(id) =
            req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("sb_lab=")))
        && let Some(meter) = lab.meter(id)
    {
        meter.requests.fetch_add(1, Ordering::Relaxed);
        activity.attach_lab(&meter, head_len(&req));
    }
    next.run(req).await
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse + Clone {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body)
}

/// The page, its script and the vendored chart library (uPlot, MIT: its licence is served
/// beside it), and the control socket.
pub fn routes(lab: Arc<Lab>) -> Router<Arc<AppState>> {
    let html = asset("text/html; charset=utf-8", include_str!("../../demo/lab.html"));
    let js = asset("text/javascript; charset=utf-8", include_str!("../../demo/lab.js"));
    let run_js = asset("text/javascript; charset=utf-8", include_str!("../../demo/lab-run.js"));
    let css = asset("text/css; charset=utf-8", include_str!("../../demo/lab.css"));
    let uplot = asset("text/javascript; charset=utf-8", include_str!("../../vendor/uplot/uPlot.iife.min.js"));
    let uplot_css = asset("text/css; charset=utf-8", include_str!("../../vendor/uplot/uPlot.min.css"));
    let licence = asset("text/plain; charset=utf-8", include_str!("../../vendor/uplot/LICENSE"));
    Router::new()
        .route("/lab", get(move || async move { html }))
        .route("/demo/lab.js", get(move || async move { js }))
        .route("/demo/lab-run.js", get(move || async move { run_js }))
        .route("/demo/lab.css", get(move || async move { css }))
        .route("/vendor/uplot/uPlot.iife.min.js", get(move || async move { uplot }))
        .route("/vendor/uplot/uPlot.min.css", get(move || async move { uplot_css }))
        .route("/vendor/uplot/LICENSE", get(move || async move { licence }))
        .route("/lab/control", get(control::handler))
        .layer(axum::Extension(lab))
}
