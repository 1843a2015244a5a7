//! The operators' and newcomers' side: the busiest-first show list, the
//! page served from inside the binary, the access log, and the estimate
//! accuracy metric.

use chrono::Utc;
use reqwest::Method;
use serde_json::{json, Value};

use crate::for_each_backend;
use crate::helpers::*;

/// A show whose line is long enough that nobody is admitted but the first
/// `capacity` fans, and nobody is abandoned during a test.
async fn show(app: &TestApp, title: &str, capacity: u64) -> u64 {
    app.create_show_from(json!({"title": title, "capacity": capacity,
        "session_ttl_seconds": 600, "abandon_grace_seconds": 600}))
        .await
}

/// `ours` in the order `GET /v1/shows?sort=demand` lists them, with the
/// demand each one shows.
async fn by_demand(app: &TestApp, ours: &[u64]) -> Vec<(u64, u64)> {
    let shows: Vec<Value> = app.get_json("/v1/shows?sort=demand").await;
    shows
        .iter()
        .filter(|s| ours.iter().any(|id| s["id"] == *id))
        .map(|s| {
            let q = &s["queue"];
            let demand = ["waiting", "prequeued", "active"]
                .iter()
                .map(|k| q[*k].as_u64().expect("a count"))
                .sum();
            (s["id"].as_u64().expect("id"), demand)
        })
        .collect()
}

/// Busiest first, whatever moved the counts: joins to the line and to the
/// pre-queue, admissions (which move fans, not demand), leaving, and the
/// end of a sale; equal demand by id; a bad `sort` changes nothing and says
/// why.
async fn the_show_list_ranks_shows_by_live_demand(backend: Backend) {
    let app = spawn_app(backend).await;
    let quiet = show(&app, "Quiet", 1).await;
    let busy = show(&app, "Busy", 1).await;
    let middling = show(&app, "Middling", 1).await;
    let soon = app
        .create_show_from(json!({"title": "Soon", "capacity": 1,
            "session_ttl_seconds": 600, "abandon_grace_seconds": 600,
            "prequeue_opens_at": (Utc::now() - chrono::Duration::seconds(1)).to_rfc3339(),
            "starts_at": (Utc::now() + chrono::Duration::hours(1)).to_rfc3339()}))
        .await;
    let ours = [quiet, busy, middling, soon];

    // Nobody anywhere: id order.
    assert_eq!(
        by_demand(&app, &ours).await,
        ours.iter().map(|id| (*id, 0)).collect::<Vec<_>>()
    );

    app.join_many(quiet, "quiet", 1).await;
    let busy_fans = app.join_many(busy, "busy", 3).await;
    app.join_many(middling, "middling", 2).await;
    let early = app.join_many(soon, "soon", 4).await;
    assert_eq!(early[0].1.state(), "prequeued");
    assert_eq!(busy_fans[0].1.state(), "active");
    assert_eq!(
        by_demand(&app, &ours).await,
        [(soon, 4), (busy, 3), (middling, 2), (quiet, 1)]
    );

    // Two of the busy show's waiting fans leave: it ties with the quiet
    // show, which has the lower id.
    for (_, spot) in &busy_fans[1..] {
        assert_eq!(app.leave(busy, spot.ticket()).await, 204);
    }
    assert_eq!(
        by_demand(&app, &ours).await,
        [(soon, 4), (middling, 2), (quiet, 1), (busy, 1)]
    );

    // Closing a sale lets its pre-queue go: no demand left.
    let (status, body) = app
        .admin(Method::POST, &format!("/v1/admin/shows/{soon}/close"), None)
        .await;
    assert!(status < 300, "{status} {body}");
    assert_eq!(
        by_demand(&app, &ours).await,
        [(middling, 2), (quiet, 1), (busy, 1), (soon, 0)]
    );

    // The default is id order; a bad sort is a 400 that names the choices.
    let plain: Vec<Value> = app.get_json("/v1/shows").await;
    let ids: Vec<u64> = plain
        .iter()
        .filter_map(|s| s["id"].as_u64())
        .filter(|id| ours.contains(id))
        .collect();
    assert_eq!(ids, ours);
    let res = reqwest::get(format!("{}/v1/shows?sort=popular", app.base))
        .await
        .expect("request");
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "invalid_query", "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("demand"), "{message}");
}

