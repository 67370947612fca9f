//! A webhook receiver for tests: records every request and answers as told.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use serde_json::Value;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200.
    Ok,
    /// This status.
    Status(u16),
    /// 429 with `Retry-After: secs`.
    RateLimited(u64),
    /// Never answer (the sender times out).
    Hang,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Bytes,
    pub signature: Option<String>,
    pub at: Instant,
}

impl Received {
    /// The events this request carried: its `batch`, or one.
    pub fn events(&self) -> usize {
        let body: Value = serde_json::from_slice(&self.body).expect("JSON");
        body["batch"].as_array().map_or(1, Vec::len)
    }
}

#[derive(Default)]
struct Shared {
    received: Vec<Received>,
    refused: Vec<Received>,
    script: VecDeque<Answer>,
    default: Option<Answer>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts on 127.0.0.1:0 (or a given port), answering `Ok` unless told otherwise.
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    pub async fn start_on(port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Mutex::new(Shared::default()));
        let task = tokio::spawn({
            let shared = Arc::clone(&shared);
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let shared = Arc::clone(&shared);
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(
                            move |req: hyper::Request<hyper::body::Incoming>| {
                                let shared = Arc::clone(&shared);
                                async move {
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
                                    let answer = {
                                        let mut s = shared.lock().expect("lock");
                                        let answer = s
                                            .script
                                            .pop_front()
                                            .or(s.default)
                                            .unwrap_or(Answer::Ok);
                                        let request = Received {
                                            body,
                                            signature,
                                            at: Instant::now(),
                                        };
                                        if answer == Answer::Ok {
                                            s.received.push(request);
                                        } else {
                                            s.refused.push(request);
                                        }
                                        answer
                                    };
                                    let mut resp =
                                        hyper::Response::new(Full::new(Bytes::from_static(b"{}")));
                                    match answer {
                                        Answer::Ok => {}
                                        Answer::Status(code) => {
                                            *resp.status_mut() =
                                                hyper::StatusCode::from_u16(code).expect("status");
                                        }
                                        Answer::RateLimited(secs) => {
                                            *resp.status_mut() =
                                                hyper::StatusCode::TOO_MANY_REQUESTS;
                                            resp.headers_mut().insert("retry-after", secs.into());
                                        }
                                        Answer::Hang => {
                                            tokio::time::sleep(Duration::from_secs(3600)).await
                                        }
                                    }
                                    Ok::<_, std::convert::Infallible>(resp)
                                }
                            },
                        );
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Self { addr, shared, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Answers these first, in order.
    pub fn script(&self, answers: &[Answer]) {
        self.shared
            .lock()
            .expect("lock")
            .script
            .extend(answers.iter().copied());
    }

    /// Answers this from now on (after any script).
    pub fn answer(&self, answer: Answer) {
        self.shared.lock().expect("lock").default = Some(answer);
    }

    /// The requests answered with anything but `Ok`, in order.
    pub fn refused(&self) -> Vec<Received> {
        self.shared.lock().expect("lock").refused.clone()
    }

    /// Requests accepted (answered 200) so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().expect("lock").received.clone()
    }

    /// Time from the first request received to the last.
    pub fn span(&self) -> Duration {
        let received = self.received();
        match (received.first(), received.last()) {
            (Some(first), Some(last)) => last.at.duration_since(first.at),
            _ => Duration::ZERO,
        }
    }

    /// Events accepted so far (a batch body counts its items).
    pub fn events(&self) -> Vec<Value> {
        self.received()
            .iter()
            .flat_map(|r| {
                let v: Value = serde_json::from_slice(&r.body).expect("webhook body is JSON");
                match v.get("batch").and_then(Value::as_array) {
                    Some(items) => items.clone(),
                    None => vec![v],
                }
            })
            .collect()
    }

    /// Waits until at least `n` events arrived.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let events = self.events();
            if events.len() >= n {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} events arrived",
                events.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
