//! The physical-limit baselines: a bare hyper server that reads each body completely
//! and answers `200 {"success":true}` (and, with `parse`, parses it with simd-json
//! first). Nothing else: the ceiling for any HTTP edge, or any edge that looks at
//! its events, on this machine.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

const OK: &[u8] = br#"{"success":true}"#;
const BAD: &[u8] = br#"{"success":false,"code":"invalid_json"}"#;

/// Serves until the process ends.
pub async fn serve(listener: TcpListener, parse: bool) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| async move {
                let (status, body) = match req.into_body().collect().await {
                    Ok(collected) => {
                        let mut bytes = collected.to_bytes().to_vec();
                        if parse && simd_json::to_borrowed_value(&mut bytes).is_err() {
                            (StatusCode::BAD_REQUEST, BAD)
                        } else {
                            (StatusCode::OK, OK)
                        }
                    }
                    Err(_) => (StatusCode::BAD_REQUEST, BAD),
                };
                let mut resp = Response::new(Full::new(Bytes::from_static(body)));
                *resp.status_mut() = status;
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                Ok::<_, Infallible>(resp)
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