for_each_backend!(the_show_list_ranks_shows_by_live_demand);

/// The gateway binary started in `dir` with `env`, its log lines kept.
struct Logged {
    base: String,
    node: Node,
    lines: tokio::sync::mpsc::UnboundedReceiver<Value>,
    _child: tokio::process::Child,
}

impl Logged {
    async fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_anteroom"))
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ANTEROOM_LISTEN", "127.0.0.1:0")
            .env("ANTEROOM_LOG_FORMAT", "json")
            .env("ANTEROOM_SHUTDOWN_DRAIN_SECS", "0")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the anteroom binary starts");
        let mut out = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let addr = tokio::time::timeout(PATIENCE, async {
            loop {
                let line = lines
                    .recv()
                    .await
                    .expect("anteroom exited before listening");
                if line["message"] == "anteroom listening" {
                    let addr: std::net::SocketAddr = line["addr"]
                        .as_str()
                        .expect("addr")
                        .parse()
                        .expect("address");
                    return addr;
                }
            }
        })
        .await
        .expect("anteroom listens within the patience");
        Self {
            base: format!("http://{addr}"),
            node: Node::at(addr),
            lines,
            _child: child,
        }
    }

    /// The first log line from now on that `matches`.
    async fn line(&mut self, matches: impl Fn(&Value) -> bool) -> Value {
        tokio::time::timeout(PATIENCE, async {
            loop {
                let line = self.lines.recv().await.expect("the gateway logs");
                if matches(&line) {
                    return line;
                }
            }
        })
        .await
        .expect("the log line within the patience")
    }
}

/// A directory of its own under the system's temporary one.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("anteroom-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// Started far from the source tree, the gateway serves the page it was
/// built with, and only the page; `ANTEROOM_WEB_DIR` serves a folder.
#[tokio::test]
async fn the_page_is_served_from_anywhere() {
    let far = scratch("cwd");
    let app = Logged::start(&far, &[]).await;
    let client = reqwest::Client::new();
    let built_in = |file: &str| {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("web")
                .join(file),
        )
        .expect("the page's source")
    };
    for (path, file, kind) in [
        ("/", "index.html", "text/html"),
        ("/anteroom.js", "anteroom.js", "javascript"),
        ("/style.css", "style.css", "text/css"),
    ] {
        let res = client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 200, "{path}");
        let etag = res.headers()["etag"].to_str().expect("etag").to_owned();
        let content_type = res.headers()["content-type"]
            .to_str()
            .expect("type")
            .to_owned();
        assert!(content_type.contains(kind), "{path}: {content_type}");
        assert_eq!(res.text().await.expect("body"), built_in(file), "{path}");
        let again = client
            .get(format!("{}{path}", app.base))
            .header("if-none-match", &etag)
            .send()
            .await
            .expect("request");
        assert_eq!(again.status(), 304, "{path}");
    }
    for path in ["/package.json", "/tests/browser.test.mjs", "/nothing.html"] {
        let res = client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 404, "{path}");
    }

    let folder = scratch("web");
    std::fs::write(
        folder.join("index.html"),
        "<!doctype html><title>ours</title>",
    )
    .expect("write");
    let dir = folder.to_str().expect("utf-8 path");
    let ours = Logged::start(&far, &[("ANTEROOM_WEB_DIR", dir)]).await;
    let body = reqwest::get(format!("{}/", ours.base))
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "<!doctype html><title>ours</title>");
    let missing = reqwest::get(format!("{}/app.js", ours.base))
        .await
        .expect("request");
    assert_eq!(missing.status(), 404);
    let _ = std::fs::remove_dir_all(folder);
    let _ = std::fs::remove_dir_all(far);
}

