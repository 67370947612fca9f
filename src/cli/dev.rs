//! `sluice dev …`: tools for trying Sluice out.

use std::io::Write as _;

use anyhow::Context as _;
use clap::Subcommand;
use tokio::net::TcpListener;

/// `sluice dev`.
#[derive(Subcommand)]
pub enum DevCommand {
    /// A webhook receiver that prints every request body it gets and answers 200.
    Receiver {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8088")]
        listen: std::net::SocketAddr,
    },
}

/// Runs `sluice dev …`.
pub fn run(command: DevCommand) -> anyhow::Result<()> {
    let DevCommand::Receiver { listen } = command;
    receiver(listen)
}

/// `sluice dev receiver`: prints each request's body (one line) and answers 200.
fn receiver(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    use http_body_util::BodyExt as _;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        eprintln!("receiver listening on http://{listen}/ (Ctrl-C to stop)");
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let signature = req
                            .headers()
                            .get("x-signature")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        let mut out = std::io::stdout().lock();
                        let _ = match signature {
                            Some(sig) => {
                                writeln!(out, "{} [{sig}]", String::from_utf8_lossy(&body))
                            }
                            None => writeln!(out, "{}", String::from_utf8_lossy(&body)),
                        };
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(b"{\"ok\":true}")),
                        ))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
