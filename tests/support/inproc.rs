//! The agent in-process (`daemon::run_with`) on 127.0.0.1:0, for tests that
//! need its handles (metrics, store) and a graceful stop.

use continuity_agent::config::Config;
use continuity_agent::daemon::{self, Running};
use tokio::sync::oneshot;

pub struct Agent {
    pub base: String,
    pub running: Running,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), daemon::DaemonError>>,
}

/// Starts the agent with `cfg` and waits until it is running.
pub async fn start(cfg: Config) -> Agent {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stop_rx) = oneshot::channel::<()>();
    let (started_tx, started_rx) = oneshot::channel();
    let task = tokio::spawn(daemon::run_with(
        cfg,
        listener,
        async move {
            let _ = stop_rx.await;
        },
        started_tx,
    ));
    let running = started_rx.await.expect("agent started");
    Agent {
        base: format!("http://{}", running.addr),
        running,
        stop: Some(stop),
        task,
    }
}

impl Agent {
    /// Graceful shutdown; panics if the agent failed.
    pub async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        self.task
            .await
            .expect("agent task")
            .expect("agent exited cleanly");
    }
}