/// One info line per request: method, route template (never the ids in
/// the path), status, latency and the request id the caller sent (or one
/// generated and sent back).
#[tokio::test]
async fn every_request_is_in_the_access_log() {
    let mut app = Logged::start(&scratch("log"), &[]).await;
    let client = reqwest::Client::new();
    let res = client
        .get(format!("{}/v1/shows?sort=demand", app.base))
        .header("x-request-id", "trace-me-1")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let line = app.line(|l| l["request_id"] == "trace-me-1").await;
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["target"], "anteroom::access", "{line}");
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["route"], "/v1/shows", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert!(
        line["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{line}"
    );

    let res = client
        .get(format!("{}/v1/shows/4242/queue/status", app.base))
        .send()
        .await
        .expect("request");
    let id = res.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    assert!(!id.is_empty());
    let line = app.line(|l| l["request_id"] == id.as_str()).await;
    assert_eq!(line["route"], "/v1/shows/{show_id}/queue/status", "{line}");
    assert_eq!(line["status"], res.status().as_u16(), "{line}");
}

/// `anteroom print-config` prints a file that `--config` loads back to the
/// same settings.
#[tokio::test]
async fn the_printed_config_loads_back() {
    let dir = scratch("config");
    let print = |env: &[(&str, &str)], args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_anteroom"))
            .current_dir(&dir)
            .env_clear()
            .envs(env.iter().copied())
            .args(args)
            .arg("print-config")
            .output()
            .expect("anteroom runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let printed = print(&[("ANTEROOM_WEB_DIR", "/srv/anteroom-web")], &[]);
    assert!(
        printed.contains("web_dir = \"/srv/anteroom-web\""),
        "{printed}"
    );
    let file = dir.join("printed.toml");
    std::fs::write(&file, &printed).expect("write");
    // The file alone, no environment: the same settings.
    assert_eq!(
        print(&[], &["--config", file.to_str().expect("utf-8")]),
        printed
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// An admission after a known estimate records how right it was: the
/// estimate given in the join's answer and the first within 100 of the
/// front, each once. The gateway runs as a process of its own, so its
/// histogram holds exactly this test's samples.
#[tokio::test]
async fn an_admission_scores_the_estimates_the_fan_was_given() {
    let app = Logged::start(&scratch("estimates"), &[("ANTEROOM_ADMIN_KEY", ADMIN_KEY)]).await;
    let node = &app.node;
    // One slot, one-second turns: the first two admissions, a turn apart,
    // give the line its admission rate.
    let show = node
        .create_show_from(json!({"title": "Estimated", "capacity": 1,
            "session_ttl_seconds": 1, "abandon_grace_seconds": 600}))
        .await;
    let first = node.join_many(show, "first", 2).await;
    assert_eq!(first[0].1.state(), "active");
    assert!(
        first[1].1.body.get("eta_seconds").is_none(),
        "{:?}",
        first[1].1.body
    );
    // The second fan's turn: the rate is known from then on.
    eventually("the second fan is admitted", || async {
        node.status(show, first[1].1.ticket()).await.1["state"] == "active"
    })
    .await;
    let late = node.join_many(show, "late", 1).await;
    let (_, spot) = &late[0];
    assert_eq!(spot.state(), "waiting", "{:?}", spot.body);
    let eta = spot.body["eta_seconds"]
        .as_u64()
        .expect("an estimate at join");
    assert!(eta >= 1, "{eta}");
    assert_eq!(scored(node, "join").await, Some(0.0));
    eventually("the late fan's admission is scored", || async {
        scored(node, "join").await == Some(1.0) && scored(node, "rank_100").await == Some(1.0)
    })
    .await;
    let sum = node
        .sample("anteroom_queue_estimate_accuracy_ratio_sum{at=\"join\"}")
        .await
        .expect("a sum");
    // The fan waited out the rest of a one-second turn against an estimate
    // of a turn or two.
    assert!(sum > 0.0 && sum < 2.0, "{sum} (estimate {eta} s)");
    // Samples only from fans given an estimate: the first two had none.
    assert_eq!(scored(node, "join").await, Some(1.0));
}

/// Samples of the estimate accuracy histogram given at `at`.
async fn scored(node: &Node, at: &str) -> Option<f64> {
    node.sample(&format!(
        "anteroom_queue_estimate_accuracy_ratio_count{{at=\"{at}\"}}"
    ))
    .await
}
